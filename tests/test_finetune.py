"""Fine-tuning onto a new label set and new inputs: the classifier and aux classifier are
re-initialised (one log line names them), every other tensor loads; same-named classes keep their
rows when asked; other mismatches stay clear errors; ``model.in_channels`` adapts the first
convolution as timm does, for every backbone family; ``atrous fit --weights NAME`` starts from
published weights (served from a local ``file://`` URL)."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml
from test_published_weights import MOBILENET, reference, served, served_file, torch_home  # noqa: F401 (fixtures)
from test_training import tiny_config
from timm.models import adapt_input_conv as timm_adapt_input_conv
from torchvision import models

from atrous import build_model
from atrous.cli import main
from atrous.config import load_config
from atrous.data.palettes import CITYSCAPES_CLASSES
from atrous.data.voc import VOC_CLASSES
from atrous.errors import CheckpointError
from atrous.models.backbones.base import adapt_input_conv
from atrous.models.checkpoint import write_checkpoint
from atrous.models.finetune import load_for_finetuning


# -- input channels ------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 2, 4, 6, 13])
def test_adapt_input_conv_is_timms(channels):
    weight = torch.randn(8, 3, 7, 7)  # timm computes in float32
    torch.testing.assert_close(adapt_input_conv(channels, weight), timm_adapt_input_conv(channels, weight))


@pytest.mark.parametrize(("name", "arch"), [
    ("resnet18", "resnet18"), ("densenet121", "densenet121"),
    ("mobilenet_v3_large", "mobilenet_v3_large"), ("convnext_tiny", "convnext_tiny"),
])
@pytest.mark.parametrize("channels", [1, 4])
def test_every_backbone_family_reads_other_channel_counts_from_imagenet_weights(name, arch, channels, tmp_path):
    torch.manual_seed(0)
    imagenet = getattr(models, arch)(weights=None).state_dict()
    torch.save(imagenet, tmp_path / "imagenet.pth")
    cfg = {"num_classes": 3, "in_channels": channels, "backbone": {"name": name, "output_stride": 32,
                                                                   "pretrained": str(tmp_path / "imagenet.pth")},
           "head": {"name": "fcn"}}
    model = build_model(cfg).eval()
    first = model.backbone.get_submodule(model.backbone.input_conv_name)
    key = {"resnet18": "conv1.weight", "densenet121": "features.conv0.weight"}.get(name, "features.0.0.weight")
    torch.testing.assert_close(first.weight, timm_adapt_input_conv(channels, imagenet[key]))
    assert model.in_channels == channels
    assert model(torch.randn(1, channels, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match=f"\\(N, {channels}, H, W\\)"):
        model(torch.randn(1, 3, 64, 64))


# -- another class list ----------------------------------------------------------------------------
def source_checkpoint(tmp_path, **model):
    """A checkpoint of the tiny model on the synthetic streets' 19 Cityscapes classes."""
    torch.manual_seed(1)
    config = tiny_config(tmp_path)
    config["model"].update(model)
    return write_checkpoint(tmp_path / "source.ckpt", build_model(config, pretrained_backbone=False), config), config


def test_a_new_class_list_reinitialises_only_the_classifiers(tmp_path, caplog):
    path, config = source_checkpoint(tmp_path)
    stored = torch.load(path, weights_only=True)["state_dict"]
    torch.manual_seed(2)
    target = build_model({**config["model"], "num_classes": 4}, pretrained_backbone=False)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="atrous.models.finetune"):
        changed = load_for_finetuning(target, torch.load(path, weights_only=True), path,
                                      class_names=["road", "person", "dog", "car"])
    classifiers = ["classifier.weight", "classifier.bias", "aux_head.4.weight", "aux_head.4.bias"]
    assert changed == classifiers
    state = target.state_dict()
    for key, value in state.items():
        expected = fresh[key] if key in classifiers else stored[f"model.{key}"]
        assert torch.equal(value, expected), key
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and all(k in lines[0] for k in classifiers) and "19 → 4 classes" in lines[0]


