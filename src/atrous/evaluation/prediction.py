"""``atrous predict``: segment image files, folders and videos with a trained checkpoint.

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
``evalPixelLevelSemanticLabeling`` expect (train ids → label ids; the seed's 20th class
"background" → 0, "unlabeled").

Images are predicted at full resolution, normalised as the model was trained (the config's
``data.{val,test,train}.transforms.normalize``, ImageNet statistics by default). Inputs are never
overwritten: an output folder equal to or inside an input folder, or an output file that is an
input, is refused; every file is written atomically. Unreadable images and videos are skipped
with a warning naming the file; :func:`predict_inputs` returns them (the CLI exits with 1).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from ..config import ConfigError
from ..data.base import ClassInfo, DatasetError
from ..data.build import dataset_class
from ..data.cityscapes import CLASSES_19, CLASSES_20, trainid_to_labelid
from ..data.folder import CLASSES_FILES, generated_palette, read_classes_file
from ..data.io import read_image
from ..data.palettes import colorize, overlay
from ..data.transforms import transforms_from_config
from ..io import atomic_write
from ..models.checkpoint import load_segmentor
from ..models.segmentor import Segmentor
from .inference import output_stride, predict_probabilities
from .video import VideoWriter, read_video

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
# cityscapesScripts matches a prediction to <city>_<seq>_<frame>_gtFine_labelIds.png by the
# file-name pattern "<city>_<seq>_<frame>*.png" (evalPixelLevelSemanticLabeling.getPrediction).
CITYSCAPES_NAME = re.compile(r"^(?P<core>[^_]+_\d{6}_\d{6})(_|$)")


@dataclass(frozen=True)
class Source:
    """One input file and the output sub-path (no suffix) its results are named after."""

    path: Path
    relative: Path
    is_video: bool


@dataclass
class PredictResult:
    """Files written and inputs skipped (path, reason)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


# -- inputs and outputs -----------------------------------------------------------------------

def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[Source]:
    """Image and video files of ``inputs`` (files, or folders searched recursively, sorted),
    each with its path relative to the inputs' common folder (without suffix)."""
    if not inputs:
        raise ValueError("no inputs: pass image files, folders or videos")
    paths = [Path(os.path.abspath(p)) for p in inputs]
    for path in paths:
        if not path.exists():
            raise ValueError(f"{path}: input not found")
    common = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in paths]))
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_media(p))
            if not found:
                raise ValueError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) or videos ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
            files += found
        else:
            files.append(path)
    sources, seen = [], {}
    for file in dict.fromkeys(files):  # the same file twice is predicted once
        relative = file.relative_to(common).with_suffix("")
        if relative in seen:
            raise ValueError(f"{seen[relative]} and {file} would write the same outputs ({relative}_*); rename one")
        seen[relative] = file
        sources.append(Source(file, relative, file.suffix.lower() in VIDEO_EXTENSIONS))
    return sources


def _is_media(path: Path) -> bool:
    suffix = path.suffix.lower()
    return path.is_file() and not path.name.startswith(".") and suffix in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS


def check_output_folder(output: Path, inputs: Sequence[str | os.PathLike], sources: Sequence[Source]) -> set[Path]:
    """Refuse an output folder equal to or inside an input folder; return the resolved input
    files (which no output may replace)."""
    out = output.resolve()
    for path in map(Path, inputs):
        folder = path.resolve()
        if path.is_dir() and (out == folder or folder in out.parents):
            raise ValueError(
                f"output folder {output} is inside the input folder {path}; choose an output folder "
                f"outside the inputs (predictions are never written next to the images)"
            )
    return {s.path.resolve() for s in sources}


def output_names(name: Path, *, probabilities: bool = False, submission: bool = False) -> dict[str, Path]:
    """Output paths (relative to the output folder) of the image whose results are named ``name``."""
    if submission:
        match = CITYSCAPES_NAME.match(name.name)
        if match is None:
            raise ValueError(
                f"{name.name}: --cityscapes-submission needs Cityscapes file names "
                "<city>_<seq>_<frame>_leftImg8bit.png (the evaluator matches <city>_<seq>_<frame>)"
            )
        names = {"submission": name.with_name(f"{match['core']}_leftImg8bit.png")}
    else:
        names = {kind: Path(f"{name}_{kind}.png") for kind in ("labels", "color", "overlay")}
    if probabilities:
        names["probs"] = Path(f"{name}_probs.npz")
    return names


