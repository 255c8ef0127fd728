"""Synthetic *domains*: a second dataset from the same generator, for cross-dataset tests offline.

``domain: default`` is the generator as calibrated (docs/synthetic.md); its pixels never depend on
this module. ``domain: shifted`` is another "dataset" in the sense deepfake researchers test across
(FaceForensics++ -> Celeb-DF): other people, another camera and other face statistics, with the
same four manipulations. Against the default domain it changes, after the same draws:

- people: other identities (the shifted domain seeds its generators apart from the default's, so
  no face of one domain appears in the other);
- face statistics: broader, shorter faces (width x 1.08, height x 0.94), wider-set eyes (x 1.06),
  warmer and darker skin (R x 1.0, G x 0.93, B x 0.85 of the default's colour), smaller in the
  frame (scale x 0.9);
- camera: a warm white balance (R x 1.06, B x 0.90), stronger sensor noise (sigma 1.6 x the
  default's plus 1 grey level) that is *luminance* noise (the same value on the three channels,
  in 2 x 2 grains, like a denoised phone pipeline) instead of independent per-channel noise, and
  harder JPEG compression (quality 40 to 70 instead of the difficulty's ``jpeg_min`` to 95).

The manipulations and their strength are those of the difficulty, so a detector that learnt the
manipulation evidence (seams, resampling, missing noise) rather than the camera transfers.
"""

from __future__ import annotations

import numpy as np

from lssat.errors import ConfigError

F32 = np.float32
DOMAINS = ("default", "shifted")
SHIFTED_KEY_OFFSET = 8  # added to the split code of every random key: other people, same layout
SHIFTED_JPEG = (40, 70)

_SKIN_GAIN = np.array([1.0, 0.93, 0.85], F32)
_WB_GAIN = np.array([1.06, 1.0, 0.90], F32)


def check_domain(domain: object) -> str:
    """The domain name, or a ConfigError naming the option and the known domains."""
    if domain not in DOMAINS:
        raise ConfigError(f"synthetic: domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    return str(domain)


def shift_faces(p: dict[str, np.ndarray], domain: str, jpeg_min: float) -> dict[str, np.ndarray]:
    """Faces of `domain` from faces drawn for the default domain (in place; returns `p`).

    `jpeg_min`: the difficulty's lowest JPEG quality, to map the drawn quality onto the shifted range.
    """
    if domain == "default":
        return p
    p["face_w"] = (p["face_w"] * F32(1.08)).astype(F32)
    p["face_h"] = (p["face_h"] * F32(0.94)).astype(F32)
    p["eye_dx"] = (p["eye_dx"] * F32(1.06)).astype(F32)
    p["skin"] = np.clip(p["skin"] * _SKIN_GAIN, 0, 255).astype(F32)
    p["lip"] = np.clip(p["lip"] * _SKIN_GAIN, 0, 255).astype(F32)
    p["scale"] = (p["scale"] * F32(0.9)).astype(F32)
    p["wb"] = (p["wb"] * _WB_GAIN).astype(p["wb"].dtype)
    p["noise"] = (p["noise"] * F32(1.6) + F32(1.0)).astype(F32)
    lo, hi = SHIFTED_JPEG
    share = (p["jpeg_quality"].astype(np.float64) - jpeg_min) / max(95.0 - jpeg_min, 1e-9)
    p["jpeg_quality"] = np.round(lo + np.clip(share, 0, 1) * (hi - lo)).astype(np.int64)
    return p