def test_same_named_classes_keep_their_rows_when_asked(tmp_path, caplog):
    path, config = source_checkpoint(tmp_path)
    stored = torch.load(path, weights_only=True)["state_dict"]
    target = build_model({**config["model"], "num_classes": 4}, pretrained_backbone=False)
    fresh = target.state_dict()["classifier.weight"].clone()
    names = ["road", "dog", "person", "car"]
    with caplog.at_level(logging.WARNING, logger="atrous.models.finetune"):
        load_for_finetuning(target, torch.load(path, weights_only=True), path, class_names=names, match_classes=True)
    assert "rows copied for the same-named road, person, car" in caplog.records[0].getMessage()
    for prefix in ("classifier", "aux_head.4"):
        weight, old = target.state_dict()[f"{prefix}.weight"], stored[f"model.{prefix}.weight"]
        for row, name in ((0, "road"), (2, "person"), (3, "car")):
            assert torch.equal(weight[row], old[CITYSCAPES_CLASSES.index(name)])
    assert torch.equal(target.state_dict()["classifier.weight"][1], fresh[1])  # "dog": no such class before


def test_other_mismatches_stay_clear_errors(tmp_path):
    path, config = source_checkpoint(tmp_path)
    other = {**config["model"], "num_classes": 4, "head": {**config["model"]["head"], "growth_channels": 4}}
    with pytest.raises(CheckpointError, match="different model"):
        load_for_finetuning(build_model(other, pretrained_backbone=False), torch.load(path, weights_only=True), path,
                            class_names=list("abcd"))


def test_input_channels_and_a_dropped_aux_head(tmp_path):
    path, config = source_checkpoint(tmp_path)
    stored = torch.load(path, weights_only=True)["state_dict"]
    target = build_model({**config["model"], "in_channels": 4, "aux_head": None}, pretrained_backbone=False)
    changed = load_for_finetuning(target, torch.load(path, weights_only=True), path, class_names=CITYSCAPES_CLASSES)
    assert changed[0] == "backbone.conv1.weight" and changed[1].startswith("aux_head.* (dropped")
    torch.testing.assert_close(target.backbone.conv1.weight, timm_adapt_input_conv(4, stored["model.backbone.conv1.weight"]))
    assert torch.equal(target.classifier.weight, stored["model.classifier.weight"])  # same classes: loaded


def test_fit_from_published_weights_onto_another_class_list(served, reference, tmp_path):  # noqa: F811
    config = load_config("torchvision/deeplabv3_mobilenet_v3_large")
    # the head and classifiers at learning rate 0: what fine-tuning starts from stays in the checkpoint
    tiny = tiny_config(tmp_path / "run", max_epochs=1, limit_train_batches=1, init_match_classes=True,
                       lr_multipliers={"head": 0.0, "aux_head": 0.0})
    config["model"]["num_classes"] = 19  # the synthetic streets: Cityscapes' classes (person, car, bus, ...)
    config["data"], config["train"] = tiny["data"], {**config["train"], **tiny["train"]}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path), "--weights", MOBILENET]) == 0
    best = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["hyper_parameters"]["config"]["train"]["init_checkpoint"] == MOBILENET
    weight = best["state_dict"]["model.classifier.weight"]
    assert weight.shape[0] == 19
    published = reference.classifier[4].weight  # torchvision's DeepLabHead classifier, VOC's 21 classes
    assert torch.equal(weight[CITYSCAPES_CLASSES.index("person")], published[VOC_CLASSES.index("person")])
    assert torch.equal(weight[CITYSCAPES_CLASSES.index("car")], published[VOC_CLASSES.index("car")])
    assert not torch.equal(weight[CITYSCAPES_CLASSES.index("road")], published[0])  # no road in VOC: fresh


