"""A labelled picture of synthetic samples for the docs.

    python -m lssat.data.synthetic.samples docs/img/synthetic_samples.png

Rows: expressions of different people, the expressions of one person, attributes of different
people, one person with each attribute switched on in turn, and one source frame with each
deepfake method beside its difference from the real frame.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from lssat.data.synthetic import camera
from lssat.data.synthetic.deepfakes import METHODS, N_MANIP_UNIFORMS, manipulate
from lssat.data.synthetic.faces import ATTRIBUTE_NAMES, EXPRESSIONS, Params, draw_uniforms, sample_faces
from lssat.data.synthetic.generator import generate
from lssat.data.synthetic.render import render

_SHORT = {"Bangs": "bangs", "Beard": "beard", "Blond_Hair": "blond", "Eyeglasses": "glasses",
          "Heavy_Makeup": "makeup", "Mustache": "mustache", "Pale_Skin": "pale", "Smiling": "smiling",
          "Wearing_Hat": "hat", "Wrinkles": "wrinkles"}


def _shoot(p: Params, size: int, keys: list[tuple[int, ...]], method: np.ndarray | None = None,
           donor: Params | None = None, manip_u: np.ndarray | None = None) -> np.ndarray:
    images = camera.expose(render(p, size), p)
    camera.add_noise(images, p["noise"], keys)
    if method is not None:
        p = dict(p, frame=np.zeros(len(method), np.int64))
        manipulate(images, p, donor, method, manip_u)
    return camera.finish(images, p["jpeg_quality"])[0]


def _same_person(n: int, seed: int, **kwargs) -> Params:
    u = np.repeat(draw_uniforms([(seed, 1)]), n, axis=0)
    return sample_faces(u, np.zeros(n, bool), **kwargs)


def sample_rows(size: int = 96, seed: int = 0) -> list[tuple[str, list[np.ndarray], list[str]]]:
    """The rows of the sample picture: (row title, images, captions)."""
    rows = []
    g = generate("expression", 400, size=size, seed=seed)
    firsts = [next(i for i, r in enumerate(g.records) if r.label == c) for c in range(8)]
    rows.append(("expression", [g.images[i] for i in firsts],
                 [f"{g.records[i].label} {EXPRESSIONS[g.records[i].label]}" for i in firsts]))
    p = _same_person(8, seed + 11, expression=np.arange(8), intensity=np.ones(8),
                     attributes=np.zeros((8, 10), int))
    rows.append(("one person", list(_shoot(p, size, [(seed, 2)] * 8)),
                 [f"{c} {EXPRESSIONS[c]}" for c in range(8)]))
    g = generate("attributes", 8, size=size, seed=seed + 1)
    rows.append(("attributes", list(g.images),
                 [", ".join(_SHORT[n] for n, v in zip(ATTRIBUTE_NAMES, r.attributes) if v) or "none"
                  for r in g.records]))
    forced = np.zeros((10, 10), int)
    forced[np.arange(10), np.arange(10)] = 1
    p = _same_person(10, seed + 3, attributes=forced)
    rows.append(("one person", list(_shoot(p, size, [(seed, 4)] * 10)), [_SHORT[n] for n in ATTRIBUTE_NAMES]))
    p = _same_person(5, seed + 5, attributes=np.zeros((5, 10), int))
    donor = _same_person(5, seed + 6)
    manip_u = np.repeat(draw_uniforms([(seed, 7)], N_MANIP_UNIFORMS), 5, axis=0)
    frames = _shoot(p, size, [(seed, 8)] * 5, np.arange(-1, 4), donor, manip_u)
    diffs = [np.repeat(np.clip(np.abs(f.astype(int) - frames[0].astype(int)).max(-1) * 4, 0, 255)
                       .astype(np.uint8)[..., None], 3, axis=-1) for f in frames[1:]]
    rows.append(("deepfake", list(frames) + diffs,
                 ["real", *METHODS] + [f"{m} diff x4" for m in METHODS]))
    return rows


def save_grid(path: str | Path, size: int = 96, seed: int = 0) -> Path:
    """Draw the sample rows with matplotlib and save them as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sample_rows(size, seed)
    ncols = max(len(images) for _, images, _ in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.25 * ncols, 1.45 * len(rows)), squeeze=False)
    for r, (title, images, captions) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c])
                ax.set_title(captions[c], fontsize=6.5, pad=2)
        axes[r, 0].text(-0.08, 0.5, title, transform=axes[r, 0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=8)
    fig.tight_layout(pad=0.4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    with Image.open(buf) as im:  # a 256-colour palette keeps the file small enough for a repository
        im.convert("RGB").quantize(256).save(path, optimize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Save a labelled grid of synthetic samples.")
    parser.add_argument("path", nargs="?", default="docs/img/synthetic_samples.png")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(save_grid(args.path, args.size, args.seed))


if __name__ == "__main__":
    main()
