"""The model behind ``atrous serve``: a checkpoint in any engine, images of one size in a batch →
label maps, and what the API answers with them (label PNG, colour overlay, per-class areas).

Prediction is :class:`atrous.evaluation.predict_app.Predictor`'s, the arithmetic of ``atrous
predict``: full resolution, the normalisation the model was trained with, one forward pass.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from PIL import Image

from ..data.base import ClassInfo
from ..data.palettes import colorize, overlay
from ..data.spec import DataSpec
from ..devices import resolve_device
from ..engines import EngineOptions, build_engine
from ..evaluation.predict_app import Predictor, class_info
from ..models.checkpoint import ConfigSource, load_segmentor
from ..models.segmentor import Segmentor

Format = Literal["json", "labels", "overlay", "color"]  # what POST /segment answers with
FORMATS: tuple[str, ...] = get_args(Format)


@dataclass
class Segmenter:
    """Images → label maps ``(H, W)`` (uint8; uint16 beyond 256 classes) with the model's classes."""

    predictor: Predictor
    classes: ClassInfo
    name: str  # what is served, for /health: the checkpoint and the engine

    def labels(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Images of one size ``(H, W, 3)`` uint8 → one label map ``(H, W)`` each, in one model call."""
        with torch.inference_mode():
            labels = self.predictor.batch(images).argmax(1).numpy()
        return list(labels.astype(np.uint8 if self.classes.num_classes <= 256 else np.uint16))

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`~atrous.errors.InputError` for an image the model cannot take."""
        self.predictor.check_size(height, width)

    def legend(self) -> list[dict[str, Any]]:
        """Every class: ``{"id", "name", "color": [r, g, b]}``."""
        return [{"id": i, "name": name, "color": [int(c) for c in self.classes.palette[i]]}
                for i, name in enumerate(self.classes.names)]

    def areas(self, labels: np.ndarray) -> list[dict[str, Any]]:
        """The classes present in ``labels``, largest first: id, name, colour, ``pixels`` and
        ``share`` (of the image's pixels)."""
        counts = np.bincount(labels.ravel(), minlength=self.classes.num_classes)
        legend = self.legend()
        order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], i))
        return [{**legend[i], "pixels": int(counts[i]), "share": float(counts[i] / labels.size)} for i in order]

    def answer(self, kind: str, image: np.ndarray, labels: np.ndarray, *, with_labels: bool = False) -> bytes | dict[str, Any]:
        """The response body for ``kind`` (one of :data:`FORMATS`): PNG bytes, or the JSON of the
        areas (with the label PNG in base64 as ``labels_png`` if ``with_labels``)."""
        if kind == "labels":
            return png(labels)
        if kind == "overlay":
            return png(overlay(image, labels, self.classes.palette))
        if kind == "color":
            return png(colorize(labels, self.classes.palette))
        body: dict[str, Any] = {"height": int(labels.shape[0]), "width": int(labels.shape[1]), "classes": self.areas(labels)}
        if with_labels:
            body["labels_png"] = base64.b64encode(png(labels)).decode("ascii")
        return body


def png(array: np.ndarray) -> bytes:
    """An ``(H, W)`` or ``(H, W, 3)`` array as PNG bytes (grey values kept exactly)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def load_segmenter(checkpoint: str, *, config: ConfigSource = None, overrides: Sequence[str] = (),
                   engine: EngineOptions | None = None, device: str = "auto") -> Segmenter:
    """Load ``checkpoint`` (any atrous checkpoint, or a converted published one) into the engine
    ``engine`` asks for (default: PyTorch) on ``device``."""
    model, cfg = load_segmentor(checkpoint, config, overrides)
    return segmenter_of(model, cfg, Path(checkpoint).name, engine=engine, device=device)  # no server paths in /health


def segmenter_of(model: Segmentor, cfg: Mapping[str, Any], name: str, *, engine: EngineOptions | None = None,
                 device: str = "auto") -> Segmenter:
    """A :class:`Segmenter` of ``model`` built from ``cfg`` (its normalisation and classes), run
    by ``engine`` on ``device``; ``name`` says what it is in ``/health``."""
    device = resolve_device(device)
    options = engine or EngineOptions()
    model = build_engine(model, replace(options, output_stride=None), device)
    normalize = DataSpec.from_mapping(cfg.get("data")).evaluation_transforms()["normalize"]
    predictor = Predictor(model, normalize, torch.device(device))
    return Segmenter(predictor, class_info(cfg, model.num_classes), f"{name} ({model.options.describe()}, {device})")
