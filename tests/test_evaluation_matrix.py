"""Every test-time strategy inside ``atrous validate|test`` on every dataset kind and mask dtype:
the evaluation step scores what :func:`atrous.evaluation.inference.predict` predicts, its loss is
the negative log-likelihood of the averaged probabilities (float64 here), whatever integer type
the masks have; the command runs with each strategy on synthetic, folder, VOC and Cityscapes data,
and in onnxruntime and OpenVINO on one small case each."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures_data import write_cityscapes, write_voc
from fixtures_user_data import FOLDER_IGNORE_INDEX, write_folder
from helpers_engines import CONFIG as ENGINE_CONFIG
from helpers_engines import save_checkpoint as save_engine_checkpoint
from PIL import Image

from atrous.cli import main
from atrous.data.build import build_dataset
from atrous.evaluation.inference import predict_probabilities
from atrous.evaluation.strategy import EvaluationStrategy, strategy_from_config
from atrous.models import build_model
from atrous.training.module import SegmentationTask

MODEL = {
    "num_classes": 19,
    "backbone": {"name": "resnet18", "output_stride": 16, "num_stages": 3, "pretrained": False},
    "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8},
}
SIZE = (32, 64)

# name → evaluate: section (the config keys behind --tta, --scales, --flip, --window, --output-stride)
STRATEGIES = {
    "plain": {},
    "multi-scale": {"scales": [0.75, 1.0, 1.5]},
    "flip": {"flip": True},
    "window": {"window": [32, 32], "overlap": 0.5},
    "output-stride": {"output_stride": 8},
    "deeplabv3": {"tta": "deeplabv3"},
    "denseaspp-official": {"tta": "denseaspp-official"},
    "all-at-once": {"scales": [1.0, 1.25], "flip": True, "window": [32, 48], "output_stride": 8},
}
MASK_DTYPES = [torch.uint8, torch.int16, torch.int32, torch.int64]


def _task(num_classes: int = 19, ignore_index: int = 255) -> SegmentationTask:
    torch.manual_seed(0)
    config = {"model": {**MODEL, "num_classes": num_classes}, "train": {"progress_bar": False}}
    return SegmentationTask(config, [f"c{i}" for i in range(num_classes)], ignore_index, pretrained_backbone=False).eval()


def _nll64(probabilities: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> float:
    """Mean −log p(true class) over labelled pixels, in float64, by indexing (no nll_loss)."""
    p = probabilities.double().permute(0, 2, 3, 1).reshape(-1, probabilities.shape[1])
    y = labels.reshape(-1).long()
    keep = y != ignore_index
    return float(-p[keep, y[keep]].clamp_min(torch.finfo(torch.float32).tiny).log().mean())


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_the_evaluation_step_takes_every_mask_dtype_with_every_strategy(name):
    task = _task()
    strategy = strategy_from_config(STRATEGIES[name])
    if strategy.output_stride:  # what the runner's engine does: run the model at the strategy's stride
        task.model.set_output_stride(strategy.output_stride)
    task.set_evaluation(strategy)
    images = torch.randn(2, 3, *SIZE)
    labels = torch.randint(0, 19, (2, *SIZE))
    labels[:, :4] = 255  # unlabelled rows
    if strategy.is_plain:
        expected = torch.softmax(task.model(images).detach(), 1)
    else:
        expected = predict_probabilities(task.model, images, num_classes=19, **strategy.predict_options())
    logged: dict[str, float] = {}
    task.log = lambda key, value, **kwargs: logged.__setitem__(key, float(torch.as_tensor(value).detach()))
    for dtype in MASK_DTYPES:
        task.validation_step((images, labels.to(dtype)), 0)
        assert logged["val/loss"] == pytest.approx(_nll64(expected, labels, 255), rel=1e-4), dtype
    confusion = task.val_metrics.compute()
    predicted = expected.argmax(1)
    keep = labels != 255
    assert int(confusion.sum()) == len(MASK_DTYPES) * int(keep.sum())
    assert int(confusion.trace()) == len(MASK_DTYPES) * int((predicted[keep] == labels[keep]).sum())


# -- the command, on every dataset kind ----------------------------------------------------------

# name → command-line options of `atrous validate` (each strategy alone, then the presets)
OPTIONS = {
    "--tta deeplabv3": ["--tta", "deeplabv3"],
    "--tta denseaspp-official": ["--tta", "denseaspp-official"],
    "--scales": ["--scales", "0.75", "1.25"],
    "--flip": ["--flip"],
    "--window": ["--window", "32", "32", "--overlap", "0.5"],
    "--output-stride": ["--output-stride", "8"],
}


def _int64_folder(root: Path) -> Path:
    """A folder dataset whose ignore index (300) does not fit uint8: 16-bit masks, int64 tensors."""
    write_folder(root, n=2, size=SIZE, split="val")
    classes = yaml.safe_load((root / "classes.yaml").read_text())
    (root / "classes.yaml").write_text(yaml.safe_dump({"names": classes["names"], "ignore_index": 300}))
    for mask in (root / "val" / "masks").glob("*.png"):
        values = np.asarray(Image.open(mask)).astype(np.uint16)
        values[values == FOLDER_IGNORE_INDEX] = 300
        Image.fromarray(values).save(mask)  # 'I;16'
    return root


def _dataset_kinds(root: Path) -> dict[str, tuple[dict, int]]:
    """kind → (data section, number of classes); every val split a few 32x64 (or 40x50) images."""
    return {
        "synthetic": ({"dataset": {"name": "synthetic", "image_size": list(SIZE)}, "val": {"split": "val", "length": 2}}, 19),
        "folder": ({"dataset": {"name": "folder", "root": str(write_folder(root / "folder", n=2, size=SIZE, split="val"))},
                    "val": {"split": "val"}}, 4),
        "folder-int64": ({"dataset": {"name": "folder", "root": str(_int64_folder(root / "folder64"))},
                          "val": {"split": "val"}}, 4),
        "voc": ({"dataset": {"name": "voc", "root": str(write_voc(root / "voc", n=4, aug=False))},
                 "val": {"split": "val"}}, 21),
        "cityscapes": ({"dataset": {"name": "cityscapes", "root": str(write_cityscapes(
            root / "cityscapes", cities=("aachen",), per_city=2, splits=("val",), size=SIZE))},
                        "val": {"split": "val"}}, 19),
    }


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, dict]:
    """Per dataset kind: a config file, a random model's checkpoint and the model."""
    root = tmp_path_factory.mktemp("kinds")
    out = {}
    for kind, (data, num_classes) in _dataset_kinds(root).items():
        cfg = {"model": {**MODEL, "num_classes": num_classes},
               "data": {**data, "val_batch_size": 1, "num_workers": 0},
               "train": {"output_dir": str(root / kind / "run"), "progress_bar": False, "accelerator": "cpu"}}
        torch.manual_seed(0)
        model = build_model(cfg, pretrained_backbone=False).eval()
        dataset = build_dataset(cfg["data"]["dataset"], cfg["data"]["val"], train=False)
        checkpoint = root / f"{kind}.ckpt"  # the layout `atrous fit` writes
        torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                    "hyper_parameters": {"config": cfg, "class_names": list(dataset.classes.names),
                                         "ignore_index": dataset.classes.ignore_index}}, checkpoint)
        config = root / f"{kind}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        out[kind] = {"config": config, "checkpoint": checkpoint, "model": model, "dataset": dataset}
    return out


