"""``atrous predict``: the files written for images, folders and videos, the normalisation the
model was trained with, refusals to overwrite inputs, unreadable files, and a Cityscapes
submission scored by cityscapesScripts' own evaluator equal to ``atrous validate``."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from cityscapesscripts.helpers.labels import trainId2label
from fixtures_data import cityscapes_instance_ids, write_cityscapes
from PIL import Image

from atrous.cli import main
from atrous.data.cityscapes import CLASSES_19, CLASSES_20
from atrous.data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from atrous.data.transforms import NORMALIZATIONS
from atrous.evaluation.choices import TTA_PRESETS
from atrous.evaluation.inference import predict, predict_probabilities
from atrous.evaluation.predict_app import cityscapes_lut, collect_inputs
from atrous.models import build_model

# Label ids of the ground truth below: void (0) and seven classes; the twelve other evaluated
# classes are absent, so the two metrics must agree on which classes enter the mean.
GT_LABEL_IDS = np.array([0, 7, 8, 11, 21, 23, 24, 26], np.uint8)


def tiny_config(data_root: Path, output_dir: Path) -> dict:
    return {
        "model": {
            "num_classes": 19,
            "backbone": {"name": "resnet18", "output_stride": 8, "pretrained": False},
            "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8},
        },
        "data": {
            "dataset": {"name": "cityscapes", "root": str(data_root), "variant": "19"},
            # the official DenseASPP statistics: predict must read them from here
            "val": {"split": "val", "transforms": {"normalize": "cityscapes"}},
            "val_batch_size": 1,
            "num_workers": 0,
        },
        "train": {"output_dir": str(output_dir), "progress_bar": False, "accelerator": "cpu"},
    }


def spread_predictions(model: torch.nn.Module) -> None:
    """Re-centre and re-scale a random model's classifier so that it predicts several classes."""
    with torch.no_grad():
        logits = model(torch.rand(4, 3, 32, 64) * 4 - 2)
        model.classifier.weight /= logits.std((0, 2, 3)).view(-1, 1, 1, 1)
        model.classifier.bias -= model(torch.rand(4, 3, 32, 64) * 4 - 2).mean((0, 2, 3))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A tiny Cityscapes val split, a random model saved as an atrous checkpoint, its config."""
    root = tmp_path_factory.mktemp("predict")
    data = write_cityscapes(root / "cityscapes", splits=("val",), size=(32, 64))
    rng = np.random.default_rng(1)
    for label in sorted((data / "gtFine" / "val").rglob("*_gtFine_labelIds.png")):
        label_ids = np.kron(rng.choice(GT_LABEL_IDS, size=(4, 8)), np.ones((8, 8), np.uint8))
        Image.fromarray(label_ids).save(label)
        instances = label.with_name(label.name.replace("labelIds", "instanceIds"))
        Image.fromarray(cityscapes_instance_ids(label_ids, block=8)).save(instances)
    cfg = tiny_config(data, root / "run")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    spread_predictions(model)
    checkpoint = root / "tiny.ckpt"  # the layout `atrous fit` writes (Lightning)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"config": cfg, "class_names": list(CITYSCAPES_CLASSES), "ignore_index": 255},
        },
        checkpoint,
    )
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return {"root": root, "data": data, "model": model, "checkpoint": checkpoint, "config": config}


def run(setup: dict, *args: str) -> int:
    return main(["predict", "--checkpoint", str(setup["checkpoint"]), "--no-progress", "--device", "cpu", "--precision", "fp32", *args])


def normalised(image: np.ndarray, name: str = "cityscapes") -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(1, 3, H, W)``, computed independently of the transforms module."""
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS[name])
    return ((torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std).unsqueeze(0)


def random_image(path: Path, size: tuple[int, int] = (40, 72), seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return image


# -- images, folders, videos ------------------------------------------------------------------

def test_image_outputs_have_the_right_sizes_types_and_values(setup, tmp_path):
    image = random_image(tmp_path / "in" / "street.png")
    out = tmp_path / "out"
    assert run(setup, str(tmp_path / "in" / "street.png"), "--output", str(out), "--probabilities") == 0
    expected = predict_probabilities(setup["model"], normalised(image))[0]

    with Image.open(out / "street_labels.png") as png:
        assert png.mode == "L" and png.size == (72, 40)
        labels = np.array(png)
    assert np.array_equal(labels, expected.argmax(0).numpy())
    assert len(np.unique(labels)) > 1
    for kind in ("color", "overlay"):
        with Image.open(out / f"street_{kind}.png") as png:
            assert png.mode == "RGB" and png.size == (72, 40)
            colours = np.array(png)
    assert np.array_equal(np.array(Image.open(out / "street_color.png")), CITYSCAPES_PALETTE[labels])
    assert not np.array_equal(colours, np.array(Image.open(out / "street_color.png")))  # blended with the image
    with np.load(out / "street_probs.npz") as saved:
        probs, names = saved["probabilities"], saved["class_names"]
    assert probs.dtype == np.float16 and probs.shape == (19, 40, 72)
    np.testing.assert_allclose(probs.astype(np.float32), expected.numpy(), atol=1e-3)
    assert list(names) == list(CITYSCAPES_CLASSES)
    # ImageNet statistics would give other probabilities: the config's normalisation was used
    imagenet = predict_probabilities(setup["model"], normalised(image, "imagenet"))[0]
    assert (imagenet - expected).abs().max() > 1e-2


def test_folder_outputs_mirror_sub_paths_and_test_time_options_apply(setup, tmp_path):
    folder = tmp_path / "photos"
    a = random_image(folder / "a" / "x.png", (32, 64), seed=1)
    random_image(folder / "b" / "x.png", (32, 64), seed=2)
    Image.fromarray(random_image(tmp_path / "tmp.png", (32, 64), seed=3)).save(folder / "b" / "y.jpg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert run(setup, str(folder), "--output", str(out), "--config", str(setup["config"]), "--scales", "1", "0.5", "--flip", "--window", "32", "48") == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(f"{stem}_{kind}.png" for stem in ("a/x", "b/x", "b/y") for kind in ("color", "labels", "overlay"))
    options = {"scales": (1.0, 0.5), "flip": True, "window": (32, 48)}
    expected = predict_probabilities(setup["model"], normalised(a), **options)[0].argmax(0).numpy()
    assert np.array_equal(np.array(Image.open(out / "a" / "x_labels.png")), expected)


@pytest.mark.parametrize("with_config", [True, False], ids=["--config", "stored config"])
def test_set_overrides_the_config_predict_uses(setup, tmp_path, with_config):
    """``--set`` changes the --config given, or else the checkpoint's stored config: here the
    normalisation (the stored one is the official DenseASPP statistics)."""
    image = random_image(tmp_path / "in.png", (32, 64), seed=4)
    out = tmp_path / "out"
    config = ["--config", str(setup["config"])] if with_config else []
    assert run(setup, str(tmp_path / "in.png"), "--output", str(out), *config,
               "--set", "data.val.transforms.normalize=imagenet") == 0
    labels = np.array(Image.open(out / "in_labels.png"))
    imagenet, cityscapes = (predict(setup["model"], normalised(image, name))[0].numpy() for name in ("imagenet", "cityscapes"))
    assert not np.array_equal(imagenet, cityscapes)  # the override is visible in the labels
    assert np.array_equal(labels, imagenet)


def test_presets_and_output_stride_reach_the_model(setup, tmp_path):
    image = random_image(tmp_path / "x.png", (32, 64))
    args = ("--tta", "denseaspp-official", "--scales", "1", "1.5", "--output-stride", "16")  # --scales overrides
    assert run(setup, str(tmp_path / "x.png"), "--output", str(tmp_path / "out"), *args) == 0
    options = {**TTA_PRESETS["denseaspp-official"], "scales": (1.0, 1.5)}  # flips, log-probabilities
    redilated = copy.deepcopy(setup["model"])
    redilated.set_output_stride(16)
    expected = predict(redilated, normalised(image), **options)
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / "x_labels.png")), expected[0].numpy())
    assert setup["model"].output_stride == 8


