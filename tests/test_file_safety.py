"""Outputs never replace what the command did not write: existing files are refused
unless ``--overwrite``, which moves them aside into ``replaced-<time>/``, inputs always (also through symlinks and ``..``), predict refuses before
writing anything; written files get the umask's mode; a killed writer's temporary file is
cleaned up by the next write into its folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_predict import STRIDE, predict, random_image, tiny_checkpoint, tree
from PIL import Image
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

import atrous
from atrous.cli import main
from atrous.config import CONFIG_ROOT
from atrous.errors import OutputExistsError
from atrous.io import (
    TEMPORARY_NAME,
    atomic_write,
    check_output,
    json_text,
    remove_orphaned_temporaries,
    temporary_prefix,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("safety"))


def moved_aside(folder: Path, name: str) -> bytes:
    """The contents of ``name`` in the one ``folder/replaced-<time>/`` that ``--overwrite`` made."""
    (aside,) = folder.glob("replaced-*")
    return (aside / name).read_bytes()


# -- JSON: NaN and infinities are null, in every writer ------------------------------------------


def _strict(text: str):
    """Parse ``text`` refusing the ``NaN``/``Infinity`` tokens that ``json.dumps`` emits."""
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-JSON token {token}"))


def test_json_text_turns_nan_and_infinities_into_null():
    nan, inf = float("nan"), float("inf")
    data = {"a": nan, "b": [1.5, inf, -inf], "c": {"d": (np.float64(nan), np.float32(0.25))},
            "t": torch.tensor([0.5, nan]), "i": np.int64(3), 2: Path("x/y")}
    text = json_text(data)
    assert text.endswith("}\n")
    assert _strict(text) == {"a": None, "b": [1.5, None, None], "c": {"d": [None, 0.25]},
                             "t": [0.5, None], "i": 3, "2": "x/y"}


def test_metrics_and_analysis_json_write_nan_as_null(tmp_path):
    from atrous.analysis.common import write_json
    from atrous.training.runner import write_metrics

    write_metrics(tmp_path / "metrics.json", {"mIoU": 0.5, "per_class_iou": [0.5, float("nan")]})
    write_json(tmp_path / "analysis.json", {"iou": np.array([float("nan"), 1.0])})
    assert _strict((tmp_path / "metrics.json").read_text()) == {"mIoU": 0.5, "per_class_iou": [0.5, None]}
    assert _strict((tmp_path / "analysis.json").read_text()) == {"iou": [None, 1.0]}


# -- atomic_write: modes and orphans ----------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_open_would_give_them(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "metrics.json", lambda tmp: tmp.write_text("{}"))
        with open(tmp_path / "plain.json", "w") as f:  # what the user expects: open()'s mode
            f.write("{}")
    finally:
        os.umask(old)
    mode = (tmp_path / "metrics.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask == (tmp_path / "plain.json").stat().st_mode & 0o777


def test_a_killed_writer_leaves_a_recognisable_file_the_next_write_removes(tmp_path):
    target = tmp_path / "last.ckpt"
    script = (  # atrous.io alone, without the package's torch import: the child starts in a blink
        "import sys, time, types\n"
        f"package = types.ModuleType('atrous'); package.__path__ = [{str(Path(atrous.__file__).parent)!r}]\n"
        "sys.modules['atrous'] = package\n"
        "from atrous.io import atomic_write\n"
        "def slow(tmp):\n    tmp.write_bytes(b'half a checkpoint'); print(tmp, flush=True); time.sleep(60)\n"
        f"atomic_write({str(target)!r}, slow)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    orphan = Path(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)  # no cleanup handler runs, as after an OOM kill
    writer.wait()
    writer.stdout.close()
    assert orphan.is_file() and orphan.parent == tmp_path and not target.exists()
    assert TEMPORARY_NAME.match(orphan.name) and orphan.name.startswith(".last.ckpt.atrous-tmp-")
    live = tmp_path / orphan.name.replace(f"-{writer.pid}-", f"-{os.getpid()}-")  # a writer still running
    live.write_bytes(b"in progress")
    mine = tmp_path / ".notes.atrous-tmp-mine"  # a user's file that merely looks similar
    mine.write_text("keep")

    atomic_write(tmp_path / "metrics.json", lambda tmp: tmp.write_text("{}"))
    assert not orphan.exists()
    assert live.exists() and mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, mine.name, "metrics.json"])


def test_orphans_of_a_dead_writer_are_removed_once_per_folder(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    orphan = tmp_path / (temporary_prefix(tmp_path / "best.ckpt", dead) + "k2j4h5g6.ckpt")
    other_host = tmp_path / f".best.ckpt.atrous-tmp-otherhost-{dead}-k2j4h5g6.ckpt"
    orphan.write_bytes(b"x")
    other_host.write_bytes(b"x")
    assert remove_orphaned_temporaries(tmp_path) == [orphan]
    assert other_host.exists()  # its writer may be running on another machine sharing the folder


def test_atomic_write_without_overwrite_keeps_an_existing_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("the user's")
    with pytest.raises(OutputExistsError, match="report.json already exists"):
        atomic_write(path, lambda tmp: tmp.write_text("ours"), overwrite=False)
    assert path.read_text() == "the user's"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left
    atomic_write(tmp_path / "new.json", lambda tmp: tmp.write_text("ours"), overwrite=False)
    assert (tmp_path / "new.json").read_text() == "ours"


def test_an_output_equal_to_an_input_is_refused_through_symlinks_and_dots(tmp_path):
    source = tmp_path / "weights" / "model.pth"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    (tmp_path / "link.pth").symlink_to(source)
    os.link(source, tmp_path / "hard.pth")
    for alias in (source, tmp_path / "link.pth", tmp_path / "weights" / ".." / "weights" / "model.pth", tmp_path / "hard.pth"):
        with pytest.raises(OutputExistsError, match="is the input"):
            check_output(alias, inputs=[source], overwrite=True)
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        check_output(tmp_path / "link.pth", inputs=[tmp_path / "other.pth"])
    assert check_output(tmp_path / "new.ckpt", inputs=[source]) == tmp_path / "new.ckpt"


# -- convert, export, benchmark, analyze ------------------------------------------------------

def test_convert_never_writes_over_its_source_weights(tmp_path, capsys):
    weights = tmp_path / "deeplabv3.pth"
    reference = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=True, num_classes=21)
    torch.save(reference.state_dict(), weights)
    before = weights.read_bytes()
    config = str(CONFIG_ROOT / "torchvision" / "deeplabv3_mobilenet_v3_large.yaml")
    args = ["convert", "--from", "torchvision-deeplabv3", str(weights), "--config", config]
    for output in (weights, tmp_path / "sub" / ".." / "deeplabv3.pth"):
        assert main([*args, "--output", str(output), "--overwrite"]) == 2
        assert "is the input" in capsys.readouterr().err
    assert weights.read_bytes() == before

    existing = tmp_path / "model.ckpt"
    existing.write_bytes(b"the user's checkpoint")
    assert main([*args, "--output", str(existing)]) == 2
    assert f"{existing} already exists; pass --overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"the user's checkpoint"
    assert main([*args, "--output", str(existing), "--overwrite"]) == 0
    assert "state_dict" in torch.load(existing, weights_only=True)
    assert moved_aside(tmp_path, "model.ckpt") == b"the user's checkpoint"
    assert weights.read_bytes() == before


def test_export_refuses_an_existing_file_and_the_config_before_loading(checkpoint, tmp_path, capsys):
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"the user's model")
    config = tmp_path / "tiny.yaml"
    config.write_text("base: demo/denseaspp_resnet18_small\n")  # valid: the output check is what refuses
    args = ["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--image-size", "32", "32"]
    assert main([*args, "--output", str(existing)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--config", str(config), "--output", str(config), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert existing.read_bytes() == b"the user's model" and config.read_text() == "base: demo/denseaspp_resnet18_small\n"
    assert main([*args, "--output", str(existing), "--overwrite"]) == 0
    assert existing.read_bytes() != b"the user's model"
    assert moved_aside(tmp_path, "model.pt") == b"the user's model"


def test_benchmark_outputs_are_checked_before_measuring(tmp_path, capsys):
    results = tmp_path / "train.json"
    results.write_text(json.dumps({"the": "user's"}))
    assert main(["benchmark-data", "--train-results", str(results), "--output", str(results), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert main(["benchmark-data", "--output", str(results)]) == 2
    assert "already exists" in capsys.readouterr().err
    start = time.perf_counter()
    assert main(["benchmark", "--config", "demo/denseaspp_resnet18_small", "--output", str(results)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert time.perf_counter() - start < 5  # refused before any model was built or timed
    assert json.loads(results.read_text()) == {"the": "user's"}
    assert main(["benchmark-data", "--frames", "1", "--repeats", "1", "--output", str(results), "--overwrite"]) == 0
    assert "images_per_s" in results.read_text()
    assert json.loads(moved_aside(tmp_path, "train.json")) == {"the": "user's"}


def test_analyze_refuses_existing_figures_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "analysis"
    args = ["analyze", "valid-weights", "--size", "9", "--output", str(out)]
    assert main(args) == 0
    first = tree(out)
    assert sorted(first) == ["valid_weights.json", "valid_weights.png"]
    (out / "valid_weights.json").write_text("edited by the user")
    assert main(args) == 2
    assert "already holds valid_weights.png, valid_weights.json" in capsys.readouterr().err
    assert (out / "valid_weights.json").read_text() == "edited by the user"
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "valid_weights.json").read_text())["analysis"] == "valid-weights"
    assert moved_aside(out, "valid_weights.json") == b"edited by the user"
    assert moved_aside(out, "valid_weights.png") == first["valid_weights.png"]


# -- predict ----------------------------------------------------------------------------------

def test_predict_files_into_their_own_folder_never_replaces_a_users_file(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    random_image(photos / "a.png", seed=1)
    random_image(photos / "b.png", seed=2)
    Image.new("L", (5, 5), 7).save(photos / "a_labels.png")  # the user's own file, unrelated
    before = tree(photos)
    # what the shell makes of `atrous predict photos/a.png photos/b.png --output photos`
    assert predict(checkpoint, str(photos / "a.png"), str(photos / "b.png"), "--output", str(photos)) == 2
    err = capsys.readouterr().err
    assert "a_labels.png" in err and "nothing was written" in err and "--overwrite" in err
    assert tree(photos) == before  # not even b's outputs: no partial run

    assert predict(checkpoint, str(photos / "a.png"), str(photos / "b.png"), "--output", str(photos), "--overwrite") == 0
    with Image.open(photos / "a_labels.png") as labels:
        assert labels.size == (24, 16)
    assert moved_aside(photos, "a_labels.png") == before["a_labels.png"]  # the user's file, moved, not lost
    assert (photos / "b_color.png").is_file()
    assert tree(photos)["a.png"] == before["a.png"] and tree(photos)["b.png"] == before["b.png"]


def test_predict_refuses_existing_outputs_before_writing_any(checkpoint, tmp_path, capsys):
    random_image(tmp_path / "in" / "a.png", seed=1)
    random_image(tmp_path / "in" / "b.png", seed=2)
    out = tmp_path / "out"
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(out)) == 0
    written = tree(out)
    assert len(written) == 6
    (out / "b_overlay.png").unlink()
    random_image(tmp_path / "in" / "c.png", seed=3)
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(out)) == 2
    assert "already exist" in capsys.readouterr().err
    assert tree(out) == {k: v for k, v in written.items() if k != "b_overlay.png"}  # c_* not written


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(checkpoint, tmp_path, capsys):
    random_image(tmp_path / "x.png")
    random_image(tmp_path / "x_color.png", seed=1)
    before = tree(tmp_path)
    assert predict(checkpoint, str(tmp_path / "x.png"), str(tmp_path / "x_color.png"), "--output", str(tmp_path), "--overwrite") == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_an_image_smaller_than_the_output_stride_is_skipped_and_named(checkpoint, tmp_path, capsys):
    random_image(tmp_path / "in" / "a_good.png", seed=1)
    random_image(tmp_path / "in" / "b_tiny.png", size=(STRIDE - 1, 40), seed=2)
    random_image(tmp_path / "in" / "c_good.png", seed=3)
    out = tmp_path / "out"
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(out)) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in' / 'b_tiny.png'}: image of 7x40 pixels is smaller than the model's output stride 8" in err
    assert "skipped 1 input(s)" in err
    assert sorted(tree(out)) == sorted(f"{s}_{k}.png" for s in ("a_good", "c_good") for k in ("color", "labels", "overlay"))
    # at scale 0.5 a 12-pixel side becomes 6 < 8: the scale is named
    random_image(tmp_path / "half" / "x.png", size=(12, 40))
    assert predict(checkpoint, str(tmp_path / "half"), "--output", str(tmp_path / "o2"), "--scales", "1", "0.5") == 1
    assert "(at scale 0.5: 6x20)" in capsys.readouterr().err


# -- validate: a copied checkpoint, an existing metrics.json -------------------------------------


def _validation_checkpoint(folder: Path) -> Path:
    """A 19-class model whose stored config names ``folder/run`` as its run folder."""
    import torch

    from atrous.models import build_model

    cfg = {"model": {"num_classes": 19, "backbone": {"name": "resnet18", "output_stride": 8, "pretrained": False},
                     "head": {"name": "fcn"}},
           "data": {"dataset": {"name": "synthetic", "image_size": [32, 64]}, "val": {"split": "val", "length": 2},
                    "num_workers": 0},
           "train": {"output_dir": str(folder / "run"), "accelerator": "cpu", "progress_bar": False}}
    model = build_model(cfg)
    path = folder / "run" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"config": cfg, "class_names": None, "ignore_index": 255}}, path)
    return path


def test_validate_never_writes_into_the_run_folder_a_copied_checkpoint_names(tmp_path, capsys):
    original = _validation_checkpoint(tmp_path)
    copied = tmp_path / "elsewhere" / "best.ckpt"
    copied.parent.mkdir()
    shutil.copyfile(original, copied)
    assert main(["validate", "--checkpoint", str(copied)]) == 0
    assert (copied.parent / "validate" / "metrics.json").is_file()
    assert not (tmp_path / "run" / "validate").exists(), "the original run folder is not written"
    assert main(["validate", "--checkpoint", str(original)]) == 0  # the run's own checkpoint: its folder
    assert (tmp_path / "run" / "validate" / "metrics.json").is_file()
    assert main(["validate", "--checkpoint", str(original)]) == 0  # again: the default folder's result moves aside
    assert len(list((tmp_path / "run" / "validate").glob("replaced-*/metrics.json"))) == 1


def test_validate_refuses_an_existing_metrics_json_and_moves_it_aside_with_overwrite(tmp_path, capsys):
    checkpoint = _validation_checkpoint(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("a user's file\n")
    (out / "notes.txt").write_text("mine\n")
    assert main(["validate", "--checkpoint", str(checkpoint), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("atrous: error: --output") and "metrics.json" in err[-1] and "--overwrite" in err[-1]
    assert (out / "metrics.json").read_text() == "a user's file\n"
    assert main(["validate", "--checkpoint", str(checkpoint), "--output", str(out), "--overwrite"]) == 0
    (aside,) = out.glob("replaced-*")
    assert (aside / "metrics.json").read_text() == "a user's file\n", "moved aside, not deleted"
    assert "mIoU" in json.loads((out / "metrics.json").read_text()) and (out / "notes.txt").read_text() == "mine\n"
