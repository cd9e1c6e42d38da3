"""The predict application (``atrous predict``): segment image files, folders and videos with a
trained checkpoint. :class:`Predictor` (an image → class probabilities) is also what ``atrous
serve`` and ``atrous quantize`` predict and normalise with.

For every image, under the output folder (mirroring the inputs' sub-paths below their common
folder, so equal file names in different folders do not collide)::

    <name>_color.png     class colours (the dataset's palette)
    <name>_overlay.png   the colours blended over the image
    <name>_labels.png    train ids, uint8 (uint16 beyond 256 classes)
    <name>_probs.npz     with ``probabilities=True``: ``probabilities`` float16 (C, H, W), ``class_names``

A video ``<name>.mp4`` (.avi, .mov, .mkv; decoded with PyAV) gives a folder ``<name>/`` with
those files per frame (``frame_000000_color.png``, ...) and, with ``overlay_video=True``,
``<name>_overlay.mp4``. With ``cityscapes_submission=True`` only label-id PNGs are written,
``<city>_<seq>_<frame>_leftImg8bit.png``, as the Cityscapes benchmark and cityscapesScripts'
``evalPixelLevelSemanticLabeling`` expect (train ids → label ids; the report's 20th class
"background" → 0, "unlabeled").

Images are read as displayed (EXIF orientation applied, 16-bit scaled to 8-bit; see
:mod:`atrous.data.image_files`) and predicted at full resolution, normalised as the model was trained
(the config's ``data.{val,test,train}.transforms.normalize``, ImageNet statistics by default).

No file the command did not write is replaced: an output folder equal to or inside an input
folder, and an output that is an input, are refused; outputs that already exist are refused
before anything is predicted, so a refused run writes nothing, unless ``overwrite=True``, which
moves them aside into ``<output>/replaced-<UTC time>/`` first (never deletes them). Every
file is written atomically. Unreadable images and videos, images too small for the output stride
and images over the pixel limit are skipped with a warning naming the file; the rest is
predicted and :func:`predict_inputs` returns the skipped ones (the CLI exits with 1). A video
that ends before the frame count its container declares (a truncated or partly corrupt file) is
predicted as far as it decodes, with a warning saying how many frames were read of how many, and
listed as incomplete (the CLI exits with 1 too); one of which no frame decodes is skipped. Input
discovery, output names and these checks live in :mod:`atrous.evaluation.prediction_files`.

Many machines split one job with ``shard=(K, N)`` (every N-th input by name); with
``skip_existing`` (implied by ``--shard``) a re-run skips inputs whose outputs all exist and
finishes those a stopped run left half-written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from ..data.base import ClassInfo, DatasetError
from ..data.cityscapes import CLASSES_19, CLASSES_20, trainid_to_labelid
from ..data.folder import generated_palette
from ..data.image_files import pixel_limit, read_image_array
from ..data.label_space import config_classes
from ..data.palettes import colorize, overlay
from ..data.spec import DataSpec
from ..data.transforms import transforms_from_config
from ..devices import resolve_device
from ..engines import Engine, EngineOptions, build_engine
from ..errors import InputError
from ..io import move_aside, output_folder
from ..models.checkpoint import ConfigSource, load_segmentor
from ..models.segmentor import Segmentor, check_image_size
from .inference import check_strategy, eval_mode, predict_probabilities
from .prediction_files import (  # noqa: F401  (collect_inputs, output_names, ...: part of this module's API)
    CITYSCAPES_NAME,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Source,
    Writer,
    check_output_folder,
    check_outputs,
    collect_inputs,
    output_names,
    planned_outputs,
    shard_of,
)
from .strategy import EvaluationStrategy
from .video import VideoWriter, read_video, require_av
from .windows import window_labels


@dataclass
class PredictResult:
    """Files written and inputs skipped (path, reason)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    complete: list[Path] = field(default_factory=list)  # inputs skipped: their outputs were all there
    incomplete: list[tuple[Path, str]] = field(default_factory=list)  # videos that ended early (path, how)
    engine: str = ""  # what ran the model (EngineOptions.describe)


