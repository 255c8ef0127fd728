"""`lssat texture`: writes its picture; user mistakes give one line and exit status 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lssat.cli import main


def test_default_run_writes_a_picture_of_the_astronaut(tmp_path, capsys):
    out = tmp_path / "sub" / "tex.png"
    assert main(["texture", "-o", str(out)]) == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape[1] > picture.shape[0] > 300  # input beside two code maps, plus histograms
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_any_image_mode_is_read(tmp_path, mode):
    src = tmp_path / f"img_{mode.replace(';', '')}.png"
    arr = np.random.default_rng(0).integers(0, 255, (40, 50, 3)).astype(np.uint8)
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode != "I;16" else Image.fromarray((arr[..., 0].astype(np.uint16) * 257))
    img.save(src)
    out = tmp_path / "t.png"
    assert main(["texture", str(src), "--descriptor", "lbp", "--P", "12", "--R", "1.5", "-o", str(out)]) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["missing.jpg"], "no such file"),
        (["corrupt.jpg"], "cannot read as an image"),
        (["--k", "9"], "k (number of strongest directions)"),
        (["--P", "0"], "P (number of neighbours)"),
        (["--method", "sideways"], "method must be one of"),
        (["skimage:nothing_here"], "no such image"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["texture", *argv, "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
