"""How a split is evaluated: the config's ``evaluate:`` section and ``atrous validate|test`` options.

The strategy names the test-time choices of the papers and the benchmark, one key each::

    evaluate:
      tta: deeplabv3          # a preset of TTA_PRESETS: none | deeplabv3 | denseaspp-official
      scales: [0.5, 1.0, 1.5] # replaces the preset's scales
      flip: true              # replaces the preset's flip
      window: [512, 1024]     # sliding window (the training crop); null: whole images
      overlap: 0.333          # of neighbouring windows
      output_stride: 8        # evaluate re-dilated at this stride (DeepLabv3 Table 4); null: as built
                              # (the engine is built at it: atrous.engines.EngineOptions.output_stride)
      labels: original        # original | resized (see below)
      max_pixels: 33554432    # the largest window or scaled-up image (default: MAX_INPUT_PIXELS); 0: none

``labels``: when ``data.<split>.transforms.resize`` resizes the images, ``original`` (the default)
scores the prediction, resized back to the label map's size, against the label maps as they are
on disk — what the Cityscapes benchmark scores; ``resized`` scores against label maps resized with
the images (nearest neighbour), the DenseASPP report's protocol.

Command-line options override the config key by key (:func:`merge_options`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .choices import AVERAGES, LABELS, TTA_PRESETS
from .inference import check_window_pixels, predict_probabilities

EVALUATE_KEYS = ("tta", "scales", "flip", "window", "overlap", "output_stride", "labels", "average", "max_pixels")


@dataclass(frozen=True)
class EvaluationStrategy:
    """Test-time strategy of one evaluation; :meth:`predict_options` gives
    :func:`~atrous.evaluation.inference.predict_probabilities`' keywords, ``output_stride`` the
    stride the engine that predicts is built at."""

    tta: str = "none"  # the preset the scales and flip came from (recorded in metrics.json)
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    window: tuple[int, int] | None = None
    overlap: float = 1 / 3
    output_stride: int | None = None
    average: str = "probabilities"
    labels: str = "original"
    max_pixels: int | None = None  # a bound on what the strategy makes, not part of it (None: the default)

    @property
    def is_plain(self) -> bool:
        """One forward pass per image at the model's own output stride, as validation during training does."""
        return self.scales == (1.0,) and not self.flip and self.window is None and self.output_stride is None

    def predict_options(self) -> dict[str, Any]:
        return {"scales": self.scales, "flip": self.flip, "window": self.window, "overlap": self.overlap,
                "average": self.average, "max_pixels": self.max_pixels}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``metrics.json``'s ``"evaluation"`` entry."""
        out = asdict(self)
        del out["max_pixels"]  # a memory bound: it changes no result
        out["scales"] = list(self.scales)
        out["window"] = list(self.window) if self.window else None
        return out

    def describe(self) -> str:
        """One line, e.g. ``OS 8, scales 0.5…1.75, flip``."""
        parts = [f"OS {self.output_stride}" if self.output_stride else "OS as built"]
        parts.append("single scale" if self.scales == (1.0,) else "scales " + ",".join(f"{s:g}" for s in self.scales))
        if self.flip:
            parts.append("flip")
        if self.window:
            parts.append(f"window {self.window[0]}x{self.window[1]}")
        return ", ".join(parts)


def strategy_from_config(section: Mapping[str, Any] | None, where: str = "evaluate") -> EvaluationStrategy:
    """Validate an ``evaluate:`` mapping (also the merged command-line options) key by key."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: must be a mapping of {list(EVALUATE_KEYS)}, got {section!r}")
    unknown = sorted(set(section) - set(EVALUATE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {list(EVALUATE_KEYS)}")
    tta = section.get("tta") or "none"
    if tta not in TTA_PRESETS:
        raise ConfigError(f"{where}.tta: unknown preset {tta!r}; presets: {list(TTA_PRESETS)}")
    preset = dict(TTA_PRESETS[tta])
    values: dict[str, Any] = {"tta": tta, "scales": preset["scales"], "flip": preset["flip"],
                              "average": preset.get("average", "probabilities")}
    values.update({k: v for k, v in section.items() if v is not None and k != "tta"})
    strategy = EvaluationStrategy(
        tta=tta,
        scales=_scales(values["scales"], where),
        flip=_boolean(values["flip"], f"{where}.flip"),
        window=_window(values.get("window"), where),
        overlap=_overlap(values.get("overlap", 1 / 3), where),
        output_stride=_stride(values.get("output_stride"), where),
        average=_choice(values["average"], AVERAGES, f"{where}.average"),
        labels=_choice(values.get("labels", "original"), LABELS, f"{where}.labels"),
        max_pixels=_pixels(values.get("max_pixels"), where),
    )
    if strategy.window is not None:
        check_window_pixels(strategy.window, strategy.max_pixels)
    return strategy


def merge_options(section: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``evaluate:`` section with the given command-line options (``None``: not
    given) on top. A new ``tta`` preset drops the section's own ``scales``/``flip``/``average``."""
    merged = dict(section or {})
    given = {k: v for k, v in options.items() if v is not None}
    if "tta" in given:
        for key in ("scales", "flip", "average"):
            merged.pop(key, None)
    merged.update(given)
    return merged


