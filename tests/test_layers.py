"""The layers only look down: config/io/errors → data → models → engines → evaluation →
training / analysis → deploy → cli, and no modules import one another in a circle
(scripts/layers.py prints the picture)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "layers.py"
spec = importlib.util.spec_from_file_location("atrous_layers", SCRIPT)
layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layers)


def test_every_part_of_the_package_has_a_floor():
    parts = {layers.part_of(layers.module_name(p)) for p in layers.PACKAGE.rglob("*.py")}
    assert parts <= set(layers.FLOORS), f"give these a floor in scripts/layers.py: {parts - set(layers.FLOORS)}"


def test_no_layer_imports_a_higher_one():
    assert layers.violations() == []


def test_no_modules_import_one_another_in_a_circle():
    assert layers.circles() == []


def test_the_circle_check_finds_one(tmp_path, monkeypatch):
    package = tmp_path / "atrous"
    (package / "engines").mkdir(parents=True)
    (package / "engines" / "build.py").write_text("from .quantize import q\n")
    (package / "engines" / "quantize.py").write_text("def q():\n    from .build import b\n")
    monkeypatch.setattr(layers, "PACKAGE", package)
    assert layers.circles() == [["atrous.engines.build", "atrous.engines.quantize"]]


def test_the_check_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "atrous"
    (package / "models").mkdir(parents=True)
    (package / "models" / "x.py").write_text("def f():\n    from ..analysis.common import g\n    return g\n")
    monkeypatch.setattr(layers, "PACKAGE", package)
    assert layers.violations() == [("models", "analysis", "atrous/models/x.py", 2)]
