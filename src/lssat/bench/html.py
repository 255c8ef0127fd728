"""Render a report, a list of blocks, as Markdown, HTML and LaTeX tables.

Blocks are plain values: `Heading`, `Text` (a paragraph; ``**bold**`` allowed), `Bullets`,
`Table` (a DataFrame of display strings, where ``**x**`` marks a best value, plus an optional
numeric DataFrame for the CSV) and `Image` (a PNG beside the report). Markdown links the images;
HTML embeds them (base64), so report.html is a single file that opens anywhere.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

_BOLD = re.compile(r"\*\*(.+?)\*\*")


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


@dataclass
class Image:
    path: Path  # relative to the report folder
    caption: str


Block = Heading | Text | Bullets | Table | Image


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-style pipe table (index as the first column)."""
    index_name = frame.index.name or ""
    header = [index_name] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(frame.columns)) + "|"]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([_md_cell(idx)] + [_md_cell(v) for v in row.tolist()]) + " |")
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
                    table_markdown(block.display), ""]
        elif isinstance(block, Image):
            out += [f"![{block.caption}]({block.path.as_posix()})", "", f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline_html(text: str) -> str:
    escaped = html.escape(str(text))
    escaped = _BOLD.sub(r"<b>\1</b>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _image_src(path: Path) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return html.escape(path.name)
    return f"data:image/png;base64,{data}"


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f0f3f7} tbody tr:nth-child(even){background:#fafafa}
caption{caption-side:top;text-align:left;font-style:italic;padding:.3em 0}
img{max-width:100%;border:1px solid #ddd} figure{margin:1em 0} figcaption{font-style:italic;color:#555}
h1{border-bottom:2px solid #333} h2{border-bottom:1px solid #ccc;margin-top:2em}
.warn{background:#fff6e0;border-left:4px solid #e0a000;padding:.4em .8em}
"""


def render_html(title: str, blocks: list[Block], base: Path) -> str:
    """The report as one self-contained HTML page (images embedded from `base`)."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            out.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            frame = block.display
            head = "".join(f"<th>{_inline_html(c)}</th>" for c in [frame.index.name or ""] + list(frame.columns))
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(v)}</td>" for v in [idx] + row.tolist()) + "</tr>"
                           for idx, row in frame.iterrows())
            out.append(f"<table><caption>{_inline_html(block.caption)}</caption><thead><tr>{head}</tr></thead>"
                       f"<tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            out.append(f'<figure><img src="{_image_src(base / block.path)}" alt="{html.escape(block.caption)}">'
                       f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


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
