"""Reconstruction pictures for the report: per recipe, a few validation faces with their masked
input, texture (or RGB) targets and the model's reconstructions.

For each recipe with a reconstruction branch, the cell with the best validation headline is drawn
from its best weights (``checkpoints/best.safetensors``, else ``last``), loaded the way
`lssat eval` loads them (`lssat.engine.checkpoints.load_weights`, the model rebuilt from the
checkpoint's own config and recipe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lssat.bench.results import Results
from lssat.bench.tables import main_slice


def _weights(run_dir: Path) -> Path | None:
    for name in ("best", "last"):
        found = sorted(run_dir.glob(f"*/checkpoints/{name}.safetensors"))
        if found:
            return found[-1]
    return None


def _load(path: Path) -> tuple[Any, Any, Any]:
    """Model (eval mode, CPU), its config and a first validation batch."""
    from lssat.config import config_from_dict
    from lssat.engine.checkpoints import load_weights
    from lssat.engine.run import RunDataModule, make_model, make_task
    from lssat.models.recipe import Recipe, load_recipe

    state, meta = load_weights(path)
    tree = meta["config"]
    tree["model"]["pretrained"] = False
    tree["data"] = {**tree["data"], "num_workers": 0, "batch_size": 64}
    cfg = config_from_dict(tree)
    dm = RunDataModule(cfg.data, eval_split="val")
    dm.setup()
    task = make_task(cfg.task, dm)
    model = make_model(cfg, task.num_outputs, load_recipe(Recipe(), meta["recipe"]), norm=meta.get("norm"))
    model.load_state_dict(state)
    model.eval()
    batch = next(iter(dm.val_dataloader()))
    return model, cfg, batch


def _draw(model: Any, images: Any, path: Path, title: str, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import torch

    from lssat.models.masking import unpatchify

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        raw = model.prepare(images)
        out = model.training_losses(images, lambda logits, _: logits.sum() * 0.0, None, generator=generator,
                                    return_reconstructions=True)
        recon = model.reconstruction_images(out["reconstructions"])
        target = model.reconstruction_images(model.reconstruction_targets(raw))
    bb = model.backbone
    mask = unpatchify(out["mask"].float().unsqueeze(-1).expand(-1, -1, bb.patch_size ** 2), bb.patch_size,
                      bb.grid_size, 1)  # 1 where masked
    masked = raw * (1 - mask) + 127.0 * mask

    def rgb(x):  # normalised RGB -> [0, 1]
        return ((x * model.rgb_std + model.rgb_mean).clamp(0, 1)).permute(0, 2, 3, 1).cpu().numpy()

    names = sorted(recon)
    columns = [("input", (raw / 255).permute(0, 2, 3, 1).numpy(), None),
               ("masked input", (masked / 255).permute(0, 2, 3, 1).numpy(), None)]
    for name in names:
        if name == "rgb":
            columns += [("target RGB", rgb(target[name]), None), ("reconstructed RGB", rgb(recon[name]), None)]
        else:
            columns += [(f"target {name.upper()}", target[name][:, 0].numpy(), "gray"),
                        (f"reconstructed {name.upper()}", recon[name][:, 0].clamp(0, 1).numpy(), "gray")]
    rows = raw.shape[0]
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.6 * len(columns), 1.6 * rows + 0.4), squeeze=False)
    for j, (label, data, cmap) in enumerate(columns):
        for i in range(rows):
            ax = axes[i][j]
            ax.imshow(data[i], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def reconstruction_pictures(results: Results, plot_dir: Path, faces: int = 4) -> list[tuple[str, Path]]:
    """One picture per recipe with a reconstruction branch; returns (recipe, path) pairs."""
    from lssat.models.recipe import load_recipe

    frame = main_slice(results)
    made = []
    for recipe in results.recipes:
        try:
            if not load_recipe(recipe).uses_mae:
                continue
        except Exception:  # a custom recipe label: try it anyway
            pass
        cells = frame[frame.recipe == recipe]
        if not len(cells):
            continue
        task = next((t for t in results.tasks if (cells.task == t).any()))
        column = f"val/{results.primary[task]}"
        here = cells[cells.task == task]
        best = here.loc[here[column].idxmax()] if column in here and here[column].notna().any() else here.iloc[0]
        weights = _weights(results.bench_dir / str(best.run_dir))
        if weights is None:
            continue
        model, _, batch = _load(weights)
        if getattr(model, "mae", None) is None:
            continue
        path = plot_dir / f"recon_{recipe}.png"
        images = batch["image"]
        step = max(1, images.shape[0] // faces)  # spread over the batch: frames of different clips
        made.append((recipe, _draw(model, images[::step][:faces], path,
                                   f"{recipe} ({model.recipe.label}) - {best.label}")))
    return made
