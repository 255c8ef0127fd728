"""Decoding face images to uint8 RGB tensors, the dataset over index records, and the batch collate.

A dataset item is a dict (see `lssat.data.datamodule` for the batch schema) or None when the image
could not be read; `FaceCollate` drops the None items. Failed images are flagged in a shared-memory
tensor, one byte per record, so that the count is right whichever worker process read the file, and
each file is counted once however many epochs meet it.

Strict mode raises the DataError in the main process: directly when the dataset is read there, and
through `FaceDataLoader` when a worker met the bad file (a worker exception would reach the user as
a multi-line traceback text, and leaves torch's worker shutdown waiting on a timeout).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, get_worker_info

try:  # torchvision >= 0.29 deprecates its decoders (for TorchCodec); PIL takes over once they are gone
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover
    decode_jpeg = None

from lssat.data.index import Record
from lssat.errors import DataError

_JPEG_MAGIC = b"\xff\xd8\xff"
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class SkippedImageWarning(UserWarning):
    """An image was missing or unreadable and its record was left out of the batch."""


class ImageDecodeError(DataError):
    """An image file is missing or not a readable image; `reason` says why, without the name."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def pil_to_tensor_rgb(image: Image.Image) -> torch.Tensor:
    """A PIL image of any mode as a uint8 (3, H, W) RGB tensor.

    Grayscale, palette, CMYK and alpha modes go through PIL's RGB conversion (alpha is dropped, as
    timm and torchvision do). 16-bit grayscale ("I;16*", and "I", taken as 16-bit) is scaled by
    1/256 rather than clipped; float images ("F") are taken as [0, 1] when their maximum is at most
    1, else as [0, 255].
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        array = np.asarray(image).astype(np.int64)
        gray = (np.clip(array, 0, 65535) >> 8).astype(np.uint8)
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if np.nanmax(array, initial=0.0) <= 1.0 else 1.0
        gray = np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
    else:
        if image.mode != "RGB":
            image = image.convert("RGB")
        rgb = np.array(image, dtype=np.uint8, copy=True)
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    return torch.from_numpy(np.ascontiguousarray(gray)).unsqueeze(0).expand(3, -1, -1).contiguous()


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Decode an encoded image to a uint8 (3, H, W) RGB tensor, applying EXIF orientation.

    JPEGs go through torchvision's libjpeg-turbo decoder when torchvision still has it (about 1.4x
    faster here than PIL, and it yields a CHW tensor directly); everything else goes through PIL.
    Raises ImageDecodeError naming `name` for data that is not a readable image: not an image
    format, truncated, larger than MAX_IMAGE_PIXELS (a decompression bomb), or a JPEG whose header
    claims more pixels than its data could hold (the decoder would fill the rest with grey).
    """
    try:
        if data[:3] == _JPEG_MAGIC:
            pixels = _check_jpeg_header(data)
            if decode_jpeg is not None and pixels <= _TORCHVISION_MAX_PIXELS:
                buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return decode_jpeg(buffer, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked just below
            image = Image.open(io.BytesIO(data))
        with image:
            _check_pixels(*image.size)
            image.load()
            return pil_to_tensor_rgb(ImageOps.exif_transpose(image))
    except _DECODE_ERRORS as err:
        raise _decode_error(err, name) from None


#: What PIL, torchvision and the header checks raise for data that is not a readable image.
_DECODE_ERRORS = (OSError, RuntimeError, ValueError, SyntaxError, EOFError, MemoryError, UnidentifiedImageError,
                  Image.DecompressionBombError)


def _decode_error(err: BaseException, name: str) -> ImageDecodeError:
    """The ImageDecodeError for a decoder's exception, with a one-line reason."""
    reason = str(err).splitlines()[-1] if str(err) else type(err).__name__
    if isinstance(err, UnidentifiedImageError):  # PIL's text names an anonymous BytesIO object
        reason = NOT_AN_IMAGE
    elif isinstance(err, MemoryError):
        reason = "not enough memory to decode it"
    elif isinstance(err, Image.DecompressionBombError):
        reason = _too_many_pixels(reason)
    elif "decode_jpeg" in reason:  # torchvision prefixes its source location
        reason = reason.rsplit(", ", 1)[-1]
    if reason.startswith("image file is truncated"):
        reason = "truncated file (" + reason.removeprefix("image file is truncated").strip(" ()") + ")"
    return ImageDecodeError(f"{name}: unreadable image ({reason})", reason)


#: Reason given for data that no decoder recognises as an image.
NOT_AN_IMAGE = "not a recognised image format"

#: Images with more pixels than this are refused before decoding (PIL's decompression-bomb limit).
MAX_IMAGE_PIXELS = 89_478_485

#: Larger JPEGs are decoded by PIL, which reports a failed allocation as MemoryError; torchvision's
#: decoder has libtorch print a C++ backtrace to stderr first.
_TORCHVISION_MAX_PIXELS = 1 << 24

#: Image files larger than this are refused without being read.
MAX_IMAGE_FILE_BYTES = 512 * 2**20


class _BadImage(ValueError):
    """A header check failed; the text is the reason."""


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise _BadImage(f"{width}x{height} pixels, over the limit of {MAX_IMAGE_PIXELS} pixels: "
                        "a decompression bomb?")


def _too_many_pixels(reason: str) -> str:
    import re

    m = re.search(r"\((\d+) pixels\)", reason)
    return (f"{m.group(1)} pixels, over the limit of {MAX_IMAGE_PIXELS} pixels: a decompression bomb?"
            if m else reason)


# JPEG frame markers (SOF) of Huffman-coded images and the fewest bits any of their blocks takes:
# sequential scans code a DC value and an end-of-block for every block (at least 1 bit each),
# progressive ones at least the DC value (end-of-block runs can span many blocks). Arithmetic-coded
# and lossless frames have no such floor and are not checked.
_JPEG_MIN_BITS_PER_BLOCK = {0xC0: 2, 0xC1: 2, 0xC2: 1}


def _check_jpeg_header(data: bytes) -> int:
    """Refuse a JPEG over the pixel limit, or one whose scan data is too short for its dimensions.
    Returns its number of pixels (0 when the header could not be parsed)."""
    frame = _jpeg_frame(data)
    if frame is None:
        return 0  # malformed headers are left to the decoder, which says what is wrong
    marker, width, height, sampling, scan_start = frame
    _check_pixels(width, height)
    bits = _JPEG_MIN_BITS_PER_BLOCK.get(marker)
    if not bits or not height or not width or scan_start is None:
        return width * height
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = sum(_ceil_div(_ceil_div(width * h, hmax), 8) * _ceil_div(_ceil_div(height * v, vmax), 8)
                 for h, v in sampling)
    have = len(data) - scan_start
    if have * 8 < blocks * bits:
        raise _BadImage(f"truncated or corrupt JPEG: the header says {width}x{height} pixels but the file "
                        f"holds {have} bytes of image data, too few for that size")
    return width * height


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_frame(data: bytes) -> tuple[int, int, int, list[tuple[int, int]], int | None] | None:
    """(SOF marker, width, height, (h, v) sampling per component, offset of the first scan's data)
    from a JPEG's markers, or None when there is no well-formed frame header."""
    i, n, frame = 2, len(data), None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xD9:  # end of image
            break
        length = (data[i + 2] << 8) | data[i + 3]
        if marker == 0xDA:
            return (*frame, i + 2 + length) if frame is not None else None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            segment = data[i + 4:i + 2 + length]
            if len(segment) < 6 or segment[5] == 0 or len(segment) < 6 + 3 * segment[5]:
                return None
            height = (segment[1] << 8) | segment[2]
            width = (segment[3] << 8) | segment[4]
            sampling = [(segment[7 + 3 * k] >> 4, segment[7 + 3 * k] & 15) for k in range(segment[5])]
            if any(h == 0 or v == 0 for h, v in sampling):
                return None
            frame = (marker, width, height, sampling)
        i += 2 + length
    return (*frame, None) if frame is not None else None


def read_image_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file: only a regular file (a named pipe would block, a device could be
    read without end) of at most MAX_IMAGE_FILE_BYTES. ImageDecodeError naming the path otherwise."""
    from lssat.paths import file_problem, read_capped

    problem = file_problem(path)
    if problem is not None:
        raise ImageDecodeError(f"{path}: image file {problem}", f"image file {problem}")
    try:
        data = read_capped(path, MAX_IMAGE_FILE_BYTES)
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read image file ({err.strerror or err})", str(err.strerror or err)) from None
    if len(data) > MAX_IMAGE_FILE_BYTES:
        reason = f"file larger than {MAX_IMAGE_FILE_BYTES // 2**20} MiB, the limit for one image"
        raise ImageDecodeError(f"{path}: cannot read image file ({reason})", reason)
    if not data:
        raise ImageDecodeError(f"{path}: image file is empty", "empty file")
    return data


def check_image_bytes(data: bytes, name: str = "<bytes>") -> None:
    """The cheap checks of an encoded image, without decoding its pixels: a recognised format,
    within MAX_IMAGE_PIXELS, a JPEG with enough data for its size, PIL's `verify`.
    ImageDecodeError naming `name` otherwise."""
    try:
        if data[:3] == _JPEG_MAGIC:
            _check_jpeg_header(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            _check_pixels(*image.size)
            image.verify()
    except _DECODE_ERRORS as err:
        raise _decode_error(err, name) from None


def decode_image_file(path: str | os.PathLike) -> torch.Tensor:
    """Read and decode an image file; ImageDecodeError naming the path if missing or unreadable.

    Only regular files are opened (a named pipe would block, a device could be read without end),
    and none larger than MAX_IMAGE_FILE_BYTES.
    """
    data = read_image_file(path)
    return decode_image_bytes(data, str(path))


def as_chw_uint8(image: Any) -> torch.Tensor:
    """A uint8 (3, H, W) tensor from a CHW/HWC tensor or array, or a PIL image."""
    if isinstance(image, Image.Image):
        return pil_to_tensor_rgb(image)
    tensor = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image
    if tensor.dtype != torch.uint8:
        raise DataError(f"expected a uint8 image, got dtype {tensor.dtype}")
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim == 3 and tensor.shape[0] not in (1, 3) and tensor.shape[-1] in (1, 3):
        tensor = tensor.permute(2, 0, 1)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise DataError(f"expected an image of shape (3, H, W) or (H, W, 3), got {tuple(tensor.shape)}")
    return tensor.expand(3, -1, -1).contiguous()


class ImageSource(Protocol):
    """Gives the image of the record at a position of one split's record list.

    It raises DataError (ImageDecodeError) for an image it cannot give. A source may also offer
    ``load_many(records, positions) -> list[Tensor | DataError]`` to produce a batch at once (the
    synthetic faces render a batch in one vectorised pass).
    """

    def __call__(self, record: Record, position: int) -> torch.Tensor: ...

    def describe(self, record: Record, position: int) -> str: ...


class FileImages:
    """Images stored as files under a data root (the records of an index)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __call__(self, record: Record, position: int) -> torch.Tensor:
        return decode_image_file(self.root / record.path)

    def describe(self, record: Record, position: int) -> str:
        return str(self.root / record.path)


class FaceDataset(Dataset):
    """The records of one split with their images, transformed; items are dicts or None (skipped).

    `skipped` is a uint8 tensor with one flag per record, in shared memory so that worker processes
    can set it; strict mode raises ImageDecodeError instead of skipping.
    """

    def __init__(self, records: Sequence[Record], images: ImageSource,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, *,
                 num_attributes: int = 0, subgroup_keys: Sequence[str] = (), strict: bool = False) -> None:
        self.records = list(records)
        self.images = images
        self.transform = transform
        self.num_attributes = num_attributes
        self.subgroup_keys = tuple(subgroup_keys)
        self.strict = strict
        self.skipped = torch.zeros(len(self.records), dtype=torch.uint8).share_memory_()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> dict[str, Any] | None:
        record = self.records[position]
        try:
            image = self.images(record, position)
        except DataError as err:
            return self._failed(position, err)
        return self._finish(record, position, image)

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, Any] | None]:
        """A batch of items; one call to the image source's `load_many` when it has one."""
        load_many = getattr(self.images, "load_many", None)
        if load_many is None:
            return [self[p] for p in positions]
        positions = [int(p) for p in positions]
        images = load_many([self.records[p] for p in positions], positions)
        return [self._failed(p, x) if isinstance(x, DataError) else self._finish(self.records[p], p, x)
                for p, x in zip(positions, images)]

    def _finish(self, record: Record, position: int, image: torch.Tensor) -> dict[str, Any]:
        if self.transform is not None:
            image = self.transform(image)
        return self.item(record, position, image)

    def _failed(self, position: int, err: DataError) -> None:
        first = not self.skipped[position]
        self.skipped[position] = 1
        if self.strict and get_worker_info() is None:
            raise ImageDecodeError(str(err)) from None
        if first and not self.strict:
            warnings.warn(f"skipping {err}", SkippedImageWarning, stacklevel=3)
        return None

    def raise_if_failed(self) -> None:
        """Strict mode: raise the DataError of the first flagged record (read again here for its reason)."""
        if not self.strict or not self.skipped.any():
            return
        position = int(torch.nonzero(self.skipped).flatten()[0])
        record = self.records[position]
        try:
            self.images(record, position)
        except DataError as err:
            raise ImageDecodeError(str(err)) from None
        raise ImageDecodeError(f"{self.images.describe(record, position)}: unreadable image (strict mode)")

    def item(self, record: Record, position: int, image: torch.Tensor) -> dict[str, Any]:
        """The item dict of one record (the per-sample form of the batch schema)."""
        attributes = record.attributes if record.attributes is not None else [-1] * self.num_attributes
        subgroup = record.subgroup or {}
        return {
            "image": image,
            "label": -1 if record.label is None else int(record.label),
            "attributes": attributes,
            "video_id": record.video_id or "",
            "method": record.method or "",
            "subgroup": {k: "" if subgroup.get(k) is None else str(subgroup[k]) for k in self.subgroup_keys},
            "frame": -1 if record.frame is None else int(record.frame),
            "index": position,
            "path": record.path,
        }

    def skipped_paths(self) -> list[str]:
        """Where the skipped records point, in record order."""
        flagged = torch.nonzero(self.skipped).flatten().tolist()
        return [self.images.describe(self.records[i], i) for i in flagged]


