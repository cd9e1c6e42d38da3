"""Score a Cityscapes submission with cityscapesScripts' own pixel-level evaluation.

``atrous evaluate-cityscapes RESULTS --gt ROOT`` runs
``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling`` — the code of the benchmark
server — on a folder of label-id PNGs (``atrous predict --cityscapes-submission`` writes them)
against ``ROOT/gtFine/<split>/<city>/*_gtFine_labelIds.png`` and reports the four scores of the
benchmark (Cordts et al., "The Cityscapes Dataset", CVPR 2016, Sec. 3.2): IoU and iIoU over the
19 classes and over the 7 categories, with the per-class and per-category scores. cityscapesScripts
comes with the ``cityscapes`` extra (``pip install "atrous[cityscapes]"``).

Three things stand between a user and the script's ``main()``, and this module handles them
without touching the installed package:

* numpy 2.4 removed ``np.in1d``, which the script calls for the instance-weighted scores (iIoU):
  :func:`numpy_with_in1d` lends the script, and only the script, an ``in1d`` for the duration of
  the call (see there why this and not another workaround);
* the script finds its folders through environment variables and writes a JSON file next to the
  dataset: here every option is set on a private copy of its ``args`` object, nothing is written
  unless ``--output`` asks, and nothing is printed but atrous' own table;
* the script reports a missing or unreadable file with ``sys.exit(-1)``: here the files are
  checked first, and each problem is an :class:`~atrous.errors.InputError` naming the file and
  the fix.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import io
import math
import os
import types
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.cityscapes_labels import CATEGORIES, LABELS
from ..errors import InputError, require_extra
from ..io import atomic_write, check_output, json_text

LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"
MAX_LABEL_ID = 33  # the largest id of the label table (license plate's -1 aside)
SUMMARY_KEYS = {  # our key → the key of cityscapesScripts' result dict
    "IoU_class": "averageScoreClasses",
    "iIoU_class": "averageScoreInstClasses",
    "IoU_category": "averageScoreCategories",
    "iIoU_category": "averageScoreInstCategories",
}
SUBMISSION_HINT = "write label-id PNGs with `atrous predict --cityscapes-submission`"


def _evaluation_module() -> types.ModuleType:
    """cityscapesScripts' evaluator, imported on first use (it reads environment variables)."""
    try:
        return require_extra("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling", "cityscapes",
                             "atrous evaluate-cityscapes")
    except ValueError as err:  # raised at import when CITYSCAPES_EXPORT_DIR is not a folder
        raise InputError(f"cityscapesScripts cannot start: {err}; unset CITYSCAPES_EXPORT_DIR or make it a folder") from err


class _NumpyWithIn1d(types.ModuleType):
    """numpy, plus the ``in1d`` that numpy 2.4 removed (everything else is numpy's own)."""

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def in1d(ar1: Any, ar2: Any, assume_unique: bool = False, invert: bool = False, *, kind: str | None = None) -> np.ndarray:
        """numpy's documented replacement: ``in1d(a, b) == isin(a, b).ravel()``."""
        return np.isin(ar1, ar2, assume_unique=assume_unique, invert=invert, kind=kind).ravel()


@contextlib.contextmanager
def numpy_with_in1d(module: types.ModuleType) -> Iterator[None]:
    """While the block runs, ``module.np`` also has ``in1d`` if the installed numpy lacks it.

    Why a shim and not the other ways out: the script calls ``np.in1d`` only for the
    instance-level scores (iIoU class, iIoU category) and for per-image pixel accuracy; turning
    those off (``args.evalInstLevelScore = False``) avoids the call but loses half of the
    benchmark's four numbers, and copying the script's instance code would no longer be the
    official evaluation. So the script runs unchanged and sees an ``np`` with ``in1d`` =
    ``isin(...).ravel()``, which numpy documents as the equivalent. Only the script's own
    module-level name ``np`` is swapped — the numpy module itself is never modified, so no
    other code (not even during the call) sees an ``in1d`` — and it is put back afterwards,
    also on errors. With a numpy that still has ``in1d`` nothing is swapped.
    """
    if hasattr(np, "in1d") or module.np is not np:
        yield
        return
    module.np = _NumpyWithIn1d()
    try:
        yield
    finally:
        module.np = np


def ground_truth_files(root: str | Path, split: str = "val") -> list[Path]:
    """The ``*_gtFine_labelIds.png`` files of ``root/gtFine/<split>/<city>/``, sorted, each with
    its ``_gtFine_instanceIds.png`` (the iIoU scores need it)."""
    root = Path(root)
    folder = root / "gtFine" / split
    if not folder.is_dir():
        hint = " (pass the folder above gtFine/)" if root.name == "gtFine" or (root / split).is_dir() else ""
        raise InputError(
            f"{folder} not found: --gt must be the Cityscapes root holding gtFine/{split}/<city>/{hint}"
        )
    files = sorted(folder.glob(f"*/*{LABEL_IDS_SUFFIX}"))
    if not files:
        raise InputError(
            f"no <city>/*{LABEL_IDS_SUFFIX} in {folder}: unpack gtFine_trainvaltest.zip there "
            "(the label-id maps, not only the _color or _labelTrainIds ones)"
        )
    for label_ids in files:
        instances = label_ids.with_name(label_ids.name.replace(LABEL_IDS_SUFFIX, INSTANCE_IDS_SUFFIX))
        if not instances.is_file():
            raise InputError(
                f"{instances} not found: the iIoU scores need gtFine's instance maps beside the "
                "label-id maps; unpack all of gtFine_trainvaltest.zip"
            )
    return files


