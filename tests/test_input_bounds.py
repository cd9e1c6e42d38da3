"""What a test-time strategy may make for the model is bounded (``--max-pixels``,
``evaluate.max_pixels``): a window, or an image scaled up, of more pixels is refused before
anything is allocated, naming the size and the flag; scales that do not enlarge are always allowed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from helpers_predict import predict, random_image, tiny_checkpoint

from atrous.cli import main
from atrous.errors import InputError
from atrous.evaluation.choices import MAX_INPUT_PIXELS
from atrous.evaluation.inference import predict_probabilities
from atrous.evaluation.strategy import strategy_from_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("bounds"))


def test_a_window_over_the_bound_is_refused_before_any_input_is_read(checkpoint, tmp_path, capsys):
    random_image(tmp_path / "in" / "x.png", size=(64, 128))
    start = time.perf_counter()
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--window", "8000", "8000") == 2
    err = capsys.readouterr().err
    assert err == (f"atrous: error: --window 8000 8000 is 64,000,000 pixels per window, more than --max-pixels "
                   f"{MAX_INPUT_PIXELS:,}; use a smaller window (the training crop, e.g. 512 1024) or raise --max-pixels\n")
    assert time.perf_counter() - start < 10 and not (tmp_path / "out").exists()
    assert main(["validate", "--checkpoint", str(checkpoint), "--window", "8000", "8000"]) == 2
    assert "--window 8000 8000 is 64,000,000 pixels" in capsys.readouterr().err
    assert main(["validate", "--checkpoint", str(checkpoint), "--window", "64", "64", "--max-pixels", "4000"]) == 2
    assert "--window 64 64 is 4,096 pixels per window, more than --max-pixels 4,000" in capsys.readouterr().err


def test_a_scale_that_enlarges_an_image_over_the_bound_is_refused_naming_the_image(checkpoint, tmp_path, capsys):
    random_image(tmp_path / "in" / "x.png", size=(64, 128))
    out = tmp_path / "out"
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(out), "--scales", "100") == 1
    err = capsys.readouterr().err
    assert (f"skipping {tmp_path / 'in' / 'x.png'}: --scales 100 makes the 64x128 image 6400x12800 = 81,920,000 "
            f"pixels, more than --max-pixels {MAX_INPUT_PIXELS:,}") in err
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(out), "--scales", "2", "--max-pixels", "20000") == 1
    assert "--scales 2 makes the 64x128 image 128x256 = 32,768 pixels, more than --max-pixels 20,000" in capsys.readouterr().err


def test_the_bound_of_the_api_and_the_config():
    model = torch.nn.Conv2d(3, 2, 1)
    images = torch.zeros(1, 3, 8, 8)
    with pytest.raises(InputError, match=r"--scales 4 makes the 8x8 image 32x32 = 1,024 pixels, more than --max-pixels 1,000"):
        predict_probabilities(model, images, scales=(4.0,), max_pixels=1000)
    assert predict_probabilities(model, images, scales=(4.0,), max_pixels=0).shape == (1, 2, 8, 8)  # 0: no bound
    # scale 1 and shrinking are never refused: the image itself was read within its own limit
    assert predict_probabilities(model, images, scales=(1.0, 0.5), max_pixels=10).shape == (1, 2, 8, 8)
    with pytest.raises(InputError, match="--window 40 40 is 1,600 pixels"):
        strategy_from_config({"window": [40, 40], "max_pixels": 1000})
    with pytest.raises(ValueError, match=r"evaluate.max_pixels: a whole number of pixels"):
        strategy_from_config({"max_pixels": -1})
    assert "max_pixels" not in strategy_from_config({"max_pixels": 10}).to_dict()  # it changes no result