class FaceCollate:
    """Stacks item dicts into a batch dict, dropping None items (skipped images).

    A batch whose items were all skipped comes out with batch size 0 (image shape (0, 3, S, S)).
    """

    def __init__(self, image_size: int, num_attributes: int = 0, subgroup_keys: Sequence[str] = ()) -> None:
        self.image_size = image_size
        self.num_attributes = num_attributes
        self.subgroup_keys = tuple(subgroup_keys)

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        items = [x for x in items if x is not None]
        if items:
            images = torch.stack([x["image"] for x in items])
        else:
            images = torch.empty((0, 3, self.image_size, self.image_size), dtype=torch.uint8)
        return {
            "image": images,
            "label": torch.tensor([x["label"] for x in items], dtype=torch.long),
            "attributes": torch.tensor([x["attributes"] for x in items], dtype=torch.long)
            .reshape(len(items), self.num_attributes),
            "video_id": [x["video_id"] for x in items],
            "method": [x["method"] for x in items],
            "subgroup": {k: [x["subgroup"][k] for x in items] for k in self.subgroup_keys},
            "frame": torch.tensor([x["frame"] for x in items], dtype=torch.long),
            "index": torch.tensor([x["index"] for x in items], dtype=torch.long),
            "path": [x["path"] for x in items],
        }


class FaceDataLoader(DataLoader):
    """A DataLoader over a FaceDataset that, in strict mode, raises in the main process as soon as a
    worker has flagged a bad image (before the batch that lacks it is handed out)."""

    def __iter__(self):
        iterator = super().__iter__()
        dataset = self.dataset
        if not isinstance(dataset, FaceDataset) or not dataset.strict or self.num_workers == 0:
            return iterator
        return _checked(iterator, dataset)


def _checked(iterator, dataset: FaceDataset):
    for batch in iterator:
        dataset.raise_if_failed()
        yield batch