def match_predictions(results: str | Path, ground_truth: list[Path]) -> list[Path]:
    """The prediction of each ground-truth file, found as cityscapesScripts' ``getPrediction``
    finds it: the one PNG anywhere under ``results`` named ``<city>_<seq>_<frame>*.png``."""
    results = Path(results)
    if not results.is_dir():
        raise InputError(f"results folder {results} not found: pass the folder {SUBMISSION_HINT} wrote")
    walk = [(Path(folder), names) for folder, _, names in os.walk(results)]
    found = []
    for label_ids in ground_truth:
        core = label_ids.name[: -len(LABEL_IDS_SUFFIX)]
        pattern = f"{core}*.png"
        matches = [folder / name for folder, names in walk for name in fnmatch.filter(names, pattern)]
        if not matches:
            raise InputError(
                f"no prediction for {label_ids.name} in {results}: expected a file {pattern} "
                f"({SUBMISSION_HINT} on leftImg8bit/{label_ids.parent.parent.name})"
            )
        if len(matches) > 1:
            names = ", ".join(str(m.relative_to(results)) for m in sorted(matches))
            raise InputError(
                f"several predictions for {label_ids.name} in {results} ({names}): keep one "
                f"label-id PNG per image ({SUBMISSION_HINT}, no _color or _overlay files)"
            )
        found.append(matches[0])
    return found


def check_prediction(prediction: Path, label_ids: Path) -> np.ndarray:
    """A prediction the script can score: a one-channel PNG of label ids, as large as its
    ground truth ``label_ids``. Returns the values it holds (sorted, unique)."""
    try:
        with Image.open(prediction) as image:
            values = np.array(image)
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"{prediction}: cannot decode ({err}); {SUBMISSION_HINT}") from err
    if values.ndim != 2:
        raise InputError(f"{prediction} has {values.shape[-1]} channels, not one label id per pixel; {SUBMISSION_HINT}")
    with Image.open(label_ids) as truth:
        width, height = truth.size
    if values.shape != (height, width):
        raise InputError(
            f"{prediction} is {values.shape[1]}x{values.shape[0]} but {label_ids.name} is {width}x{height}: "
            "predict at full resolution"
        )
    if values.min() < 0 or values.max() > MAX_LABEL_ID:
        raise InputError(
            f"{prediction} holds value {int(values.max())}, not a Cityscapes label id (0…{MAX_LABEL_ID}); "
            f"train ids or 255 must be mapped to label ids: {SUBMISSION_HINT}"
        )
    unscored = float(np.isin(values, unscored_label_ids()).mean())
    if unscored > 0.5:
        raise InputError(
            f"{prediction}: {unscored:.0%} of its pixels hold label ids the benchmark never scores (0-6, 9, 10, ...): "
            f"these look like train ids (0-18; road is 0), which must be mapped to label ids: {SUBMISSION_HINT}"
        )
    return np.unique(values)


MAX_TRAIN_ID = 18


def check_label_ids(results: Path, values: np.ndarray, count: int) -> None:
    """Refuse a folder of train-id maps, told apart from label-id maps by the values of all its
    predictions together (``values``): only values 0-18, the train ids, among them label ids that a
    model's label-id prediction never holds (1-6, 9, 10, ...: classes the benchmark does not score,
    which are train ids of sidewalk, building, sky, ...), and none of the label ids above 18 that
    a label-id prediction of street scenes holds (vegetation 21, sky 23, person 24, car 26, ...).
    Unlabeled (0) is no evidence: a submission writes it for the report's "background" class."""
    unscored = np.setdiff1d(unscored_label_ids(), [0])
    if values.max(initial=0) > MAX_TRAIN_ID or not np.isin(values, unscored).any():
        return
    shown = ", ".join(str(v) for v in values[np.isin(values, unscored)][:6])
    raise InputError(
        f"{results}: the {count} prediction(s) hold train ids, not label ids: only values 0-{MAX_TRAIN_ID}, among them "
        f"{shown} (classes the benchmark never scores), and no label id above {MAX_TRAIN_ID} (vegetation 21, sky 23, "
        f"car 26, ...); {SUBMISSION_HINT}"
    )


