"""The multi-task L-SSAT model: one encoder, a task head and the recipe's auxiliary branches.

Training step (`training_losses`, METHOD.md section 2), on a batch of raw images in [0, 255]:

1. texture code maps (LDP / LBP) are computed on the batch's device from the raw images, once per
   step, only for the descriptors the recipe uses;
2. masked pass (aux "mae"): the `mask_input` image, per-sample random masking, encoder, decoder,
   one prediction per target; loss per target on the masked patches only, then their mean;
3. unmasked pass: the `classify_input` image, encoder, pooled feature, task head, task loss (the
   loss function is passed in: the model does not know the task);
4. total = lambda * task + (1 - lambda) * reconstruction, or, without MAE, hmtl_weights["task"] *
   task; puzzle and in-painting losses are added with their `hmtl_weights`.

Inference (`forward`) runs the unmasked pass and the head only; for Fusion-SSAT also the decoder's
trunk on the unmasked encoding of `mask_input` (never the prediction heads).

Input images: RGB (`classify_input`/`mask_input` "rgb") are normalised with the ImageNet mean and
std (or the pretrained weights' own, when weights are loaded). A texture input is its code map
scaled to [0, 1], then mapped to [-1, 1]; `texture_channels` "replicate" copies it to 3 channels for
the shared stem, "own" gives it a 1-channel copy of the stem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lssat.errors import ConfigError, InputError
from lssat.models.auxiliary.inpaint import IMAGENET_MEAN, IMAGENET_STD, InpaintAux
from lssat.models.auxiliary.mae import MAEBranch, TargetSpec, target_spec
from lssat.models.auxiliary.puzzle import PuzzleAux, shuffle_tiles
from lssat.models.backbones import create_backbone
from lssat.models.heads import LinearHead
from lssat.models.masking import PatchMask, patchify, random_masking, unpatchify
from lssat.models.recipe import Recipe, load_recipe

TaskLoss = Callable[[torch.Tensor, Any], torch.Tensor]


class LSSATModel(nn.Module):
    """Encoder + task head + auxiliary branches, configured by a Recipe.

    Args:
        backbone_name: timm model name of a supported family (see `backbones.FAMILIES`).
        num_outputs: logits of the task head (from the task).
        recipe: a Recipe, or a preset name / YAML path for `load_recipe`.
        img_size: square input size; a multiple of the backbone's patch grid stride.
        pretrained, weights, allow_hub: see `backbones.create_backbone`.
        backbone_kwargs: timm architecture overrides (depth, embed_dim, patch_size, ...).
        head_dropout: dropout before the task head.
        norm_mean, norm_std: RGB normalisation; default ImageNet, or the pretrained weights' own.
        init: "timm" or "mae": how a from-scratch backbone is initialised (`backbones.init_mae`);
            under "mae" a token-dropping backbone's task head is xavier-uniform too, as in MAE/SSAT.
    """

    def __new__(cls, backbone_name: str | None = None, *args: Any, **kwargs: Any) -> LSSATModel:
        # a clip backbone name (clip_<vit>) gives the clip model, wherever the model is built
        if cls is LSSATModel and isinstance(backbone_name, str) and backbone_name.startswith("clip_"):
            from lssat.models.clip import ClipModel

            cls = ClipModel
        return super().__new__(cls)

    def __init__(
        self,
        backbone_name: str,
        num_outputs: int,
        recipe: Recipe | str | Path = "ssat",
        img_size: int = 224,
        *,
        pretrained: bool = False,
        weights: str | Path | None = None,
        allow_hub: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
        head_dropout: float = 0.0,
        norm_mean: tuple[float, float, float] | None = None,
        norm_std: tuple[float, float, float] | None = None,
        init: str = "timm",
    ) -> None:
        super().__init__()
        self.recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        r = self.recipe
        self.img_size = int(img_size)
        self.backbone_name = backbone_name
        self.num_outputs = int(num_outputs)
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.head_dropout = float(head_dropout)
        self.backbone = bb = create_backbone(
            backbone_name, self.img_size, pretrained=pretrained, weights=weights, allow_hub=allow_hub,
            init=init, **(backbone_kwargs or {}),
        )
        if self.img_size % bb.patch_size:
            raise ConfigError(f"img_size {img_size} is not a multiple of {backbone_name}'s patch size {bb.patch_size}")
        if r.fusion and bb.masking != "drop":
            raise ConfigError(
                f"recipe {r.name}: fusion needs an MAE decoder, i.e. a token-dropping backbone "
                f"(vit, deit, eva, cait); {backbone_name} masks with mask tokens"
            )
        loaded = pretrained or weights is not None
        cfg = getattr(bb.model, "pretrained_cfg", {}) or {}
        mean = norm_mean or (cfg.get("mean") if loaded else None) or IMAGENET_MEAN
        std = norm_std or (cfg.get("std") if loaded else None) or IMAGENET_STD
        self.register_buffer("rgb_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

        self.code_spaces = {kind: self._code_space(kind) for kind in sorted(r.textures_needed())}
        if r.texture_channels == "own":
            inputs = {r.classify_input} | ({r.mask_input} if r.uses_mae else set())
            for kind in sorted(inputs - {"rgb"}):
                bb.add_stem(kind, 1)

        if not r.uses_mae and bb.masking == "token":
            bb.remove_mask_token()
        self.mae: MAEBranch | None = None
        if r.uses_mae:
            self.mae = MAEBranch(
                bb, self.target_specs(), width=r.decoder.width, depth=r.decoder.depth, num_heads=r.decoder.num_heads,
                mlp_ratio=r.decoder.mlp_ratio, norm_pix=r.norm_pix,
            )
        fused = self.mae.feature_dim if (self.mae is not None and r.fusion) else 0
        if "puzzle" in r.aux and r.puzzle.task_dropout is not None:
            head_dropout = r.puzzle.task_dropout  # HMTL's task-head dropout
        self.head = LinearHead(bb.num_features + fused, num_outputs, head_dropout)
        self.init = init
        if init == "mae" and bb.masking == "drop" and not (pretrained or weights is not None):
            nn.init.xavier_uniform_(self.head.fc.weight)  # MAE's _init_weights covers the head too
        self.puzzle = PuzzleAux(bb.num_features, r.puzzle.grid, r.puzzle.reduction, r.puzzle.dropout) \
            if "puzzle" in r.aux else None
        self.inpaint = None
        if "inpaint" in r.aux:
            self.inpaint = InpaintAux(
                bb.num_features, bb.patch_size, bb.grid_size,
                min_frac=r.inpaint.min_frac, max_frac=r.inpaint.max_frac,
                perceptual_weights=r.inpaint.perceptual_weights, perceptual_weight=r.inpaint.perceptual_weight,
            )

    # ------------------------------------------------------------------ timm's optimizer factory
    def no_weight_decay(self) -> set[str]:
        """Full names of the parameters that timm modules inside exempt from weight decay (their
        `no_weight_decay()`: position embedding, CLS / distillation tokens, ...), for
        `timm.optim.create_optimizer_v2`; mask tokens are not listed (SSAT and MAE decay them)."""
        names: set[str] = set()
        for prefix, module in self.named_modules():
            listed = getattr(module, "no_weight_decay", None)
            if module is self or not callable(listed):
                continue
            try:
                exempt = listed()
            except TypeError:
                continue
            names.update(f"{prefix}.{name}" if prefix else str(name) for name in exempt)
        return names

    def group_matcher(self, coarse: bool = False) -> Any:
        """The backbone's timm `group_matcher` on this model's parameter names, for layer-wise lr
        decay: stem (with lssat's extra stems and mask token), then the blocks; the decoder, heads
        and other auxiliary branches are unmatched, which timm puts in the last layer (scale 1)."""
        matcher = getattr(self.backbone.model, "group_matcher", None)
        if matcher is None:
            raise ConfigError(f"{self.backbone_name}: layer-wise lr decay needs timm's group_matcher, which this "
                              f"backbone has not; set trainer.layer_decay / finetune_layer_decay to null")
        inner = matcher(coarse=coarse)

        def under(pattern: str) -> str:  # timm matches names from their start (re.match)
            return r"^backbone\.model\.(?:" + re.sub(r"(^|\|)\^", r"\1", pattern) + ")"

        def prefixed(spec: Any) -> Any:
            return under(spec) if isinstance(spec, str) else [(under(pattern), rest) for pattern, rest in spec]

        extra = r"^backbone\.(?:mask_token|stems\.)"
        if callable(inner):  # a function of the name (CaiT): ordinal of a backbone name
            start = "backbone.model."

            def ordinal(name: str) -> Any:
                if name.startswith(start):
                    return inner(name[len(start):])
                return 0 if re.match(extra, name) else float("inf")

            return ordinal
        out = {key: prefixed(spec) for key, spec in inner.items()}
        out["stem"] = f"{out['stem']}|{extra}" if isinstance(out.get("stem"), str) else extra
        return out

    # ------------------------------------------------------------------ inputs and targets
    def target_specs(self) -> list[TargetSpec]:
        """What the MAE decoder predicts per token, one spec per recipe target."""
        r = self.recipe
        return [target_spec(t, r.target_encoding, self.backbone.patch_size,
                            self.code_spaces[t].num_codes if t in self.code_spaces else 0) for t in r.targets]

    def draw_mask(self, batch: int, generator: torch.Generator | None, device: torch.device) -> PatchMask:
        """The masked pass's mask: per-sample random masking at the recipe's ratio."""
        return random_masking(batch, self.backbone.num_patches, self.recipe.mask_ratio, generator=generator,
                              device=device)

    def _code_space(self, kind: str) -> Any:
        from lssat.texture import targets

        t = self.recipe.texture
        if kind == "ldp":
            return targets.ldp_code_space(t.ldp_k)
        return targets.lbp_code_space(t.lbp_P, t.lbp_method)

    def _codes(self, kind: str, raw: torch.Tensor, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 1, H, W) code map of `raw`, computed once per step per descriptor."""
        if kind not in cache:
            from lssat import texture

            t = self.recipe.texture
            with torch.no_grad():
                if kind == "ldp":
                    cache[kind] = texture.ldp(raw, k=t.ldp_k)
                else:
                    cache[kind] = texture.lbp(raw, P=t.lbp_P, R=t.lbp_R, method=t.lbp_method)
        return cache[kind]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check a batch and return it as float32 (B, 3, H, W) in [0, 255] on the model's device."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"images must be a (B, 3, H, W) or (B, 1, H, W) tensor, got {shape}")
        if tuple(images.shape[-2:]) != (self.img_size, self.img_size):
            raise InputError(
                f"images are {images.shape[-2]}x{images.shape[-1]}, the model expects {self.img_size}x{self.img_size}"
            )
        raw = images.to(device=self.rgb_mean.device, dtype=torch.float32)
        return raw.expand(-1, 3, -1, -1) if raw.shape[1] == 1 else raw

    def normalize_rgb(self, raw: torch.Tensor) -> torch.Tensor:
        """[0, 255] RGB -> mean/std-normalised encoder input."""
        return (raw / 255.0 - self.rgb_mean) / self.rgb_std

    def image_input(
        self, kind: str, raw: torch.Tensor, cache: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, str | None]:
        """The encoder input for `kind` ("rgb", "ldp", "lbp") and the stem to use (None = default)."""
        if kind == "rgb":
            return self.normalize_rgb(raw), None
        from lssat.texture.targets import scaled_map

        scaled = scaled_map(self._codes(kind, raw, {} if cache is None else cache), self.code_spaces[kind])
        img = (scaled.to(raw.dtype) - 0.5) / 0.5
        if self.recipe.texture_channels == "own":
            return img, kind
        return img.expand(-1, 3, -1, -1), None

    def encode_unmasked(self, kind: str, raw: torch.Tensor, cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Encoder features of the full (unmasked) `kind` image."""
        x, stem = self.image_input(kind, raw, cache)
        return self.backbone.encode(self.backbone.embed(x, stem))

    def reconstruction_targets(self, raw: torch.Tensor, cache: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-target (B, N, D) targets in patch order (RGB: normalised pixels, MAE-style)."""
        cache = {} if cache is None else cache
        p = self.backbone.patch_size
        out = {}
        for name in self.recipe.targets:
            if name == "rgb":
                out[name] = patchify(self.normalize_rgb(raw), p)
            else:
                from lssat.texture.targets import encode_targets

                codes = self._codes(name, raw, cache)
                out[name] = encode_targets(codes, self.code_spaces[name], self.recipe.target_encoding, p)
        return out

    # ------------------------------------------------------------------ passes
    def _fused(self, pooled: torch.Tensor, aux_features: torch.Tensor) -> torch.Tensor:
        return torch.cat([pooled, self.mae.aux_feature(self.backbone.decoder_input(aux_features))], dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Inference: logits of the unmasked pass (plus the fused auxiliary feature for fusion)."""
        r = self.recipe
        raw = self.prepare(images)
        cache: dict[str, torch.Tensor] = {}
        feats = self.encode_unmasked(r.classify_input, raw, cache)
        pooled = self.backbone.pool(feats)
        if r.fusion:
            aux = feats if r.mask_input == r.classify_input else self.encode_unmasked(r.mask_input, raw, cache)
            pooled = self._fused(pooled, aux)
        return self.head(pooled)

    def training_losses(
        self,
        images: torch.Tensor,
        task_loss_fn: TaskLoss,
        targets: Any,
        *,
        generator: torch.Generator | None = None,
        return_reconstructions: bool = False,
    ) -> dict[str, Any]:
        """One SSAT / HMTL training step's losses.

        Args:
            images: (B, 3, H, W) raw batch, uint8 or float in [0, 255] (after geometric augmentation).
            task_loss_fn: `task_loss_fn(logits, targets) -> scalar` (e.g. a task's `loss`).
            targets: passed to `task_loss_fn` untouched (labels, or the whole batch dict).
            generator: seeds masking, tile permutations and in-painting boxes.
            return_reconstructions: add "reconstructions" (detached per-target predictions).

        Returns:
            dict with "loss" (to back-propagate), "task_loss", "logits", and per branch:
            "recon_loss", "recon_<target>", "mask" (B, N; 1 = masked); "puzzle_loss", "puzzle_acc";
            "inpaint_loss", "inpaint_l1" (and "inpaint_perceptual").
        """
        r = self.recipe
        bb = self.backbone
        raw = self.prepare(images)
        cache: dict[str, torch.Tensor] = {}
        out: dict[str, Any] = {}

        cls_raw, cls_cache = raw, cache
        if self.puzzle is not None:
            shuffled, labels = shuffle_tiles(raw, r.puzzle.grid, generator)
            if r.puzzle.task_on_shuffled:
                cls_raw, cls_cache = shuffled, {}
        # a mask-token encoder sees the same input twice: run both passes as one stacked batch
        stacked = self.mae is not None and bb.masking == "token" and r.mask_input == r.classify_input and cls_raw is raw
        if stacked:
            x, stem = self.image_input(r.mask_input, raw, cache)
            pm = self.draw_mask(raw.shape[0], generator, raw.device)
            feats, enc = bb.encode_unmasked_and_masked(bb.embed(x, stem), pm.mask)
        else:
            feats = self.encode_unmasked(r.classify_input, cls_raw, cls_cache)
        pooled = bb.pool(feats)
        head_in = pooled

        if self.mae is not None:
            if not stacked:
                x, stem = self.image_input(r.mask_input, raw, cache)
                pm = self.draw_mask(raw.shape[0], generator, raw.device)
                tokens = bb.embed(x, stem)
                enc = bb.encode(tokens, keep=pm.keep) if bb.masking == "drop" else bb.encode(tokens, mask=pm.mask)
            preds = self.mae.predict(bb, enc, pm)
            out.update(self.mae.losses(preds, self.reconstruction_targets(raw, cache), pm.mask))
            out["mask"] = pm.mask
            if return_reconstructions:
                out["reconstructions"] = {k: v.detach() for k, v in preds.items()}
            if r.fusion:
                same = r.mask_input == r.classify_input and cls_raw is raw
                head_in = self._fused(pooled, feats if same else self.encode_unmasked(r.mask_input, raw, cache))

        logits = self.head(head_in)
        out["logits"] = logits
        out["task_loss"] = task_loss_fn(logits, targets)
        w = r.hmtl_weights
        if self.mae is not None:
            total = r.lambda_ * out["task_loss"] + (1.0 - r.lambda_) * out["recon_loss"]
        else:
            total = w.get("task", 1.0) * out["task_loss"]

        if self.puzzle is not None:
            pz = pooled if r.puzzle.task_on_shuffled else bb.pool(self.encode_unmasked(r.classify_input, shuffled))
            out.update(self.puzzle.losses(pz, labels))
            total = total + w.get("puzzle", 1.0) * out["puzzle_loss"]
        if self.inpaint is not None:
            holed, hole = self.inpaint.make_holes(raw, generator)
            fi = self.encode_unmasked(r.classify_input, holed)
            out.update(self.inpaint.losses(bb.patch_features(fi), raw / 255.0, hole))
            total = total + w.get("inpaint", 1.0) * out["inpaint_loss"]
        out["loss"] = total
        return out

    def reconstruction_images(self, reconstructions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Turn per-patch predictions into images for visualisation: regression targets unpatchified
        ((B, 3, H, W) normalised RGB, (B, 1, H, W) scaled codes); index targets as the predicted
        code index / (num_codes - 1); histogram targets have no image and are left out."""
        if self.mae is None:
            raise ConfigError(f"recipe {self.recipe.name}: no reconstruction branch to visualise")
        bb = self.backbone
        images = {}
        for name, pred in reconstructions.items():
            spec = self.mae.specs[name]
            if spec.kind == "regression":
                images[name] = unpatchify(pred, bb.patch_size, bb.grid_size, 3 if name == "rgb" else 1)
            elif spec.kind == "index":
                b, n = pred.shape[:2]
                idx = pred.reshape(b, n, -1, spec.classes).argmax(-1).float() / max(spec.classes - 1, 1)
                images[name] = unpatchify(idx, bb.patch_size, bb.grid_size, 1)
        return images

    # ------------------------------------------------------------------ Hugging Face folder layout
    def architecture(self) -> dict[str, Any]:
        """The arguments that rebuild this model (plain data): backbone, num_outputs, recipe,
        img_size, backbone_kwargs, head_dropout, norm_mean, norm_std."""
        return {"backbone": self.backbone_name, "num_outputs": self.num_outputs, "recipe": self.recipe.to_dict(),
                "img_size": self.img_size, "backbone_kwargs": dict(self.backbone_kwargs),
                "head_dropout": self.head_dropout, "norm_mean": self.rgb_mean.flatten().tolist(),
                "norm_std": self.rgb_std.flatten().tolist()}

    def save_pretrained(self, save_directory: str | Path, *, task: Any = None, **extra: Any) -> Path:
        """Write the Hugging Face layout: ``config.json`` (the architecture, plus the task's kind,
        names and threshold when `task` is given, plus `extra` plain-data keys such as the
        `lssat.infer.checkpoint.ModelSpec` preprocessing fields) and ``model.safetensors``.

        A folder with the task in its config is what `lssat.load` reads; `from_pretrained` rebuilds
        the model from either. Returns the folder.
        """
        from lssat.fileio import atomic_write_text, dumps_json
        from lssat.models.weights import save_safetensors

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"model_type": "lssat", **self.architecture()}
        if task is not None:
            config.update(task_kind=task.kind, names=list(task.names), threshold=float(task.threshold))
        config.update(extra)
        save_safetensors(self.state_dict(), folder / "model.safetensors", {"format": "pt"})
        atomic_write_text(folder / "config.json", dumps_json(config, indent=2) + "\n")
        return folder

    def push_to_hub(self, repo_id: str, *, task: Any = None, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload lssat model", **extra: Any) -> str:
        """Upload the `save_pretrained` folder (config.json + model.safetensors) to the Hugging Face
        hub repository `repo_id` (created if missing) with huggingface_hub's HfApi; returns the
        commit's URL. With ``HF_HUB_OFFLINE=1`` it refuses in one line: write the folder with
        `save_pretrained` and upload it later (``hf upload``)."""
        import os
        import tempfile

        from huggingface_hub import HfApi

        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise InputError(f"push_to_hub {repo_id}: HF_HUB_OFFLINE=1 forbids uploading; save_pretrained(folder) "
                             f"writes the same files locally")
        api = HfApi(token=token)
        with tempfile.TemporaryDirectory(prefix="lssat-push-") as tmp:
            folder = self.save_pretrained(tmp, task=task, **extra)
            repo = api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), commit_message=commit_message)
        return str(getattr(commit, "commit_url", commit))

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, map_location: str | torch.device = "cpu") -> LSSATModel:
        """The model `save_pretrained` wrote, in eval mode: a local folder (config.json +
        model.safetensors) or ``hf-hub:org/repo[@revision]``, read through huggingface_hub's cache
        (downloaded only when the hub may be reached; see `lssat.infer.checkpoint.resolve_hub`)."""
        import json

        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from lssat.models.weights import first_mismatch

        if isinstance(folder, str) and folder.startswith("hf-hub:"):
            from lssat.errors import DataError
            from lssat.infer.checkpoint import resolve_hub

            try:
                folder = resolve_hub(folder)
            except DataError as err:
                raise InputError(str(err)) from None
        folder = Path(folder)
        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        for path in (config_path, weights_path):
            if not path.is_file():
                raise InputError(f"{path}: not found (from_pretrained reads a local folder holding config.json and "
                                 f"model.safetensors)")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise InputError(f"{config_path}: not readable JSON ({str(err).splitlines()[0][:160]})") from None
        if not isinstance(config, dict) or "backbone" not in config or "num_outputs" not in config:
            raise InputError(f"{config_path}: not an lssat model config (expected the keys backbone and num_outputs)")
        try:
            state = load_file(str(weights_path), device=str(map_location))
        except (SafetensorError, OSError) as err:
            raise InputError(f"{weights_path}: not a readable safetensors file ({err})") from None
        recipe = config.get("recipe", "ssat")
        model = cls(config["backbone"], int(config["num_outputs"]),
                    load_recipe(Recipe(), overrides=recipe) if isinstance(recipe, dict) else recipe,
                    int(config.get("img_size", 224)), backbone_kwargs=config.get("backbone_kwargs") or {},
                    head_dropout=float(config.get("head_dropout", 0.0)), norm_mean=config.get("norm_mean"),
                    norm_std=config.get("norm_std"))
        problem = first_mismatch(state, model.state_dict())
        if problem:
            raise InputError(f"{weights_path}: weights do not fit the model config.json describes ({problem})")
        model.load_state_dict(state)
        return model.to(map_location).eval()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_image(model: LSSATModel, img_size: int | None = None) -> int:
    """FLOPs of one inference forward on one image (torch's FlopCounterMode: a multiply-add counts
    as 2 FLOPs; matmuls, attention and convolutions, including a texture descriptor's convolutions
    when the classified input is a texture; elementwise ops are not counted)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    size = img_size or model.img_size
    device = next(model.parameters()).device
    x = model.example_input(size) if hasattr(model, "example_input") else \
        torch.full((1, 3, size, size), 128.0, device=device)
    was_training = model.training
    model.eval()
    try:
        # the math attention kernel decomposes into counted matmuls; fused CPU kernels would count 0
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
