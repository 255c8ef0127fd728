"""Render a report, a list of blocks, as Markdown, HTML and LaTeX tables.

Blocks are plain values: `Heading`, `Text` (a paragraph; ``**bold**`` allowed), `Bullets`,
`Table` (a DataFrame of display strings, where ``**x**`` marks a best value, plus an optional
numeric DataFrame for the CSV, optional links per cell, anchors per row and a note saying why a
cell is empty) and `Image` (a PNG beside the report). Markdown links the images; HTML embeds them
(base64), so report.html is a single file that opens anywhere. The HTML page comes from the jinja2
template ``templates/report.html.j2`` (a table of contents from the headings, tables rendered by
pandas' Styler, sortable by a click on a column head, each in a box that scrolls sideways on its own).
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")  # *word*, after ** became <b>


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    name: str  # file stem of the CSV / LaTeX files
    caption: str
    display: pd.DataFrame
    numeric: pd.DataFrame | None = None
    links: pd.DataFrame | None = None  # href per display cell (same index and columns); None/"" for none
    anchors: dict[object, list[str]] | None = None  # row index -> element ids (link targets) of that row
    note: str | None = None  # a sentence under the table, e.g. why some cells are empty ("–")


@dataclass
class Image:
    path: Path  # relative to the report folder
    caption: str


Block = Heading | Text | Bullets | Table | Image


def anchor_id(*parts: object) -> str:
    """An HTML id from `parts`: lower case, runs of other characters than [a-z0-9.-] become '_'."""
    text = "-".join(str(p) for p in parts).lower()
    return re.sub(r"[^a-z0-9.-]+", "_", text).strip("_") or "x"


def fmt_sig(value: float | None, digits: int = 3) -> str:
    """`value` with `digits` significant digits and no exponent ('0.000221', '12.3', '1,234'), '0' for
    zero, '–' when missing: tiny costs never print as 0.000."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if value == 0:
        return "0"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{value:,.0f}"
    if magnitude < -12:
        return f"{value:.{digits - 1}e}"
    return f"{value:,.{digits - 1 - magnitude}f}"


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _href(links: pd.DataFrame | None, row: int, column: int) -> str | None:
    if links is None:
        return None
    value = links.iat[row, column]
    return str(value) if isinstance(value, str) and value else None


def table_markdown(frame: pd.DataFrame, links: pd.DataFrame | None = None) -> str:
    """A GitHub-style pipe table (index as the first column); cells with a link to a file (not to an
    anchor of the HTML page) become Markdown links."""
    index_name = frame.index.name or ""
    header = [index_name] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(frame.columns)) + "|"]
    for r, (idx, row) in enumerate(frame.iterrows()):
        cells = []
        for c, value in enumerate(row.tolist()):
            href = _href(links, r, c)
            cells.append(f"[{_md_cell(value)}]({href})" if href and not href.startswith("#") else _md_cell(value))
        lines.append("| " + " | ".join([_md_cell(idx)] + cells) + " |")
    return "\n".join(lines)


