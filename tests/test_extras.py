"""Optional packages: a command that needs one that is not installed stops with one line naming
the ``pip install`` of the extra that brings it (exit 2); Cityscapes training and validation
need none (atrous carries the label table, checked here against cityscapesScripts')."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from helpers_predict import predict, tiny_checkpoint

from atrous.cli import main
from atrous.data import cityscapes_labels
from atrous.errors import MissingExtraError, UserError, require_extra

EVALUATOR = "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling"


def test_require_extra_imports_or_names_the_pip_install(monkeypatch):
    assert require_extra("json", "none", "a test").__name__ == "json"
    monkeypatch.setitem(sys.modules, "av", None)  # as if it were not installed
    with pytest.raises(MissingExtraError) as info:
        require_extra("av", "video", "atrous predict on videos")
    assert str(info.value) == 'atrous predict on videos needs av: pip install "atrous[video]"'
    assert isinstance(info.value, UserError) and isinstance(info.value, ImportError)


def test_evaluate_cityscapes_without_the_extra(monkeypatch, tmp_path, capsys):
    for name in ("cityscapesscripts", EVALUATOR):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["evaluate-cityscapes", str(tmp_path), "--gt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == 'atrous: error: atrous evaluate-cityscapes needs cityscapesscripts: pip install "atrous[cityscapes]"\n'


def test_predict_on_a_video_without_the_extra(monkeypatch, tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path)
    (tmp_path / "drive.mp4").write_bytes(b"not decoded: the extra is checked first")
    monkeypatch.setitem(sys.modules, "av", None)
    assert predict(checkpoint, str(tmp_path / "drive.mp4"), "--output", str(tmp_path / "out")) == 2
    assert capsys.readouterr().err == 'atrous: error: atrous predict on videos needs av: pip install "atrous[video]"\n'
    assert not (tmp_path / "out").exists()


def test_cityscapes_training_and_validation_need_no_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["cityscapesscripts"] = None  # any import of it now fails
        from atrous.data.cityscapes import LABELID_TO_TRAINID, trainid_to_labelid
        from atrous.evaluation.cityscapes_scores import CityscapesScores
        CityscapesScores()
        print(trainid_to_labelid.tolist())
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == str([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33])


def test_the_carried_label_table_is_cityscapesscripts():
    official = pytest.importorskip("cityscapesscripts.helpers.labels")
    evaluator = pytest.importorskip(EVALUATOR)
    assert [tuple(label) for label in cityscapes_labels.LABELS] == [tuple(label) for label in official.labels]
    assert {category: [tuple(label) for label in labels] for category, labels in cityscapes_labels.CATEGORIES.items()} \
        == {category: [tuple(label) for label in labels] for category, labels in official.category2labels.items()}
    assert list(cityscapes_labels.CATEGORIES) == list(official.category2labels)
    assert cityscapes_labels.AVERAGE_INSTANCE_SIZES == evaluator.args.avgClassSize