# -- model, normalisation, classes ------------------------------------------------------------

def class_info(cfg: Mapping[str, Any], num_classes: int) -> ClassInfo:
    """The label space of the config's dataset (names, palette) when it has ``num_classes``
    classes; otherwise the checkpoint's class names with generated colours."""
    info = config_classes(cfg)
    names = cfg.get("class_names")
    if info is not None and info.num_classes == num_classes and (not names or tuple(names) == info.names):
        return info
    if not names or len(names) != num_classes:
        names = [f"class {i}" for i in range(num_classes)]
    return ClassInfo(tuple(names), generated_palette(num_classes))


def cityscapes_lut(classes: ClassInfo) -> np.ndarray:
    """Train id → Cityscapes label id, uint8 ``(K,)``: 19 classes, or 20 with "background" → 0."""
    if classes.names == CLASSES_19.names:
        return trainid_to_labelid
    if classes.names == CLASSES_20.names:
        return np.concatenate([trainid_to_labelid, np.zeros(1, np.uint8)])
    raise InputError(
        f"--cityscapes-submission needs a model of the 19 Cityscapes classes (or the report's 20), "
        f"this one predicts {list(classes.names)[:5]}..."
    )


# -- prediction -------------------------------------------------------------------------------

@dataclass
class Predictor:
    """Image ``(H, W, in_channels)`` uint8 → probabilities ``(C, H, W)`` float32 on the CPU."""

    model: Segmentor | Engine  # anything mapping (N, 3, h, w) to logits, with output_stride
    normalize: Any = "imagenet"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    options: dict[str, Any] = field(default_factory=dict)  # predict_probabilities' keywords

    def __post_init__(self) -> None:
        # The evaluation transform without resizing: the same arithmetic as `atrous validate`.
        self.transform = transforms_from_config({"normalize": self.normalize}, train=False, ignore_index=255)
        self.model.to(self.device)

    def check_size(self, height: int, width: int) -> None:
        """Refuse (:class:`InputError`) an image that some scale makes smaller than the model's
        output stride (with a sliding window, small images are padded to the window instead)."""
        if self.options.get("window"):
            return
        scales = self.options.get("scales") or (1.0,)
        if not all(isinstance(s, (int, float)) and s > 0 for s in scales):
            return  # predict_probabilities names the bad option
        check_image_size(height, width, int(getattr(self.model, "output_stride", 1)), scales)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.batch([image])[0]

    def predict(self, image: np.ndarray, *, probabilities: bool = False) -> tuple[np.ndarray, torch.Tensor | None]:
        """Labels ``(H, W)`` of an image ``(H, W, C)`` uint8, and its probabilities ``(C, H, W)``
        when asked for. A sliding window at scale 1 without probabilities streams band by band
        (:func:`atrous.evaluation.windows.window_labels`): memory of the window, not of the image,
        and the same labels."""
        if probabilities or not self.options.get("window") or tuple(self.options.get("scales") or (1.0,)) != (1.0,):
            probs = self(image)
            return probs.argmax(0).numpy(), probs if probabilities else None
        chw = torch.from_numpy(image).permute(2, 0, 1)  # a view: the image is normalised window by window

        def tile(rows: slice, cols: slice, mirrored: bool) -> torch.Tensor:
            width = chw.shape[-1]
            part = chw[:, rows, width - cols.stop:width - cols.start].flip(-1) if mirrored else chw[:, rows, cols]
            return self.transform(tv_tensors.Image(part))[None].to(self.device)

        options = {k: self.options[k] for k in ("window", "overlap", "flip", "average") if k in self.options}
        with eval_mode(self.model), torch.inference_mode():
            labels = window_labels(self.model, tile, image.shape[:2], num_classes=getattr(self.model, "num_classes", None),
                                   **options)
        return labels.numpy(), None

    def batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Images of one size, each ``(H, W, 3)`` uint8 → probabilities ``(N, C, H, W)`` float32
        on the CPU, in one call of the model (``atrous serve`` batches concurrent requests so)."""
        self.check_size(*images[0].shape[:2])
        x = torch.stack([self.transform(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))) for image in images])
        return predict_probabilities(self.model, x.to(self.device), **self.options).cpu()


def display_rgb(image: np.ndarray) -> np.ndarray:
    """An image of the model's channels ``(H, W, C)`` as RGB to show: grey repeated, the first
    three bands of a 4-band image."""
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]


def write_outputs(
    writer: Writer,
    name: Path,
    image: np.ndarray,
    predictor: Predictor,
    classes: ClassInfo,
    *,
    probabilities: bool = False,
    submission_lut: np.ndarray | None = None,
) -> np.ndarray:
    """Predict one image and write its files (see the module docstring); returns the labels ``(H, W)``."""
    labels, probs = predictor.predict(image, probabilities=probabilities)
    names = output_names(name, probabilities=probabilities, submission=submission_lut is not None)
    if submission_lut is not None:
        writer.png(names["submission"], submission_lut[labels])
    else:
        writer.png(names["labels"], labels.astype(np.uint8 if classes.num_classes <= 256 else np.uint16))
        writer.png(names["color"], colorize(labels, classes.palette))
        writer.png(names["overlay"], overlay(display_rgb(image), labels, classes.palette))
    if probabilities:
        assert probs is not None

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, probabilities=probs.numpy().astype(np.float16), class_names=np.array(classes.names))

        writer.write(names["probs"], save)
    return labels


def predict_inputs(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    classes: ClassInfo,
    *,
    probabilities: bool = False,
    cityscapes_submission: bool = False,
    overlay_video: bool = False,
    overwrite: bool = False,
    max_pixels: int | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    skip_existing: bool = False,
) -> PredictResult:
    """Predict every image and video of ``inputs`` into ``output``. Files that cannot be read or
    predicted (undecodable, too small for the output stride, more pixels than ``max_pixels``:
    see :func:`atrous.data.image_files.read_image_array`) are skipped with a warning and listed in the
    result; existing outputs are refused before anything is written unless ``overwrite``, which
    moves them aside into ``replaced-<time>/`` first.

    ``shard=(K, N)``: only shard K of N (:func:`~atrous.evaluation.prediction_files.shard_of`).
    ``skip_existing``: inputs whose outputs all exist are skipped (listed as ``complete``), and
    those with some of them (a run stopped between two files) are predicted again, replacing
    them: a stopped run resumes where it stopped.
    """
    from tqdm import tqdm

    output = Path(output)
    pixel_limit(max_pixels)  # a bad --max-pixels is an error before any input is read
    sources = collect_inputs(inputs)
    if any(source.is_video for source in sources):
        require_av()  # before anything is written
    protected = check_output_folder(output, inputs, sources)  # every input, whichever shard it is in
    if shard is not None:
        sources = shard_of(sources, shard)
    naming = {"overlay_video": overlay_video, "probabilities": probabilities, "submission": cityscapes_submission}
    complete, partial = set(), set()
    if skip_existing and not overwrite:
        for source in sources:
            present = [path.exists() for path in planned_outputs(source, output, **naming)]
            if all(present):
                complete.add(source)
            elif any(present):
                partial.add(source)
    sources = [s for s in sources if s not in complete]
    existing = check_outputs([s for s in sources if s not in partial], output, protected, overwrite=overwrite, **naming)
    check_outputs([s for s in sources if s in partial], output, protected, overwrite=True, **naming)
    lut = cityscapes_lut(classes) if cityscapes_submission else None
    output_folder(output, "--output")
    if existing and (aside := move_aside(existing, output)) is not None:
        print(f"atrous predict: moved {len(existing)} earlier output(s) from {output} to {aside}", file=sys.stderr)
    writer = Writer(output, protected)
    result = PredictResult(written=writer.written, complete=sorted(s.path for s in complete))
    options = {"probabilities": probabilities, "submission_lut": lut}
    for source in tqdm(sources, desc="predict", unit="file", disable=not progress, file=sys.stderr):
        writer.overwrite = source in partial  # finish what a stopped run began
        try:
            if source.is_video:
                shortfall = _predict_video(predictor, source, writer, classes, options, overlay_video)
                if shortfall is not None:
                    tqdm.write(f"atrous predict: warning: {source.path}: {shortfall}", file=sys.stderr)
                    result.incomplete.append((source.path, shortfall))
            else:
                image = read_image_array(source.path, max_pixels, getattr(predictor.model, "in_channels", 3))
                write_outputs(writer, source.relative, image, predictor, classes, **options)
        except (DatasetError, InputError) as err:  # this input only: skip it, predict the rest
            reason = str(err).removeprefix(f"{source.path}: ")
            tqdm.write(f"atrous predict: skipping {source.path}: {reason}", file=sys.stderr)
            result.failed.append((source.path, reason))
    return result


def _predict_video(
    predictor: Predictor, source: Source, writer: Writer, classes: ClassInfo, options: dict[str, Any], overlay_video: bool
) -> str | None:
    """Predict every frame that decodes; returns how the video fell short of its declared frames, if it did."""
    frames, rate = read_video(source.path)

    def run(video: VideoWriter | None) -> None:
        for index, frame in enumerate(frames):
            labels = write_outputs(writer, source.relative / f"frame_{index:06d}", frame, predictor, classes, **options)
            if video is not None:
                video.write(overlay(frame, labels, classes.palette))

    if not overlay_video:
        run(None)
        return frames.shortfall()

    def encode(tmp: Path) -> None:
        video = VideoWriter(tmp, rate)
        try:
            run(video)
        finally:
            video.close()

    writer.write(source.relative.with_name(f"{source.relative.name}_overlay.mp4"), encode)
    return frames.shortfall()


def run_predict(
    *,
    checkpoint: str,
    inputs: Sequence[str],
    output: str,
    config: ConfigSource = None,
    overrides: Sequence[str] = (),
    strategy: EvaluationStrategy | None = None,
    probabilities: bool = False,
    cityscapes_submission: bool = False,
    overlay_video: bool = False,
    overwrite: bool = False,
    max_pixels: int | None = None,
    device: str = "auto",
    engine: EngineOptions | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    skip_existing: bool = False,
) -> PredictResult:
    """What ``atrous predict`` does: load, predict, write. ``strategy``: the test-time strategy
    (:func:`~atrous.evaluation.strategy.strategy_from_options`, as validate and test build it;
    default: one forward pass per image); ``engine``: what runs the model (:mod:`atrous.engines`;
    default: PyTorch), built at the strategy's output stride."""
    model, cfg = load_segmentor(checkpoint, config, overrides)
    device = str(resolve_device(device))
    strategy = strategy or EvaluationStrategy()
    options = strategy.predict_options()
    stride = strategy.output_stride or model.output_stride  # the engine runs at it
    check_strategy(stride, options["scales"], options["window"], options["overlap"],
                   options["average"], options["max_pixels"])  # one error, before any input is read
    model = build_engine(model, replace(engine or EngineOptions(), output_stride=stride), device)
    evaluation = DataSpec.from_mapping(cfg.get("data")).evaluation_transforms()
    predictor = Predictor(model, evaluation["normalize"], torch.device(device), options)
    classes = class_info(cfg, model.num_classes)
    if "resize" in evaluation:
        h, w = evaluation["resize"]
        print(f"atrous predict: note: the config evaluates images resized to {h}x{w}; predict runs at each "
              f"image's own resolution (--scales 0.5 runs 1024x2048 frames at 512x1024)", file=sys.stderr)
    result = predict_inputs(
        predictor, inputs, output, classes, probabilities=probabilities,
        cityscapes_submission=cityscapes_submission, overlay_video=overlay_video, overwrite=overwrite,
        max_pixels=max_pixels, progress=progress, shard=shard, skip_existing=skip_existing,
    )
    result.engine = model.options.describe()
    return result
