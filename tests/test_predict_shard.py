"""``atrous predict --shard K/N``: N machines split a folder by file name, every input is
predicted exactly once and as an unsharded run predicts it; a re-run skips what is complete and
finishes what a stopped run left half-written."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers_predict import predict, random_image, tiny_checkpoint, tree

from atrous.evaluation.prediction_files import Source, parse_shard, shard_of

NAMES = ["a/01.png", "a/02.png", "b/01.png", "b/x/03.png", "c.png", "d.png", "e.png"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("model"))


@pytest.fixture
def photos(tmp_path) -> Path:
    for seed, name in enumerate(NAMES):
        random_image(tmp_path / "photos" / name, (16, 24), seed=seed)
    return tmp_path / "photos"


def test_shards_predict_every_input_exactly_once_as_one_run_does(checkpoint, photos, tmp_path):
    assert predict(checkpoint, str(photos), "--output", str(tmp_path / "whole")) == 0
    shards = []
    for k in (1, 2, 3):  # three machines, each writing to a folder of its own
        assert predict(checkpoint, str(photos), "--output", str(tmp_path / f"shard{k}"), "--shard", f"{k}/3") == 0
        shards.append(tree(tmp_path / f"shard{k}"))
    inputs = [[name.removesuffix("_labels.png") for name in shard if name.endswith("_labels.png")] for shard in shards]
    assert sorted(sum(inputs, [])) == sorted(n.removesuffix(".png") for n in NAMES)  # each once, none lost
    assert [len(i) for i in inputs] == [3, 2, 2]
    merged = {name: data for shard in shards for name, data in shard.items()}
    assert merged == tree(tmp_path / "whole")  # the same bytes as one unsharded run


def test_the_split_depends_on_the_names_only():
    sources = [Source(Path("/x") / n, Path(n).with_suffix(""), False) for n in NAMES]
    shuffled = random.Random(0).sample(sources, len(sources))
    for k in (1, 2, 3):
        assert shard_of(shuffled, (k, 3)) == shard_of(sources, (k, 3))
    assert [s.relative.as_posix() for s in shard_of(sources, (2, 3))] == ["a/02", "c"]


def test_a_rerun_skips_complete_inputs_and_finishes_a_half_written_one(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(checkpoint, str(photos), "--output", str(out), "--shard", "1/1") == 0
    first = tree(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}

    assert predict(checkpoint, str(photos), "--output", str(out), "--shard", "1/1") == 0
    assert "Wrote 0 files" in capsys.readouterr().out and tree(out) == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps  # nothing rewritten

    (out / "b" / "01_overlay.png").unlink()  # runs stopped between two files of one image
    (out / "a" / "01_color.png").unlink()
    assert predict(checkpoint, str(photos), "--output", str(out), "--skip-existing") == 0
    assert "Wrote 6 files" in capsys.readouterr().out  # both images again, all 3 files each
    assert tree(out) == first


def test_a_bad_shard_is_one_error_line(checkpoint, photos, tmp_path, capsys):
    for bad in ("0/3", "4/3", "2", "a/b"):
        assert predict(checkpoint, str(photos), "--output", str(tmp_path / "o"), "--shard", bad) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"atrous: error: --shard {bad}: expected K/N with 1 <= K <= N, e.g. --shard 2/4 (the second of four shards)"
    assert not (tmp_path / "o").exists()
    assert parse_shard("2/4") == (2, 4)