def _independent_miou(model: torch.nn.Module, dataset, strategy: EvaluationStrategy) -> tuple[float, int]:
    """mIoU and labelled pixels of ``strategy``'s predictions, with a numpy confusion matrix."""
    k, ignore = dataset.classes.num_classes, dataset.classes.ignore_index
    if strategy.output_stride:
        model = copy.deepcopy(model)
        model.set_output_stride(strategy.output_stride)
    confusion = np.zeros((k, k), np.int64)
    for i in range(len(dataset)):
        image, mask = dataset[i]
        probabilities = predict_probabilities(model, image[None], num_classes=k, **strategy.predict_options())
        predicted = probabilities.argmax(1)[0].numpy().ravel()
        truth = np.asarray(mask).astype(np.int64).ravel()
        keep = truth != ignore
        np.add.at(confusion, (truth[keep], predicted[keep]), 1)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    iou = np.diag(confusion)[union > 0] / union[union > 0]
    return float(iou.mean()), int(confusion.sum())


KINDS = ["synthetic", "folder", "folder-int64", "voc", "cityscapes"]


def _matrix() -> list:
    """Every (kind, option); the fast tier runs every option on the int64 folder (masks wider
    than uint8, an ignore index of 300) and ``--tta deeplabv3`` on every kind, the slow tier the rest."""
    return [pytest.param(kind, option, id=f"{kind}-{option}",
                         marks=[] if kind == "folder-int64" or option == "--tta deeplabv3" else [pytest.mark.slow])
            for kind in KINDS for option in OPTIONS]


@pytest.mark.parametrize(("kind", "option"), _matrix())
def test_validate_runs_every_strategy_on_every_dataset_kind(kinds, kind, option, tmp_path):
    setup = kinds[kind]
    assert main(["validate", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
                 "--output", str(tmp_path), *OPTIONS[option]]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    strategy = strategy_from_config({k: v for k, v in metrics["evaluation"].items() if k != "window" or v})
    miou, pixels = _independent_miou(setup["model"], setup["dataset"], strategy)
    assert metrics["num_pixels"] == pixels
    assert metrics["mIoU"] == pytest.approx(miou, abs=1e-6)


def test_test_runs_a_strategy_on_a_test_split(kinds, tmp_path):
    setup = kinds["synthetic"]
    assert main(["test", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
                 "--output", str(tmp_path), "--tta", "deeplabv3", "--window", "32", "32", "data.test.length=2"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["evaluation"]["flip"] is True
    assert metrics["num_pixels"] > 0


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_validate_with_a_strategy_in_an_exported_engine_matches_torch(engine, tmp_path):
    """One tiny model, one small case per engine (exporting is slow): multi-scale + flip."""
    checkpoint = save_engine_checkpoint(tmp_path / "tiny.ckpt")
    scores = {}
    for name in ("torch", engine):
        out = tmp_path / name
        assert main(["validate", "--checkpoint", str(checkpoint), "--output", str(out), "--engine", name,
                     "--engine-cache", str(tmp_path / "cache"), "--scales", "0.75", "1", "--flip",
                     "data.val.length=2"]) == 0
        scores[name] = json.loads((out / "metrics.json").read_text())
    assert scores[engine]["engine"]["engine"] == engine
    assert scores[engine]["num_pixels"] == scores["torch"]["num_pixels"] == 2 * 64 * 96
    assert scores[engine]["mIoU"] == pytest.approx(scores["torch"]["mIoU"], abs=2e-3)
    assert ENGINE_CONFIG["data"]["dataset"]["image_size"] == [64, 96]
