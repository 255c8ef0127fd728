"""Texture descriptors: parity with scikit-image, LDP orientation, shapes, errors, targets."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d
from skimage.feature import local_binary_pattern

from lssat.errors import InputError
from lssat.texture import encode_targets, lbp, ldp, ldp_code_space, lbp_code_space
from lssat.texture import _accel
from lssat.texture.ldp import DIRECTIONS, kirsch_masks
from lssat.texture.targets import code_index, patchify, scaled_map, unpatchify

PARAMS = [(8, 1), (8, 2), (16, 2), (4, 1), (12, 1.5)]
METHODS = ["default", "ror", "uniform", "nri_uniform", "var"]


def _images(levels: int, shape=(3, 19, 23), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, levels, shape).astype(np.uint8)


def _reference(images: np.ndarray, P, R, method) -> np.ndarray:
    return np.stack([local_binary_pattern(im, P, R, method) for im in images])


@pytest.mark.parametrize("P,R", PARAMS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("levels", [6, 256], ids=["ties", "full"])
def test_lbp_matches_skimage_bit_for_bit(P, R, method, levels):
    images = _images(levels)
    ours = lbp(torch.from_numpy(images), P, R, method, compile=False)
    assert ours.shape == (3, 1, 19, 23)
    ref = _reference(images, P, R, method)
    if method == "var":
        # Same NaN rule (zero variance -> NaN) and identical float64 values.
        assert ours.dtype == torch.float64
        assert np.array_equal(ours[:, 0].numpy(), ref, equal_nan=True)
    else:
        assert ours.dtype == torch.int32
        assert np.array_equal(ours[:, 0].numpy(), ref)


def test_lbp_parity_on_large_image_with_position_dependent_weights():
    # Interpolation weights differ by a few ulps from row to row; ties expose any deviation.
    images = _images(4, shape=(1, 150, 260), seed=1)
    for P, R, method in [(8, 1, "uniform"), (12, 1.5, "default")]:
        ours = lbp(torch.from_numpy(images), P, R, method, compile=False)[:, 0].numpy()
        assert np.array_equal(ours, _reference(images, P, R, method))


def test_lbp_float_and_uint8_inputs_agree_and_colour_uses_bt601():
    images = _images(256, shape=(2, 3, 17, 21), seed=2)
    x = torch.from_numpy(images)
    assert torch.equal(lbp(x.float()), lbp(x))
    gray = np.rint(np.einsum("bchw,c->bhw", images.astype(np.float64), [0.299, 0.587, 0.114]))
    expected = _reference(gray.astype(np.uint8), 8, 1, "default")
    assert np.array_equal(lbp(x, method="default")[:, 0].numpy(), expected)


@pytest.mark.parametrize("shape", [(13, 15), (2, 13, 15), (2, 1, 13, 15), (2, 3, 13, 15)])
def test_accepted_shapes_give_b1hw(shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    batch = 1 if len(shape) == 2 else shape[0]
    assert lbp(x).shape == (batch, 1, 13, 15)
    assert ldp(x).shape == (batch, 1, 13, 15)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: lbp(torch.zeros(2, 2, 3, 4, 5)), "shape"),
        (lambda: lbp(torch.zeros(1, 2, 8, 8)), "1 or 3 channels"),
        (lambda: lbp(torch.zeros(8, 8), P=0), "P"),
        (lambda: lbp(torch.zeros(8, 8), R=0), "R"),
        (lambda: lbp(torch.zeros(8, 8), R=-1.5), "R"),
        (lambda: lbp(torch.zeros(8, 8), method="bogus"), "method"),
        (lambda: ldp(torch.zeros(8, 8), k=0), "k"),
        (lambda: ldp(torch.zeros(8, 8), k=8), "k"),
        (lambda: lbp(torch.zeros(0, 8, 8)), "empty"),
        (lambda: ldp(torch.full((8, 8), float("nan"))), "NaN"),
        (lambda: lbp(np.zeros((8, 8))), "torch.Tensor"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(InputError, match=message):
        call()


# ---- LDP -------------------------------------------------------------------------------------

def _ldp_reference(image: np.ndarray, k: int) -> np.ndarray:
    """Independent LDP: scipy correlation with each mask, stable descending sort of |response|."""
    masks = kirsch_masks().numpy()
    resp = np.stack([correlate2d(image.astype(np.float64), m, mode="same", boundary="fill") for m in masks])
    order = np.argsort(-np.abs(resp), axis=0, kind="stable")[:k]
    return (1 << order).sum(axis=0)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("levels", [3, 256])
def test_ldp_matches_independent_reference(k, levels):
    image = _images(levels, shape=(1, 17, 21), seed=k)[0]
    assert np.array_equal(ldp(torch.from_numpy(image), k=k)[0, 0].numpy(), _ldp_reference(image, k))


def test_ldp_unquantised_float_input_breaks_ties_by_direction():
    x = torch.rand(2, 15, 19, dtype=torch.float64) * 255
    ours = ldp(x, quantize=False)[:, 0].numpy()
    assert np.array_equal(ours, np.stack([_ldp_reference(im.numpy(), 3) for im in x]))


def test_kirsch_masks_are_compass_rotations():
    masks = kirsch_masks()
    assert masks[0].tolist() == [[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]]  # East
    assert masks[2].tolist() == [[5, 5, 5], [-3, 0, -3], [-3, -3, -3]]  # North
    assert (masks.sum(dim=(1, 2)) == 0).all()


def _edge_image(direction: str, size: int = 15) -> torch.Tensor:
    r, c = np.mgrid[0:size, 0:size] - size // 2
    bright = {
        "E": c > 0, "W": c < 0, "N": r < 0, "S": r > 0,
        "NE": (c - r) > 0, "NW": (-c - r) > 0, "SW": (r - c) > 0, "SE": (c + r) > 0,
    }[direction]
    return torch.from_numpy(np.where(bright, 200, 20).astype(np.uint8))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_ldp_strongest_direction_points_to_the_bright_side(direction):
    code = ldp(_edge_image(direction), k=1)[0, 0]
    centre = int(code[7, 7])
    assert centre == 1 << DIRECTIONS.index(direction)


def test_ldp_k3_codes_are_the_56_valid_codes():
    codes = ldp(torch.randint(0, 256, (4, 32, 32), dtype=torch.uint8))
    valid = set(ldp_code_space(3).codes)
    assert len(valid) == 56
    assert set(codes.unique().tolist()) <= valid
    assert all(bin(c).count("1") == 3 for c in valid)


@pytest.mark.parametrize("k", range(1, 8))
def test_ldp_sets_exactly_k_bits_even_on_flat_images(k):
    flat = torch.full((1, 9, 9), 77, dtype=torch.uint8)
    for image in (flat, torch.randint(0, 4, (1, 9, 9), dtype=torch.uint8)):
        codes = ldp(image, k=k).flatten().tolist()
        assert all(bin(c).count("1") == k for c in codes)


# ---- compiled kernels and the compile policy -------------------------------------------------

def test_compiled_kernels_are_bit_exact():
    images = _images(5, shape=(2, 24, 28), seed=5)
    x = torch.from_numpy(images)
    assert np.array_equal(lbp(x, 8, 1, "uniform", compile=True)[:, 0].numpy(),
                          _reference(images, 8, 1, "uniform"))
    assert torch.equal(ldp(x, compile=True), ldp(x, compile=False))


def test_auto_mode_compiles_only_after_enough_eager_time(monkeypatch):
    compiled_calls = []
    monkeypatch.setattr(_accel.torch, "compile", lambda fn, **kw: (compiled_calls.append(1), fn)[1])
    runner = _accel.KernelRunner("test", compile_after=0.05)
    cpu = torch.device("cpu")
    slow = lambda: __import__("time").sleep(0.03) or 1  # noqa: E731
    for _ in range(2):  # 0.06 s of eager time: under the bar at the first call, over it after
        runner("k", lambda: (lambda: 2), (), slow, "auto", cpu)
    assert not compiled_calls
    assert runner("k", lambda: (lambda: 2), (), slow, "auto", cpu) == 2
    assert compiled_calls == [1] and runner.is_compiled("k")
    assert runner("other", lambda: (lambda: 2), (), lambda: 1, False, cpu) == 1
    assert runner("gpu", lambda: (lambda: 2), (), lambda: 1, "auto", torch.device("meta")) == 1


def test_failed_compile_falls_back_to_eager(monkeypatch):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(_accel.torch, "compile", lambda fn, **kw: broken)
    runner = _accel.KernelRunner("test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = runner("k", lambda: broken, (), lambda: "eager", True, torch.device("cpu"))
    assert out == "eager" and any("staying eager" in str(w.message) for w in caught)
    assert runner("k", lambda: broken, (), lambda: "eager", True, torch.device("cpu")) == "eager"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu():
    x = torch.randint(0, 6, (4, 3, 40, 48), dtype=torch.uint8)
    for method in ("uniform", "default"):
        assert torch.equal(lbp(x.cuda(), method=method).cpu(), lbp(x, method=method))
    assert torch.equal(ldp(x.cuda()).cpu(), ldp(x))


# ---- reconstruction targets ------------------------------------------------------------------

def test_code_spaces():
    assert lbp_code_space(8, "uniform").num_codes == 10
    assert lbp_code_space(8, "nri_uniform").num_codes == 59
    assert lbp_code_space(8, "default").num_codes == 256
    assert lbp_code_space(8, "ror").num_codes == 36  # rotation-invariant binary patterns of 8 bits
    with pytest.raises(InputError, match="var"):
        lbp_code_space(8, "var")


def test_every_computed_code_lies_in_its_space():
    x = torch.randint(0, 256, (2, 40, 40), dtype=torch.uint8)
    for P, method in itertools.product((4, 8), ("default", "ror", "uniform", "nri_uniform")):
        codes = set(lbp(x, P, 1.0, method).unique().tolist())
        assert codes <= set(lbp_code_space(P, method).codes)


def test_patchify_order_and_inverse():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    patches = patchify(x, 4)
    assert patches.shape == (2, 6, 48)
    # patch 4 = patch row 1, patch column 1; inside: pixel (0, 0) then channels
    assert patches[1, 4, :3].tolist() == x[1, :, 4, 4].tolist()
    assert patches[1, 4, 3:6].tolist() == x[1, :, 4, 5].tolist()
    assert torch.equal(unpatchify(patches, 4, 8, 12), x)
    with pytest.raises(InputError, match="divisible"):
        patchify(x, 5)


@pytest.mark.parametrize("descriptor", ["lbp", "ldp"])
def test_target_encodings(descriptor):
    x = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8)
    if descriptor == "lbp":
        codes, space = lbp(x, method="uniform"), lbp_code_space(8, "uniform")
    else:
        codes, space = ldp(x), ldp_code_space(3)
    scaled = encode_targets(codes, space, "scaled", 8)
    index = encode_targets(codes, space, "index", 8)
    hist = encode_targets(codes, space, "histogram", 8)
    assert scaled.shape == (2, 6, 64) and scaled.dtype == torch.float32
    assert 0 <= float(scaled.min()) and float(scaled.max()) <= 1
    assert index.shape == (2, 6, 64) and index.dtype == torch.int64
    assert 0 <= int(index.min()) and int(index.max()) < space.num_codes
    assert hist.shape == (2, 6, space.num_codes)
    assert torch.allclose(hist.sum(-1), torch.ones(2, 6))
    # the histogram counts what the index map holds, patch by patch
    manual = torch.stack([torch.bincount(index[1, 3], minlength=space.num_codes)]).float() / 64
    assert torch.allclose(hist[1, 3], manual[0])
    # index and scaled encode the same codes
    assert torch.equal(torch.tensor(space.codes)[index], (scaled * space.max_code).round().long())


def test_target_errors():
    space = ldp_code_space(3)
    with pytest.raises(InputError, match="encoding"):
        encode_targets(torch.zeros(1, 1, 8, 8, dtype=torch.int32), space, "onehot", 4)
    with pytest.raises(InputError, match="not valid"):
        code_index(torch.ones(1, 1, 8, 8, dtype=torch.int32), space)  # popcount 1: not a k=3 code
    assert float(scaled_map(torch.full((1, 1, 2, 2), space.max_code), space).max()) == 1.0