def unscored_label_ids() -> np.ndarray:
    """Label ids of the classes the benchmark ignores (unlabeled, ego vehicle, ..., parking,
    rail track): a model's label-id submission holds none of them, a train-id map mostly does."""
    return np.array([label.id for label in LABELS if label.ignore_in_eval and 0 <= label.id <= MAX_LABEL_ID])


def _scores(result: Mapping[str, Any], keys: list[str], section: str) -> dict[str, float]:
    return {name: float(result[section][name]) for name in keys}


def evaluate_cityscapes(results: str | Path, root: str | Path, split: str = "val") -> dict[str, Any]:
    """cityscapesScripts' pixel-level evaluation of the label-id PNGs under ``results`` against
    ``root/gtFine/<split>``. Returns the four benchmark scores (``IoU_class``, ``iIoU_class``,
    ``IoU_category``, ``iIoU_category``, fractions in [0, 1]) and the per-class and per-category
    scores; NaN marks a class or category with no pixel in the ground truth and none predicted
    on labelled pixels (the script leaves it out of the means)."""
    evaluation = _evaluation_module()  # first: without the extra, nothing else needs checking
    ground_truth = ground_truth_files(root, split)
    predictions = match_predictions(results, ground_truth)
    values = [check_prediction(prediction, label_ids) for prediction, label_ids in zip(predictions, ground_truth, strict=True)]
    check_label_ids(Path(results), np.unique(np.concatenate(values)), len(predictions))

    args = copy.copy(evaluation.args)  # a private copy: the module's global stays as it was
    args.predictionPath, args.predictionWalk = str(results), None
    args.evalInstLevelScore = True  # iIoU (reads the _instanceIds.png beside each label map)
    args.evalPixelAccuracy = False  # its per-image counts are not part of the benchmark
    args.JSONOutput = False  # the script would write into the dataset folder; --output does it here
    args.quiet, args.colorized, args.bold, args.nocol = True, False, "", ""
    printed = io.StringIO()
    try:
        with numpy_with_in1d(evaluation), contextlib.redirect_stdout(printed):
            result = evaluation.evaluateImgLists([str(p) for p in predictions], [str(p) for p in ground_truth], args)
    except SystemExit as stop:  # the script's printError: one "ERROR: ..." line, then exit
        message = printed.getvalue().strip().splitlines()[-1:] or [f"exit status {stop.code}"]
        raise InputError(f"cityscapesScripts stopped: {message[0]}") from None

    instance_stats = evaluation.generateInstanceStats(args)
    classes = [label.name for label in LABELS if label.id >= 0 and not label.ignore_in_eval]
    categories = [c for c, members in CATEGORIES.items() if not all(m.ignore_in_eval for m in members)]
    scores: dict[str, Any] = {key: float(result[source]) for key, source in SUMMARY_KEYS.items()}
    scores["per_class_iou"] = _scores(result, classes, "classScores")
    scores["per_class_iiou"] = _scores(result, list(instance_stats["classes"]), "classInstScores")
    scores["per_category_iou"] = _scores(result, categories, "categoryScores")
    scores["per_category_iiou"] = _scores(result, list(instance_stats["categories"]), "categoryInstScores")
    scores["images"] = len(predictions)
    scores["split"] = split
    scores["evaluator"] = f"cityscapesScripts {version('cityscapesScripts')} evalPixelLevelSemanticLabeling"
    return scores


def format_scores(scores: Mapping[str, Any]) -> str:
    """Per-class IoU and iIoU, per-category IoU and iIoU, then the four benchmark scores."""

    def percent(value: float | None) -> str:
        return "    n/a" if value is None or math.isnan(value) else f"{100 * value:6.2f}%"

    lines = []
    for kind, iou, iiou in (("class", "per_class_iou", "per_class_iiou"), ("category", "per_category_iou", "per_category_iiou")):
        lines += [f"{kind:<16} {'IoU':>7} {'iIoU':>7}", "-" * 32]
        for name, value in scores[iou].items():
            instance_weighted = percent(scores[iiou][name]) if name in scores[iiou] else ""  # iIoU: things only
            lines.append(f"{name:<16} {percent(value):>7} {instance_weighted:>7}")
        lines.append("-" * 32)
    lines += [f"{key.replace('_', ' '):<16} {percent(scores[key]):>7}" for key in SUMMARY_KEYS]
    return "\n".join(lines)


def write_scores(path: str | Path, scores: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``scores`` as JSON atomically; an existing file is refused unless ``overwrite``, which
    moves it aside into ``replaced-<time>/`` (:func:`atrous.io.atomic_write`)."""
    text = json_text(dict(scores))
    return atomic_write(check_scores_output(path, overwrite=overwrite), lambda tmp: tmp.write_text(text),
                        overwrite=overwrite, keep_replaced=True)


def check_scores_output(path: str | Path, *, overwrite: bool = False) -> Path:
    """``--output``: a file name (not a folder), not existing unless ``overwrite``; checked before scoring."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--output {path} is a folder; name a file, e.g. {path / 'cityscapes_metrics.json'}")
    return check_output(path, overwrite=overwrite)