def check_outputs(sources: Sequence[Source], output: Path, protected: set[Path], **naming: bool) -> None:
    """Fail before predicting anything if an image's output would replace an input (or, for a
    submission, a name or a video does not fit)."""
    for source in sources:
        if source.is_video:
            if naming.get("submission"):
                raise ValueError(f"{source.path}: --cityscapes-submission takes images, not videos")
            continue
        for relative in output_names(source.relative, **naming).values():
            if (output / relative).resolve() in protected:
                raise ValueError(f"refusing to overwrite the input {output / relative}; choose another output folder")


class Writer:
    """Writes output files atomically, refusing to replace any input file."""

    def __init__(self, output: Path, protected: set[Path]) -> None:
        self.output, self.protected = output, protected
        self.written: list[Path] = []

    def write(self, relative: Path | str, write: Callable[[Path], None]) -> Path:
        path = self.output / relative
        if path.resolve() in self.protected:
            raise ValueError(f"refusing to overwrite the input {path}; choose another output folder")
        atomic_write(path, write)
        self.written.append(path)
        return path

    def png(self, relative: Path | str, array: np.ndarray) -> Path:
        return self.write(relative, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


# -- model, normalisation, classes ------------------------------------------------------------

def normalization(cfg: Mapping[str, Any]) -> Any:
    """The ``normalize`` option the model was evaluated (else trained) with; ``"imagenet"`` if none."""
    data = cfg.get("data") or {}
    for split in ("val", "test", "train"):
        transforms = (data.get(split) or {}).get("transforms") or {}
        if "normalize" in transforms:
            return transforms["normalize"]
    return "imagenet"


def evaluation_resize(cfg: Mapping[str, Any]) -> tuple[int, int] | None:
    """The fixed size the config evaluates at (``data.val.transforms.resize``, seed: 512×1024), if any."""
    resize = (((cfg.get("data") or {}).get("val") or {}).get("transforms") or {}).get("resize")
    return tuple(resize) if resize else None


def class_info(cfg: Mapping[str, Any], num_classes: int) -> ClassInfo:
    """The label space of the config's dataset (names, palette) when it has ``num_classes``
    classes; otherwise the checkpoint's class names with generated colours."""
    dataset = dict((cfg.get("data") or {}).get("dataset") or {"name": "synthetic"})
    info = _dataset_classes(dataset)
    names = cfg.get("class_names")
    if info is not None and info.num_classes == num_classes and (not names or tuple(names) == info.names):
        return info
    if not names or len(names) != num_classes:
        names = [f"class {i}" for i in range(num_classes)]
    return ClassInfo(tuple(names), generated_palette(num_classes))


def _dataset_classes(dataset: Mapping[str, Any]) -> ClassInfo | None:
    name = dataset.get("name", "synthetic")
    if name == "cityscapes":
        return CLASSES_19 if str(dataset.get("variant", "19")) == "19" else CLASSES_20
    if name == "folder":  # the classes file, when it is where the config says
        root = Path(dataset.get("root", "."))
        candidates = [Path(dataset["classes_file"])] if dataset.get("classes_file") else [root / f for f in CLASSES_FILES]
        for path in candidates:
            if path.is_file():
                try:
                    return read_classes_file(path).classes
                except DatasetError:
                    return None
        return None
    try:
        return getattr(dataset_class(name), "classes", None)
    except ConfigError:
        return None


def cityscapes_lut(classes: ClassInfo) -> np.ndarray:
    """Train id → Cityscapes label id, uint8 ``(K,)``: 19 classes, or 20 with "background" → 0."""
    if classes.names == CLASSES_19.names:
        return trainid_to_labelid
    if classes.names == CLASSES_20.names:
        return np.concatenate([trainid_to_labelid, np.zeros(1, np.uint8)])
    raise ValueError(
        f"--cityscapes-submission needs a model of the 19 Cityscapes classes (or the seed's 20), "
        f"this one predicts {list(classes.names)[:5]}..."
    )


# -- prediction -------------------------------------------------------------------------------

@dataclass
class Predictor:
    """Image ``(H, W, 3)`` uint8 → probabilities ``(C, H, W)`` float32 on the CPU."""

    model: Segmentor
    normalize: Any = "imagenet"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    options: dict[str, Any] = field(default_factory=dict)  # predict_probabilities' keywords

    def __post_init__(self) -> None:
        # The evaluation transform without resizing: the same arithmetic as `atrous validate`.
        self.transform = transforms_from_config({"normalize": self.normalize}, train=False, ignore_index=255)
        self.model.to(self.device)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        x = self.transform(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)))
        probs = predict_probabilities(self.model, x.unsqueeze(0).to(self.device), **self.options)
        return probs[0].cpu()