def test_files_of_the_same_name_in_different_folders_do_not_collide(tmp_path):
    random_image(tmp_path / "day" / "x.png")
    random_image(tmp_path / "night" / "x.png")
    sources = collect_inputs([tmp_path / "day" / "x.png", tmp_path / "night" / "x.png"])
    assert [s.relative.as_posix() for s in sources] == ["day/x", "night/x"]
    random_image(tmp_path / "day" / "x.jpg")
    with pytest.raises(ValueError, match="would write the same outputs"):
        collect_inputs([tmp_path / "day"])


def write_video(path: Path, frames: int = 3, size: tuple[int, int] = (32, 64), faststart: bool = False) -> None:
    """An mpeg4 video of random frames; ``faststart``: the frame index first (as streamed mp4s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_frames_are_predicted_into_a_folder_and_an_overlay_video(setup, tmp_path):
    write_video(tmp_path / "clips" / "drive.mp4")
    out = tmp_path / "out"
    assert run(setup, str(tmp_path / "clips"), "--output", str(out), "--overlay-video") == 0
    for index in range(3):
        with Image.open(out / "drive" / f"frame_{index:06d}_labels.png") as png:
            assert png.mode == "L" and png.size == (64, 32)
        assert (out / "drive" / f"frame_{index:06d}_overlay.png").is_file()
    with av.open(str(out / "drive_overlay.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (32, 64, 3)


def test_a_truncated_video_is_predicted_as_far_as_it_decodes_and_reported(setup, tmp_path, capsys):
    write_video(tmp_path / "full.mp4", frames=10, faststart=True)
    data = (tmp_path / "full.mp4").read_bytes()
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "cut.mp4").write_bytes(data[: len(data) // 2])  # `head -c`: a copy that stopped half way
    mdat = data.index(b"mdat") + 4
    (clips / "header.mp4").write_bytes(data[: mdat + 8])  # the index, but no frame
    write_video(tmp_path / "full.mkv", frames=10)  # Matroska declares a duration, not a frame count
    mkv = (tmp_path / "full.mkv").read_bytes()
    (clips / "short.mkv").write_bytes(mkv[: len(mkv) // 2])
    out = tmp_path / "out"
    assert run(setup, str(clips), "--output", str(out)) == 1
    err = capsys.readouterr().err
    written = sorted(p.name for p in (out / "cut").glob("*_labels.png"))
    assert 0 < len(written) < 10 and written[-1] == f"frame_{len(written) - 1:06d}_labels.png"
    warning = f"read {len(written)} frame(s) of the 10 its container declares"
    assert f"atrous predict: warning: {clips / 'cut.mp4'}: {warning}" in err
    assert "2 video(s) ended early" in err and f"  {clips / 'cut.mp4'}: {warning}" in err  # the summary
    assert f"skipping {clips / 'header.mp4'}: no frame decodes (its container declares 10)" in err
    assert not (out / "header").exists()
    assert f"{clips / 'short.mkv'}: read " in err and "of about 10 (its duration times its frame rate)" in err


# -- safety and errors ------------------------------------------------------------------------

def test_a_video_and_a_folder_of_the_same_name_are_refused_before_writing(setup, tmp_path, capsys):
    write_video(tmp_path / "in" / "drive.mp4", frames=1)
    random_image(tmp_path / "in" / "drive" / "frame_000000.png")  # would be drive/frame_000000_*.png too
    out = tmp_path / "out"
    for inputs in ([tmp_path / "in"], [tmp_path / "in" / "drive.mp4", tmp_path / "in" / "drive"]):
        assert run(setup, *map(str, inputs), "--output", str(out)) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / 'in' / 'drive.mp4'} writes its frames into <output>/drive/" in err
        assert str(tmp_path / "in" / "drive" / "frame_000000.png") in err and err.count("\n") == 1
        assert not out.exists()

def test_an_output_folder_inside_or_equal_to_an_input_folder_is_refused(setup, tmp_path, capsys):
    random_image(tmp_path / "in" / "x.png")
    for output in (tmp_path / "in", tmp_path / "in" / "predictions"):
        assert run(setup, str(tmp_path / "in"), "--output", str(output)) == 2
        assert "inside the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "in").rglob("*")) == ["x.png"]


def test_an_output_file_that_is_an_input_is_refused(setup, tmp_path, capsys):
    random_image(tmp_path / "x.png")
    random_image(tmp_path / "x_color.png", seed=1)  # what predicting x.png into tmp_path would write
    assert run(setup, str(tmp_path / "x.png"), str(tmp_path / "x_color.png"), "--output", str(tmp_path)) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x_color.png"]


def test_an_unreadable_image_is_skipped_with_an_error_naming_it(setup, tmp_path, capsys):
    random_image(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert run(setup, str(tmp_path / "in"), "--output", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "cannot decode" in err and "good.png" not in err
    assert (tmp_path / "out" / "good_labels.png").is_file()
    assert not list((tmp_path / "out").glob("broken*"))


def test_bad_options_are_clear_errors(setup, tmp_path, capsys):
    random_image(tmp_path / "in" / "x.png")
    assert run(setup, str(tmp_path / "in"), "--output", str(tmp_path / "o"), "--scales", "0") == 2
    assert "scales must be positive" in capsys.readouterr().err
    assert run(setup, str(tmp_path / "in"), "--output", str(tmp_path / "o"), "--cityscapes-submission") == 2
    assert "needs Cityscapes file names" in capsys.readouterr().err
    assert run(setup, str(tmp_path / "missing"), "--output", str(tmp_path / "o")) == 2
    assert "input not found" in capsys.readouterr().err


def test_the_cli_offers_every_preset(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "x.png", "--checkpoint", "c.ckpt", "--output", "o", "--tta", "bogus"])
    offered = capsys.readouterr().err.split("choose from")[1]
    assert sorted(re.findall(r"[\w-]+", offered)) == sorted(TTA_PRESETS)


# -- Cityscapes submission --------------------------------------------------------------------

def test_cityscapes_label_ids_follow_the_official_table():
    lut19, lut20 = cityscapes_lut(CLASSES_19), cityscapes_lut(CLASSES_20)
    assert lut19.tolist() == [trainId2label[t].id for t in range(19)]
    assert lut20.tolist() == lut19.tolist() + [0]  # the report's "background" → unlabeled


def test_submission_scored_by_cityscapesscripts_equals_atrous_validate(setup, tmp_path):
    images = setup["data"] / "leftImg8bit" / "val"
    out = tmp_path / "submission"
    # no --config: the checkpoint's stored config (and its normalisation) is used
    assert run(setup, str(images), "--output", str(out), "--cityscapes-submission") == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(p.relative_to(images).as_posix() for p in images.rglob("*_leftImg8bit.png"))
    label_ids = np.unique(np.concatenate([np.array(Image.open(out / w)).ravel() for w in written]))
    assert set(label_ids) <= {label.id for t, label in trainId2label.items() if 0 <= t < 19}

    # scored by `atrous evaluate-cityscapes`, i.e. cityscapesScripts' own evaluateImgLists
    official_json = tmp_path / "cityscapes.json"
    assert main(["evaluate-cityscapes", str(out), "--gt", str(setup["data"]), "--output", str(official_json)]) == 0
    assert not hasattr(np, "in1d")  # numpy 2.4 has none, and the evaluator's shim did not leak one
    official = json.loads(official_json.read_text())
    assert main(["validate", "--config", str(setup["config"]), "--checkpoint", str(setup["checkpoint"]),
                 "--output", str(tmp_path / "validate")]) == 0
    ours = json.loads((tmp_path / "validate" / "metrics.json").read_text())

    # Same conventions, so the numbers must be equal: both ignore void ground truth (atrous maps
    # it to 255, cityscapesScripts skips rows of classes with ignoreInEval), both count a
    # prediction on a labelled pixel of another class as a false positive, and both leave out
    # of the mean exactly the classes with an empty union (NaN), i.e. absent from the ground
    # truth *and* never predicted on labelled pixels; a class predicted but absent from the
    # ground truth has IoU 0 in both. Both write NaN as null.
    assert list(official["per_class_iou"]) == list(CITYSCAPES_CLASSES)
    for name in CITYSCAPES_CLASSES:
        score, iou = official["per_class_iou"][name], ours["per_class_iou"][name]
        assert (iou is None and score is None) or iou == pytest.approx(score, abs=1e-12), name
    assert ours["mIoU"] == pytest.approx(official["IoU_class"], abs=1e-12)
    # the instance-weighted scores were computed (NaN, i.e. null, if the in1d path were skipped):
    # the truth holds person and car instances, so their iIoU and the human/vehicle ones exist
    assert official["per_class_iiou"]["person"] is not None and official["per_class_iiou"]["car"] is not None
    assert official["iIoU_class"] is not None and official["per_category_iiou"]["vehicle"] is not None
    # the comparison exercises the conventions: classes found, missed, hallucinated and absent
    values = [v for v in ours["per_class_iou"].values() if v is not None]
    assert ours["mIoU"] > 0 and any(v > 0 for v in values) and 0 in values
    assert None in ours["per_class_iou"].values()
