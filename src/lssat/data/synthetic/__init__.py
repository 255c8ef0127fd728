"""The built-in synthetic face benchmark: procedural faces for the three tasks, no files needed.

Faces vary in identity, pose, lighting, background clutter, sensor noise and JPEG quality; they
carry 10 CelebA-like attributes, 8 expressions in AffectNet's code order, a skin-tone subgroup,
and, as short clips, four FaceForensics++-like manipulations. Everything is deterministic per
(task, seed, split, index) and vectorised over batches of faces.

Modules: `faces` (sampling what a face looks like), `canvas` + `render` + `features` (drawing),
`camera` (noise, JPEG), `deepfakes` (manipulations), `video` (clip motion, video files),
`generator` (items and records), `dataset` (torch Dataset), `writer` (JPEG files and index).
"""

from lssat.data.synthetic.dataset import SyntheticFaces
from lssat.data.synthetic.deepfakes import METHODS
from lssat.data.synthetic.faces import ATTRIBUTE_NAMES, EXPRESSIONS, SKIN_GROUPS
from lssat.data.synthetic.generator import (DEFAULT_CLIP_LEN, DEFAULT_DARK_FRACTION, Generated,
                                            SyntheticSpec, generate, make_header, record_items,
                                            render_items)
from lssat.data.synthetic.video import write_clip_video
from lssat.data.synthetic.writer import write_synthetic

__all__ = ["ATTRIBUTE_NAMES", "DEFAULT_CLIP_LEN", "DEFAULT_DARK_FRACTION", "EXPRESSIONS", "METHODS",
           "SKIN_GROUPS", "Generated", "SyntheticFaces", "SyntheticSpec", "generate", "make_header",
           "record_items", "render_items", "write_clip_video", "write_synthetic"]
