"""``atrous evaluate-cityscapes``: cityscapesScripts' own scores on a hand-computed example, with
a numpy that lacks ``in1d``; and each unusable input is one clear error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import write_cityscapes
from PIL import Image

from atrous.cli import main

STEM = "aachen_000000_000019"
VOID, ROAD, CAR = 0, 7, 26  # Cityscapes label ids
CAR_AVERAGE_SIZE = 12794.0202738185  # the benchmark's mean car instance size in pixels (avgClassSize)


def write_pair(root: Path, truth: np.ndarray, instances: np.ndarray, prediction: np.ndarray) -> tuple[Path, Path]:
    """A one-image Cityscapes root (``gtFine/val/aachen``) and a results folder."""
    gt = root / "cityscapes" / "gtFine" / "val" / "aachen"
    gt.mkdir(parents=True)
    Image.fromarray(truth.astype(np.uint8)).save(gt / f"{STEM}_gtFine_labelIds.png")
    Image.fromarray(instances.astype(np.uint16)).save(gt / f"{STEM}_gtFine_instanceIds.png")
    results = root / "results" / "aachen"
    results.mkdir(parents=True)
    Image.fromarray(prediction.astype(np.uint8)).save(results / f"{STEM}_leftImg8bit.png")
    return root / "results", root / "cityscapes"


def example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8×8: two void rows, road, one 16-pixel car; the prediction finds 12 car pixels, calls 4
    road pixels car and paints the void rows car (void is ignored: no false positive)."""
    truth = np.full((8, 8), ROAD)
    truth[:2] = VOID
    truth[4:, :4] = CAR
    instances = np.where(truth == CAR, CAR * 1000 + 1, truth)  # one car instance; stuff keeps its id
    prediction = np.full((8, 8), ROAD)
    prediction[:2] = CAR
    prediction[4:7, :4] = CAR
    prediction[2, 4:] = CAR
    return truth, instances, prediction


def test_scores_equal_the_benchmark_definitions_and_nothing_leaks(tmp_path, capsys):
    results, root = write_pair(tmp_path, *example())
    before = sorted(tmp_path.rglob("*"))
    output = tmp_path / "scores.json"
    assert main(["evaluate-cityscapes", str(results), "--gt", str(root), "--output", str(output)]) == 0
    assert not hasattr(np, "in1d")  # numpy 2.4 has none; the shim for cityscapesScripts did not leak
    assert sorted(tmp_path.rglob("*")) == sorted([*before, output])  # no JSON beside the data
    scores = json.loads(output.read_text())

    # Cordts et al. 2016, Sec. 3.2: IoU = TP / (TP + FP + FN) over non-void pixels; iIoU weighs
    # TP and FN of each instance by (average class instance size / its size), FP unweighted.
    road, car = 28 / (28 + 4 + 4), 12 / (12 + 4 + 4)
    weight = CAR_AVERAGE_SIZE / 16
    car_instance = 12 * weight / (12 * weight + 4 * weight + 4)
    assert scores["per_class_iou"]["road"] == pytest.approx(road, abs=1e-12)
    assert scores["per_class_iou"]["car"] == pytest.approx(car, abs=1e-12)
    assert scores["per_class_iou"]["sky"] is None  # absent and never predicted: out of the mean
    assert scores["IoU_class"] == pytest.approx((road + car) / 2, abs=1e-12)
    assert scores["per_class_iiou"]["car"] == pytest.approx(car_instance, abs=1e-12)
    assert scores["iIoU_class"] == pytest.approx(car_instance, abs=1e-12)
    # categories: road is "flat", car is "vehicle", with the same pixel counts here
    assert scores["per_category_iou"]["flat"] == pytest.approx(road, abs=1e-12)
    assert scores["IoU_category"] == pytest.approx((road + car) / 2, abs=1e-12)
    assert scores["iIoU_category"] == pytest.approx(car_instance, abs=1e-12)
    assert list(scores["per_category_iiou"]) == ["human", "vehicle"] and scores["images"] == 1

    table = capsys.readouterr().out
    assert f"IoU class        {100 * (road + car) / 2:6.2f}%" in table
    assert f"car              {100 * car:6.2f}% {100 * car_instance:6.2f}%" in table