def render_markdown(title: str, blocks: list[Block]) -> str:
    """The report as Markdown."""
    out = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += [f"*{block.caption}* (`tables/{block.name}.csv`, `tables/{block.name}.tex`)", "",
                    table_markdown(block.display, _aligned_links(block)), ""]
            if block.note:
                out += [block.note, ""]
        elif isinstance(block, Image):
            out += [f"![{block.caption}]({block.path.as_posix()})", "", f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline_html(text: str) -> str:
    escaped = html.escape(str(text))
    escaped = _BOLD.sub(r"<b>\1</b>", escaped)
    escaped = _ITALIC.sub(r"<i>\1</i>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _image_src(path: Path) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return html.escape(path.name)
    return f"data:image/png;base64,{data}"


def _aligned_links(table: Table) -> pd.DataFrame | None:
    if table.links is None:
        return None
    return table.links.reindex(index=table.display.index, columns=table.display.columns)


def table_html(table: Table) -> str:
    """One table as HTML (pandas' Styler), without its caption (the page shows it above the table's
    scrolling box, so that it wraps at the page's width): bold for ``**x**``, links, row anchors in the
    first column."""
    frame = table.display
    links = _aligned_links(table)
    body: dict[str, list[str]] = {}
    first = []
    for idx in frame.index:
        ids = (table.anchors or {}).get(idx, [])
        first.append("".join(f'<span id="{html.escape(i)}"></span>' for i in ids) + _inline_html(idx))
    body["c0"] = first
    for c, column in enumerate(frame.columns):
        cells = []
        for r in range(len(frame)):
            text = _inline_html(frame.iat[r, c])
            href = _href(links, r, c)
            cells.append(f'<a href="{html.escape(href)}">{text}</a>' if href else text)
        body[f"c{c + 1}"] = cells
    out = pd.DataFrame(body)
    out.columns = [_inline_html(frame.index.name or "")] + [_inline_html(c) for c in frame.columns]
    return out.style.hide(axis="index").to_html(exclude_styles=True)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("lssat.bench", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), keep_trailing_newline=True)


def render_html(title: str, blocks: list[Block], base: Path) -> str:
    """The report as one self-contained HTML page (images embedded from `base`), with a table of
    contents of its level-2 headings and, nested under each, its level-3 headings."""
    parts: list[dict[str, object]] = []
    toc: list[dict[str, object]] = []
    used: set[str] = set()

    def unique(candidate: str) -> str:
        name, n = candidate, 2
        while name in used:
            name, n = f"{candidate}-{n}", n + 1
        used.add(name)
        return name

    for block in blocks:
        if isinstance(block, Heading):
            ident = unique(anchor_id("s", block.text))
            level = min(max(int(block.level), 2), 6)
            parts.append({"kind": "heading", "level": level, "id": ident,
                          "html": Markup(_inline_html(block.text))})
            entry = {"id": ident, "html": Markup(_inline_html(block.text)), "children": []}
            if level == 2 or (level == 3 and not toc):
                toc.append(entry)
            elif level == 3:
                toc[-1]["children"].append(entry)
        elif isinstance(block, Text):
            parts.append({"kind": "text", "html": Markup(_inline_html(block.text))})
        elif isinstance(block, Bullets):
            parts.append({"kind": "bullets",
                          "items": [Markup(_inline_html(i)) for i in block.items]})
        elif isinstance(block, Table):
            parts.append({"kind": "table", "id": unique(anchor_id("table", block.name)),
                          "html": Markup(table_html(block)), "caption": Markup(_inline_html(block.caption)),
                          "note": Markup(_inline_html(block.note)) if block.note else None})
        elif isinstance(block, Image):
            parts.append({"kind": "image", "id": unique(anchor_id("fig", Path(block.path).stem)),
                          "src": _image_src(base / block.path), "alt": block.caption,
                          "caption": Markup(_inline_html(block.caption))})
    return _environment().get_template("report.html.j2").render(title=title, parts=parts, toc=toc)


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "χ": r"$\chi$"}


def latex_escape(text: object) -> str:
    """Escape LaTeX specials, then turn ``**x**`` into ``\\textbf{x}``."""
    raw = str(text)
    parts = _BOLD.split(raw)  # odd items were bold
    out = []
    for i, part in enumerate(parts):
        esc = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in part)
        out.append(f"\\textbf{{{esc}}}" if i % 2 else esc)
    return "".join(out)


def table_latex(table: Table) -> str:
    """A booktabs LaTeX table (pandas `to_latex`) of the display strings."""
    frame = table.display.copy()
    frame.index = [latex_escape(i) for i in frame.index]
    frame.index.name = latex_escape(table.display.index.name or "")
    frame.columns = [latex_escape(c) for c in frame.columns]
    frame = frame.map(latex_escape)
    return frame.to_latex(escape=False, caption=latex_escape(table.caption), label=f"tab:{table.name}",
                          column_format="l" + "r" * len(frame.columns))


def write_tables(blocks: list[Block], folder: Path) -> list[Path]:
    """Each table as CSV (the numeric frame when given, else the display strings) and LaTeX."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for block in blocks:
        if isinstance(block, Table):
            csv = folder / f"{block.name}.csv"
            (block.numeric if block.numeric is not None else block.display).to_csv(csv)
            tex = folder / f"{block.name}.tex"
            tex.write_text(table_latex(block))
            written += [csv, tex]
    return written
