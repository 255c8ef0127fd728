"""A picture of an image beside its texture code maps and their histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lssat.errors import InputError
from lssat.texture.lbp import check_lbp_params, lbp
from lssat.texture.ldp import check_ldp_params, ldp
from lssat.texture.targets import CodeSpace, ldp_code_space, lbp_code_space


def load_image(spec: str) -> tuple[np.ndarray, str]:
    """An RGB uint8 (H, W, 3) image from a file path or `skimage:NAME`, and a label for it."""
    if spec.startswith("skimage:"):
        return _skimage_image(spec.split(":", 1)[1]), spec
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    from lssat.data.loading import ImageDecodeError, decode_image_file

    try:
        chw = decode_image_file(path)  # grey, RGBA, palette and 16-bit images become RGB uint8
    except ImageDecodeError as err:
        raise InputError(f"{path}: cannot read as an image ({err.reason})") from None
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy()), path.name


def _skimage_image(name: str) -> np.ndarray:
    from skimage import data

    loader = getattr(data, name, None)
    if not callable(loader) or name.startswith("_"):
        raise InputError(f"skimage:{name}: no such image in skimage.data (try skimage:astronaut)")
    arr = np.asarray(loader())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise InputError(f"skimage:{name}: not a 2-D image (shape {arr.shape})")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1 else 1.0), 0, 255).astype(np.uint8)
    return arr[..., :3]


def texture_maps(image: np.ndarray, descriptor: str = "both", P: int = 8, R: float = 1.0,
                 method: str = "uniform", k: int = 3) -> list[tuple[str, np.ndarray, CodeSpace | None]]:
    """(title, code map, its code space or None for non-codes) for each requested descriptor."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
    maps = []
    if descriptor in ("lbp", "both"):
        check_lbp_params(P, R, method)
        codes = lbp(x, P=P, R=R, method=method, compile=False)[0, 0].numpy()
        space = None if method == "var" or (method in ("default", "ror") and P > 16) else lbp_code_space(P, method)
        maps.append((f"LBP P={P} R={R:g} {method}", codes, space))
    if descriptor in ("ldp", "both"):
        check_ldp_params(k)
        codes = ldp(x, k=k, compile=False)[0, 0].numpy()
        maps.append((f"LDP k={k} (Kirsch)", codes, ldp_code_space(k)))
    return maps


def texture_picture(image: np.ndarray, label: str, output: Path, descriptor: str = "both", P: int = 8,
                    R: float = 1.0, method: str = "uniform", k: int = 3) -> Path:
    """Write the input, its code maps and their code histograms to `output`; returns the path."""
    maps = texture_maps(image, descriptor, P, R, method, k)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = output.suffix.lower().lstrip(".")
    if suffix not in plt.gcf().canvas.get_supported_filetypes():
        plt.close("all")
        raise InputError(f"{output}: unsupported picture format {suffix!r} (use .png, .pdf, .svg or .jpg)")
    plt.close("all")
    cols = 1 + len(maps)
    fig, axes = plt.subplots(2, cols, figsize=(4 * cols, 7.2), gridspec_kw={"height_ratios": [3, 1.2]})
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(f"input: {label}")
    gray = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    axes[1, 0].hist(gray.ravel(), bins=64, range=(0, 255), color="0.4")
    axes[1, 0].set_title("grey levels (ITU-R 601)", fontsize=9)
    for col, (title, codes, space) in enumerate(maps, start=1):
        shown = np.nan_to_num(codes.astype(np.float64), nan=0.0)
        axes[0, col].imshow(shown, cmap="nipy_spectral", interpolation="nearest")
        axes[0, col].set_title(title)
        finite = codes[np.isfinite(codes)] if codes.dtype.kind == "f" else codes
        if space is not None:
            values, counts = np.unique(finite, return_counts=True)
            axes[1, col].bar(np.searchsorted(space.codes, values), counts / counts.sum(), width=1.0,
                             color="tab:blue")
            axes[1, col].set_title(f"{len(values)} of {space.num_codes} codes used", fontsize=9)
            axes[1, col].set_xlabel("code index", fontsize=8)
        else:
            axes[1, col].hist(finite.ravel(), bins=64, color="tab:blue")
            axes[1, col].set_title("value histogram", fontsize=9)
    for ax in axes[0]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, output, dpi=90)


def save_figure(fig, output: str | Path, dpi: int) -> Path:
    """Write a matplotlib figure (creating its folder) and close it; a write that fails is an
    InputError naming the file."""
    import matplotlib.pyplot as plt

    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, dpi=dpi)
    except OSError as err:
        raise InputError(f"{output}: cannot write the picture ({err.strerror or err})") from None
    finally:
        plt.close(fig)
    return output
