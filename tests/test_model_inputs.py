"""Inputs a model cannot take: smaller than its output stride, or not ``(N, 3, H, W)``."""

from __future__ import annotations

import re

import pytest
import torch
from helpers_models import small_model_cfg

from atrous import build_model
from atrous.models import Segmentor


@pytest.fixture(scope="module")
def os8_model() -> Segmentor:
    return build_model(small_model_cfg()).eval()


def test_input_smaller_than_output_stride(os8_model):
    assert os8_model.output_stride == 8
    with pytest.raises(ValueError, match=r"image of 4x4 pixels is smaller than the model's output stride 8; pad or resize it to at least 8x8"):
        os8_model(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"output stride 8"):
        os8_model(torch.zeros(1, 3, 64, 7))
    with torch.no_grad():  # exactly the stride is fine
        assert os8_model(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (3, 32, 32), (1, 4, 32, 32)])
def test_wrong_input_layout(os8_model, shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got " + re.escape(str(shape))):
        os8_model(torch.zeros(shape))
