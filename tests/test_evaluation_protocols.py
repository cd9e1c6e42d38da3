"""``atrous validate|test`` with the papers' test-time strategies: the same predictions as
``atrous predict``, the same numbers with 2 DDP processes as with 1, the four Cityscapes scores
equal to cityscapesScripts', labels at their original resolution, the Tables 4/6 sweep, and
clear errors for bad strategies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures_data import write_cityscapes
from PIL import Image

import atrous
from atrous.cli import main
from atrous.data.cityscapes import LABELID_TO_TRAINID
from atrous.data.palettes import CITYSCAPES_CLASSES
from atrous.errors import ConfigError
from atrous.evaluation.choices import TTA_PRESETS
from atrous.evaluation.strategy import strategy_from_config
from atrous.models import build_model

# void, road, sidewalk, building, vegetation, sky and five classes with instances
GT_LABEL_IDS = np.array([0, 7, 8, 11, 21, 23, 24, 25, 26, 28, 33], np.uint8)
SIZE = (32, 64)


def instance_ids(label_ids: np.ndarray) -> np.ndarray:
    """gtFine-style instance ids with instances of several sizes: in even 8-row bands every 4
    columns start a new instance, in odd bands every 16 (cut where the class changes)."""
    rows, cols = np.indices(label_ids.shape)
    band = rows // 8
    number = band * 20 + np.where(band % 2 == 0, cols // 4, cols // 16)
    things = np.isin(label_ids, [24, 25, 26, 28, 33])
    return np.where(things, label_ids.astype(np.uint16) * 1000 + number, label_ids).astype(np.uint16)


def spread_predictions(model: torch.nn.Module) -> None:
    """Re-centre and re-scale a random model's classifier so that it predicts several classes."""
    with torch.no_grad():
        logits = model(torch.rand(4, 3, *SIZE) * 4 - 2)
        model.classifier.weight /= logits.std((0, 2, 3)).view(-1, 1, 1, 1)
        model.classifier.bias -= model(torch.rand(4, 3, *SIZE) * 4 - 2).mean((0, 2, 3))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """Three Cityscapes val frames (an uneven split for 2 processes), a random tiny model
    (resnet18 at output stride 16 + a small DenseASPP) saved as a checkpoint, its config."""
    root = tmp_path_factory.mktemp("protocols")
    data = write_cityscapes(root / "cityscapes", cities=("aachen", "bochum", "bremen"), per_city=1,
                            splits=("val",), size=SIZE)
    rng = np.random.default_rng(3)
    for label in sorted((data / "gtFine" / "val").rglob("*_gtFine_labelIds.png")):
        label_ids = np.kron(rng.choice(GT_LABEL_IDS, size=(4, 8)), np.ones((8, 8), np.uint8))
        Image.fromarray(label_ids).save(label)
        Image.fromarray(instance_ids(label_ids)).save(label.with_name(label.name.replace("labelIds", "instanceIds")))
    cfg = {
        "model": {
            "num_classes": 19,
            "backbone": {"name": "resnet18", "output_stride": 16, "pretrained": False},
            "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8},
        },
        "data": {
            "dataset": {"name": "cityscapes", "root": str(data)},
            "val": {"split": "val"},
            "val_batch_size": 1,
            "num_workers": 0,
        },
        "train": {"output_dir": str(root / "run"), "progress_bar": False, "accelerator": "cpu"},
    }
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    spread_predictions(model)
    checkpoint = root / "tiny.ckpt"  # the layout `atrous fit` writes (Lightning)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"config": cfg, "class_names": list(CITYSCAPES_CLASSES), "ignore_index": 255}},
               checkpoint)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return {"root": root, "data": data, "checkpoint": checkpoint, "config": config, "cfg": cfg}


def validate(setup: dict, output: Path, *args: str) -> dict:
    assert main(["validate", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
                 "--output", str(output), *args]) == 0
    return json.loads((output / "metrics.json").read_text())


def scored_predictions(setup: dict, output: Path, *args: str) -> tuple[float, int]:
    """mIoU of ``atrous predict`` label maps against the train-id ground truth, computed here
    with numpy (confusion matrix; classes with an empty union left out of the mean)."""
    images = setup["data"] / "leftImg8bit" / "val"
    assert main(["predict", str(images), "--checkpoint", str(setup["checkpoint"]), "--output", str(output),
                 "--no-progress", "--device", "cpu", "--precision", "fp32", *args]) == 0
    confusion = np.zeros((19, 19), np.int64)
    for image in sorted(images.rglob("*_leftImg8bit.png")):
        stem = image.name.removesuffix("_leftImg8bit.png")
        predicted = np.array(Image.open(output / image.parent.name / f"{stem}_leftImg8bit_labels.png"))
        label = setup["data"] / "gtFine" / "val" / image.parent.name / f"{stem}_gtFine_labelIds.png"
        truth = LABELID_TO_TRAINID["19"][np.array(Image.open(label))]
        valid = truth != 255
        confusion += np.bincount(truth[valid] * 19 + predicted[valid], minlength=361).reshape(19, 19)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0])), int(confusion.sum())


