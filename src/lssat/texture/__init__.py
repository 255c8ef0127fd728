"""Texture descriptors (LBP, LDP) as batched torch operations on any device.

- `lbp(images, P=8, R=1.0, method="default")`: local binary patterns, bit-exact with
  scikit-image's `local_binary_pattern` on integer images.
- `ldp(images, k=3)`: local directional patterns from the 8 Kirsch compass masks.
- `lssat.texture.targets`: code spaces and per-patch reconstruction targets.

Both take (H, W), (B, H, W) or (B, C, H, W) images in [0, 255] and return (B, 1, H, W) code maps.
"""

from lssat.texture.lbp import lbp
from lssat.texture.ldp import ldp
from lssat.texture.targets import CodeSpace, encode_targets, ldp_code_space, lbp_code_space

__all__ = ["lbp", "ldp", "CodeSpace", "encode_targets", "lbp_code_space", "ldp_code_space"]