def write_outputs(
    writer: Writer,
    name: Path,
    image: np.ndarray,
    probs: torch.Tensor,
    classes: ClassInfo,
    *,
    probabilities: bool = False,
    submission_lut: np.ndarray | None = None,
) -> np.ndarray:
    """Write the files of one image (see the module docstring); returns the labels ``(H, W)``."""
    labels = probs.argmax(0).numpy()
    names = output_names(name, probabilities=probabilities, submission=submission_lut is not None)
    if submission_lut is not None:
        writer.png(names["submission"], submission_lut[labels])
    else:
        writer.png(names["labels"], labels.astype(np.uint8 if classes.num_classes <= 256 else np.uint16))
        writer.png(names["color"], colorize(labels, classes.palette))
        writer.png(names["overlay"], overlay(image, labels, classes.palette))
    if probabilities:
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
    progress: bool = True,
) -> PredictResult:
    """Predict every image and video of ``inputs`` into ``output``. Unreadable files are skipped
    with a warning and listed in the result."""
    from tqdm import tqdm

    output = Path(output)
    sources = collect_inputs(inputs)
    protected = check_output_folder(output, inputs, sources)
    check_outputs(sources, output, protected, probabilities=probabilities, submission=cityscapes_submission)
    lut = cityscapes_lut(classes) if cityscapes_submission else None
    writer = Writer(output, protected)
    result = PredictResult(written=writer.written)
    options = {"probabilities": probabilities, "submission_lut": lut}
    for source in tqdm(sources, desc="predict", unit="file", disable=not progress, file=sys.stderr):
        try:
            if source.is_video:
                _predict_video(predictor, source, writer, classes, options, overlay_video)
            else:
                image = read_image(source.path).permute(1, 2, 0).numpy()
                write_outputs(writer, source.relative, image, predictor(image), classes, **options)
        except DatasetError as err:
            tqdm.write(f"atrous predict: skipping {source.path}: {err}", file=sys.stderr)
            result.failed.append((source.path, str(err)))
    return result


def _predict_video(
    predictor: Predictor, source: Source, writer: Writer, classes: ClassInfo, options: dict[str, Any], overlay_video: bool
) -> None:
    frames, rate = read_video(source.path)

    def run(video: VideoWriter | None) -> None:
        for index, frame in enumerate(frames):
            labels = write_outputs(writer, source.relative / f"frame_{index:06d}", frame, predictor(frame), classes, **options)
            if video is not None:
                video.write(overlay(frame, labels, classes.palette))

    if not overlay_video:
        run(None)
        return

    def encode(tmp: Path) -> None:
        video = VideoWriter(tmp, rate)
        try:
            run(video)
        finally:
            video.close()

    writer.write(source.relative.with_name(f"{source.relative.name}_overlay.mp4"), encode)


def run_predict(
    *,
    checkpoint: str,
    inputs: Sequence[str],
    output: str,
    config: str | None = None,
    overrides: Sequence[str] = (),
    tta: Mapping[str, Any] | None = None,
    window: tuple[int, int] | None = None,
    overlap: float = 1 / 3,
    stride: int | None = None,
    probabilities: bool = False,
    cityscapes_submission: bool = False,
    overlay_video: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> PredictResult:
    """What ``atrous predict`` does: load, predict, write (``tta``: scales/flip/average options)."""
    model, cfg = load_segmentor(checkpoint, config, overrides)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = {**(tta or {}), "window": window, "overlap": overlap}
    predictor = Predictor(model, normalization(cfg), torch.device(device), options)
    classes = class_info(cfg, model.num_classes)
    if evaluation_resize(cfg):
        h, w = evaluation_resize(cfg)
        print(f"atrous predict: note: the config evaluates images resized to {h}x{w}; predict runs at each "
              f"image's own resolution (--scales 0.5 runs 1024x2048 frames at 512x1024)", file=sys.stderr)
    with output_stride(model, stride):
        return predict_inputs(
            predictor, inputs, output, classes, probabilities=probabilities,
            cityscapes_submission=cityscapes_submission, overlay_video=overlay_video, progress=progress,
        )