def test_the_fine_tuning_guide_runs(served, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Every shell command of docs/fine_tuning.md, on its config, with a folder of 4 classes."""
    import re
    import shlex
    from pathlib import Path

    from fixtures_user_data import FOLDER_CLASSES, write_folder

    page = (Path(__file__).resolve().parents[1] / "docs" / "fine_tuning.md").read_text()
    monkeypatch.chdir(tmp_path)
    (config,) = re.findall(r"```yaml\n(# mine.yaml.*?)```", page, flags=re.S)
    Path("mine.yaml").write_text(config)
    for split in ("train", "val"):
        write_folder("data/mine", n=4, size=(64, 96), split=split)
    assert "names: [background, road, car, person]" in page and list(FOLDER_CLASSES) == ["background", "road", "car", "person"]
    commands = [line for block in re.findall(r"```bash\n(.*?)```", page, flags=re.S) for line in block.splitlines()]
    assert len(commands) == 3
    for line in commands:
        assert main(shlex.split(line)[1:]) == 0, line
    stored = yaml.safe_load(Path("runs/mine/class_weights.json").read_text())
    assert stored["mode"] == "auto" and stored["class_names"] == list(FOLDER_CLASSES)


# -- images of other channel counts ----------------------------------------------------------------
def test_images_are_read_with_the_channels_the_model_reads(tmp_path):
    import numpy as np
    from PIL import Image

    from atrous.data.base import DatasetError
    from atrous.data.image_files import read_image_array

    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgb[..., :3]).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgbn.png")  # RGB + a fourth band (near-infrared)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    grey_of_rgb = np.array(Image.fromarray(rgb[..., :3]).convert("L"))
    assert np.array_equal(read_image_array(tmp_path / "rgb.png", channels=1)[..., 0], grey_of_rgb)
    assert np.array_equal(read_image_array(tmp_path / "grey.png", channels=1)[..., 0], rgb[..., 0])
    assert np.array_equal(read_image_array(tmp_path / "rgbn.png", channels=4), rgb)
    assert np.array_equal(read_image_array(tmp_path / "rgbn.png"), rgb[..., :3])
    with pytest.raises(DatasetError, match=r"rgb.png: image mode 'RGB' has no 4 bands.*image_channels: 4"):
        read_image_array(tmp_path / "rgb.png", channels=4)


@pytest.mark.parametrize("channels", [1, 4])
def test_fit_on_a_folder_of_other_channel_counts(channels, tmp_path):
    import numpy as np
    from fixtures_user_data import write_folder
    from PIL import Image

    from atrous.training.runner import fit

    for split in ("train", "val"):
        root = write_folder(tmp_path / "data", n=2, size=(32, 48), split=split)
        for image in sorted((root / split / "images").iterdir()):
            pixels = np.random.default_rng(1).integers(0, 256, (32, 48, channels), dtype=np.uint8)
            image.unlink()
            Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(image.with_suffix(".png"))
    normalize = [[0.5] * channels, [0.25] * channels]
    config = tiny_config(tmp_path / "run", max_epochs=1)
    config["model"].update(num_classes=4, in_channels=channels)
    config["data"] = {
        "dataset": {"name": "folder", "root": str(tmp_path / "data"), "image_channels": channels},
        "train": {"split": "train", "transforms": {"hflip": True, "normalize": normalize}},
        "val": {"split": "val", "transforms": {"normalize": normalize}},
        "batch_size": 2, "num_workers": 0,
    }
    metrics = fit(config)
    assert set(metrics["per_class_iou"]) == {"background", "road", "car", "person"}
    # predict reads the images with the model's channels (flips through the test-time strategies)
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    images = tmp_path / "data" / "val" / "images"
    assert main(["predict", str(images), "--checkpoint", str(best), "--output", str(tmp_path / "out"), "--flip",
                 "--no-progress"]) == 0
    labels = sorted((tmp_path / "out").glob("*_labels.png"))
    assert len(labels) == 2 and np.array(Image.open(labels[0])).shape == (32, 48)
    # export takes an example of the model's channels (and checks parity)
    assert main(["export", "--checkpoint", str(best), "--format", "torchscript", "--output", str(tmp_path / "m.pt")]) == 0
    assert torch.jit.load(tmp_path / "m.pt")(torch.zeros(1, channels, 32, 32)).shape == (1, 4, 32, 32)


def test_published_weights_of_another_network_are_one_clear_line(served, tmp_path, capsys):  # noqa: F811
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path / "run", max_epochs=1)))
    assert main(["fit", "--config", str(path), "--weights", MOBILENET]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("atrous: error:")]
    assert len(err) == 1 and "torchvision/deeplabv3_mobilenet_v3_large" in err[0] and "copy its model section" in err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