def predict_scores(
    model: nn.Module, images: torch.Tensor, label_size: tuple[int, int], strategy: EvaluationStrategy | None
) -> tuple[torch.Tensor, bool]:
    """The evaluation step's prediction of one batch, shared by ``atrous validate|test`` (the
    Lightning step) and ``atrous analyze stride``.

    Returns ``(scores (N, C, *label_size), are_probabilities)``: logits of one forward pass for
    a plain strategy (``None`` or :attr:`EvaluationStrategy.is_plain`), else the strategy's
    averaged probabilities (:func:`~atrous.evaluation.inference.predict_probabilities`, scale by
    scale, never all scales' logits at once); resized bilinearly to ``label_size`` when the labels
    have another size than the images (original-resolution labels of resized images).

    ``model`` runs at the strategy's output stride: the caller builds the engine at it
    (:func:`atrous.engines.build_engine`, ``EngineOptions(output_stride=...)``).
    """
    align_corners = getattr(model, "align_corners", False)
    stride = getattr(model, "output_stride", 1)
    if strategy is not None and strategy.output_stride not in (None, stride):
        raise ValueError(f"the model runs at output stride {stride}, the strategy at {strategy.output_stride}: "
                         f"build its engine at output stride {strategy.output_stride}")
    if strategy is None or strategy.is_plain:
        scores, probabilities = model(images), False
    else:
        options = strategy.predict_options()
        scores = predict_probabilities(model, images, num_classes=getattr(model, "num_classes", None), **options)
        probabilities = True
    if tuple(scores.shape[-2:]) != tuple(label_size):
        scores = F.interpolate(scores, size=tuple(label_size), mode="bilinear", align_corners=align_corners)
    return scores, probabilities


def _scales(value: Any, where: str) -> tuple[float, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        scales = tuple(float(s) for s in items if not isinstance(s, bool))
    except (TypeError, ValueError):
        scales = ()
    if not scales or len(scales) != len(items) or not all(math.isfinite(s) and s > 0 for s in scales):
        raise ConfigError(f"{where}.scales: scales must be positive numbers, e.g. [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]; "
                          f"got {value!r}")
    return scales


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: true or false, got {value!r}")
    return value


def _window(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(f"{where}.window: [height, width], two positive integers (the training crop); got {value!r}")
    return int(value[0]), int(value[1])


def _overlap(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{where}.overlap: a fraction in [0, 1), e.g. 0.333; got {value!r}")
    return float(value)


def _stride(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 4 or value & (value - 1):
        raise ConfigError(f"{where}.output_stride: a power of two such as 8, 16 or 32 (or null: as built); got {value!r}")
    return value


def _pixels(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}.max_pixels: a whole number of pixels (0: no bound); got {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: one of {list(choices)}, got {value!r}")
    return value


def strategy_from_options(
    section: Mapping[str, Any] | None, options: Mapping[str, Any], where: str | None = None
) -> EvaluationStrategy:
    """The test-time strategy of a command: the config's ``evaluate:`` section (``None`` for a
    command without one, ``atrous predict``) with the command-line ``options`` (``tta``,
    ``scales``, ``flip``, ``window``, ``overlap``, ``output_stride``, ``labels``, ``max_pixels``;
    ``None`` where not given) on top. ``where`` names them in errors (default: ``evaluate``, ``evaluate (with
    the command-line options)`` when any is given)."""
    tta = options.get("tta")
    if tta is not None and tta not in TTA_PRESETS:
        raise ConfigError(f"--tta {tta}: unknown preset; presets: {list(TTA_PRESETS)}")
    window = options.get("window")
    given = {**options, "window": list(window) if window else None}
    scales = options.get("scales")
    given["scales"] = list(scales) if scales else None
    if where is None:
        where = "evaluate (with the command-line options)" if any(v is not None for v in given.values()) else "evaluate"
    return strategy_from_config(merge_options(section, given), where)