@pytest.mark.parametrize(("options", "scales"), [
    (["--tta", "deeplabv3"], TTA_PRESETS["deeplabv3"]["scales"]),
    # a window on every scale: two scales keep the window count small (one shrinks, one enlarges)
    (["--scales", "0.5", "1.25", "--flip", "--window", "16", "32"], (0.5, 1.25)),
    (["--tta", "deeplabv3", "--output-stride", "8"], TTA_PRESETS["deeplabv3"]["scales"]),
])
def test_validate_equals_scored_predict_outputs(setup, tmp_path, options, scales):
    ours = validate(setup, tmp_path / "validate", *options)
    miou, pixels = scored_predictions(setup, tmp_path / "predict", *options)
    assert ours["num_pixels"] == pixels
    assert ours["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert ours["evaluation"]["scales"] == list(scales) and ours["evaluation"]["flip"]
    if options == ["--tta", "deeplabv3"]:
        plain = validate(setup, tmp_path / "plain")
        assert plain["evaluation"]["tta"] == "none" and plain["mIoU"] != ours["mIoU"]  # the strategy mattered


def test_cityscapes_scores_equal_cityscapesscripts(setup, tmp_path):
    ours = validate(setup, tmp_path / "validate", "--tta", "deeplabv3")["cityscapes"]
    images = setup["data"] / "leftImg8bit" / "val"
    submission = tmp_path / "submission"
    assert main(["predict", str(images), "--checkpoint", str(setup["checkpoint"]), "--output", str(submission),
                 "--no-progress", "--device", "cpu", "--precision", "fp32", "--tta", "deeplabv3", "--cityscapes-submission"]) == 0
    official_json = tmp_path / "official.json"
    assert main(["evaluate-cityscapes", str(submission), "--gt", str(setup["data"]), "--output", str(official_json)]) == 0
    official = json.loads(official_json.read_text())
    for key in ("IoU_class", "iIoU_class", "IoU_category", "iIoU_category"):
        assert ours[key] == pytest.approx(official[key], abs=1e-12), key
    for section in ("per_class_iou", "per_class_iiou", "per_category_iou", "per_category_iiou"):
        assert list(ours[section]) == list(official[section]), section
        for name, score in official[section].items():
            mine = ours[section][name]
            assert (mine is None and score is None) or mine == pytest.approx(score, abs=1e-12), (section, name)
    # the fixture has several instance sizes, so instance weighting moved iIoU away from IoU
    weighted = [(official["per_class_iiou"][n], official["per_class_iou"][n]) for n in official["per_class_iiou"]]
    assert any(i is not None and u is not None and i > 0 and abs(i - u) > 1e-6 for i, u in weighted)


@pytest.mark.slow
def test_two_processes_equal_one_with_tta(setup, tmp_path):
    exe = Path(sys.executable).with_name("atrous")
    source = str(Path(atrous.__file__).resolve().parents[1])  # this atrous, also from another cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    common = ["validate", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
              "--tta", "deeplabv3", "--window", "16", "32"]
    done = subprocess.run([str(exe), *common, "--output", str(tmp_path / "two"), "train.devices=2",
                           "train.strategy=ddp"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one = validate(setup, tmp_path / "one", "--tta", "deeplabv3", "--window", "16", "32")
    labels = sorted((setup["data"] / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    labelled = sum(int((LABELID_TO_TRAINID["19"][np.array(Image.open(p))] != 255).sum()) for p in labels)
    assert one["num_pixels"] == two["num_pixels"] == labelled  # every image once: no padded duplicates
    assert one["mIoU"] == two["mIoU"] and one["per_class_iou"] == two["per_class_iou"]
    for key in ("IoU_class", "IoU_category"):
        assert one["cityscapes"][key] == two["cityscapes"][key]
    for key in ("iIoU_class", "iIoU_category"):  # float sums, added in another order
        assert one["cityscapes"][key] == pytest.approx(two["cityscapes"][key], abs=1e-12)


def test_labels_original_resolution_by_default_resized_on_request(setup, tmp_path):
    resize = "data.val.transforms.resize=[16, 32]"
    original = validate(setup, tmp_path / "original", resize)
    resized = validate(setup, tmp_path / "resized", resize, "--labels", "resized")
    labelled = original["num_pixels"]
    assert labelled == validate(setup, tmp_path / "full")["num_pixels"]  # the label maps as on disk
    assert resized["num_pixels"] < labelled / 2  # a quarter of the pixels, void resized with them
    assert original["evaluation"]["labels"] == "original" and resized["evaluation"]["labels"] == "resized"

    # independently: the model on 16x32 images, logits resized bilinearly to 32x64, vs the labels
    from atrous.data.transforms import NORMALIZATIONS
    from atrous.models.checkpoint import load_segmentor

    model, _ = load_segmentor(setup["checkpoint"])
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS["imagenet"])
    confusion = torch.zeros(19, 19, dtype=torch.int64)
    for image in sorted((setup["data"] / "leftImg8bit" / "val").rglob("*.png")):
        x = torch.from_numpy(np.array(Image.open(image))).permute(2, 0, 1).float()[None]
        x = torch.nn.functional.interpolate(x, size=(16, 32), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            logits = model((x.round().clamp(0, 255) / 255 - mean) / std)
        predicted = torch.nn.functional.interpolate(logits, size=SIZE, mode="bilinear", align_corners=False).argmax(1)[0]
        label = setup["data"] / "gtFine" / "val" / image.parent.name / image.name.replace("leftImg8bit", "gtFine_labelIds")
        truth = torch.from_numpy(LABELID_TO_TRAINID["19"][np.array(Image.open(label))])
        valid = truth != 255
        confusion += torch.bincount(truth[valid] * 19 + predicted[valid], minlength=361).reshape(19, 19)
    assert int(confusion.sum()) == labelled
    tp = confusion.diag().double()
    union = confusion.sum(0) + confusion.sum(1) - tp
    assert original["mIoU"] == pytest.approx(float((tp[union > 0] / union[union > 0]).mean()), abs=1e-6)


def test_sweep_writes_tables_4_and_6(setup, tmp_path):
    out = tmp_path / "sweep"
    assert main(["validate", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
                 "--output", str(out), "--sweep", "--scales", "1", "1.25"]) == 0
    table = (out / "sweep.md").read_text().splitlines()
    assert table[0] == "| OS=16 | OS=8 | MS | Flip | mIOU |" and len(table) == 2 + 6
    result = json.loads((out / "sweep.json").read_text())
    rows = [(r["output_stride"], r["multi_scale"], r["flip"]) for r in result["rows"]]
    assert rows == [(16, False, False), (16, True, False), (16, True, True), (8, False, False), (8, True, False), (8, True, True)]
    single_16 = validate(setup, tmp_path / "single")
    assert result["rows"][0]["mIoU"] == single_16["mIoU"]  # the same code path as validate
    ms_flip_8 = validate(setup, tmp_path / "msflip", "--output-stride", "8", "--scales", "1", "1.25", "--flip")
    assert result["rows"][5]["mIoU"] == ms_flip_8["mIoU"]
    assert f"{100 * ms_flip_8['mIoU']:.2f} |" in table[-1]


@pytest.mark.parametrize(("section", "message"), [
    ({"tta": "bogus"}, "presets: ['none', 'deeplabv3', 'denseaspp-official']"),
    ({"scales": [0.5, -1]}, "evaluate.scales"),
    ({"window": [16]}, "evaluate.window"),
    ({"overlap": 1.5}, "evaluate.overlap"),
    ({"output_stride": 7}, "evaluate.output_stride"),
    ({"labels": "small"}, "evaluate.labels: one of ['original', 'resized']"),
    ({"flips": True}, "unknown key(s) ['flips']"),
])
def test_bad_evaluate_sections_are_clear_config_errors(section, message):
    with pytest.raises(ConfigError, match=None) as info:
        strategy_from_config(section)
    assert message in str(info.value)


def test_bad_strategies_on_the_command_line(setup, tmp_path, capsys):
    assert main(["validate", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
                 "--output", str(tmp_path / "a"), "--tta", "ms"]) == 2
    assert "--tta ms: unknown preset; presets: ['none', 'deeplabv3', 'denseaspp-official']" in capsys.readouterr().err
    # 0.25 takes the 32x64 images to 8x16, below the output stride 16
    assert main(["validate", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
                 "--output", str(tmp_path / "b"), "--scales", "0.25", "1"]) == 2
    err = capsys.readouterr().err
    assert "image of 32x64 pixels (at scale 0.25: 8x16) is smaller than the model's output stride 16" in err
    assert "use scales of at least 0.5" in err
    assert not (tmp_path / "b" / "metrics.json").exists()
    # a window larger than the image is padded, not refused
    assert validate(setup, tmp_path / "c", "--window", "48", "96")["num_pixels"] > 0


def test_shipped_paper_configs_say_how_they_evaluate():
    from atrous.config import load_config

    for name in ("deeplabv3/aspp_resnet101_os8", "deeplabv3/aspp_resnet50_os8"):
        strategy = strategy_from_config(load_config(name)["evaluate"])
        assert strategy.output_stride == 8 and strategy.flip and strategy.scales == TTA_PRESETS["deeplabv3"]["scales"]
    for name in ("denseaspp121_cityscapes", "denseaspp161_cityscapes", "denseaspp169_cityscapes", "denseaspp201_cityscapes"):
        strategy = strategy_from_config(load_config(f"denseaspp/{name}")["evaluate"])
        assert strategy.is_plain and strategy.labels == "original"