def test_an_existing_output_is_refused_and_moved_aside_with_overwrite(tmp_path, capsys):
    results, root = write_pair(tmp_path, *example())
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    assert main(["evaluate-cityscapes", str(results), "--gt", str(root), "--output", str(notes)]) == 2
    assert f"--output {notes} already exists; pass --overwrite to move it aside" in capsys.readouterr().err
    assert notes.read_text() == '{"mine": true}'
    assert main(["evaluate-cityscapes", str(results), "--gt", str(root), "--output", str(notes), "--overwrite"]) == 0
    assert json.loads(notes.read_text())["images"] == 1
    (aside,) = tmp_path.glob("replaced-*")
    assert (aside / "notes.json").read_text() == '{"mine": true}'


def _missing_prediction(results: Path, root: Path) -> None:
    (results / "aachen" / f"{STEM}_leftImg8bit.png").rename(results / "aachen" / "aachen_1_2.png")


def _colour_beside(results: Path, root: Path) -> None:
    Image.new("RGB", (8, 8)).save(results / "aachen" / f"{STEM}_color.png")


def _missing_instances(results: Path, root: Path) -> None:
    (root / "gtFine" / "val" / "aachen" / f"{STEM}_gtFine_instanceIds.png").unlink()


def _rgb(results: Path, root: Path) -> None:
    Image.new("RGB", (8, 8)).save(results / "aachen" / f"{STEM}_leftImg8bit.png")


def _half_size(results: Path, root: Path) -> None:
    Image.new("L", (4, 4)).save(results / "aachen" / f"{STEM}_leftImg8bit.png")


def _train_ids(results: Path, root: Path) -> None:
    Image.new("L", (8, 8), 255).save(results / "aachen" / f"{STEM}_leftImg8bit.png")


def _train_id_map(results: Path, root: Path) -> None:
    """Train ids (road 0, car 13) instead of label ids (7, 26)."""
    prediction = np.where(example()[0] == CAR, 13, 0).astype(np.uint8)  # a perfect answer, in train ids
    Image.fromarray(prediction).save(results / "aachen" / f"{STEM}_leftImg8bit.png")


def _train_ids_of_a_street(results: Path, root: Path) -> None:
    """Train ids of a street scene: building 2, vegetation 8, sky 10, car 13. Fewer than half of
    its pixels hold ids the benchmark never scores (2, 10), so no single image gives it away; the
    folder does: only values 0-18, some of them ids no label-id prediction holds, and none of the
    label ids above 18 (vegetation 21, sky 23, car 26) that every street scene has."""
    prediction = np.repeat(np.array([2, 2, 8, 8, 13, 13, 13, 10], np.uint8), 8).reshape(8, 8).T
    Image.fromarray(prediction).save(results / "aachen" / f"{STEM}_leftImg8bit.png")


@pytest.mark.parametrize(
    ("break_input", "gt_folder", "expected"),
    [
        (_missing_prediction, "", f"no prediction for {STEM}_gtFine_labelIds.png"),
        (_colour_beside, "", "several predictions"),
        (_missing_instances, "", f"{STEM}_gtFine_instanceIds.png not found"),
        (_rgb, "", f"{STEM}_leftImg8bit.png has 3 channels"),
        (_half_size, "", f"{STEM}_leftImg8bit.png is 4x4 but {STEM}_gtFine_labelIds.png is 8x8"),
        (_train_ids, "", "holds value 255, not a Cityscapes label id"),
        (_train_id_map, "", "look like train ids"),
        (_train_ids_of_a_street, "", "hold train ids, not label ids"),
        (None, "gtFine", "pass the folder above gtFine/"),
    ],
)
def test_unusable_inputs_are_errors_naming_the_file(tmp_path, capsys, break_input, gt_folder, expected):
    results, root = write_pair(tmp_path, *example())
    if break_input is not None:
        break_input(results, root)
    assert main(["evaluate-cityscapes", str(results), "--gt", str(root / gt_folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("atrous: error: ") and expected in err and err.count("\n") == 1
    assert not hasattr(np, "in1d")


def test_the_fixture_dataset_is_scored_as_a_whole(tmp_path, capsys):
    """Every image of the true-layout fixture (all 34 label ids, gtFine instance maps) scored
    against itself: the official evaluator then gives 1 for all four scores."""
    root = write_cityscapes(tmp_path / "cityscapes", splits=("val",), size=(16, 32))
    for label_ids in (root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"):
        copy = tmp_path / "results" / label_ids.name.replace("_gtFine_labelIds", "_leftImg8bit")
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(label_ids.read_bytes())
    assert main(["evaluate-cityscapes", str(tmp_path / "results"), "--gt", str(root),
                 "--output", str(tmp_path / "scores.json")]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert [scores[k] for k in ("IoU_class", "iIoU_class", "IoU_category", "iIoU_category")] == [1.0] * 4
    assert scores["images"] == 4 and len(scores["per_class_iou"]) == 19
