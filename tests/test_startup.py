"""The command line starts without torch: ``atrous --help``, every ``atrous <command> --help``,
``import atrous``, and ``atrous zoo`` and ``atrous info`` on a packaged config load none of the
heavy libraries (scripts/bench_startup.py measures the time and memory this saves); the public
names still import on first use, and the figures zoo and info declare are those of real builds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import atrous
from atrous import build_model, load_config
from atrous.config import CONFIG_ROOT
from atrous.models import figures
from atrous.models.choices import CONVERT_FORMATS
from atrous.models.complexity import model_info
from atrous.models.convert import SOURCE_FORMATS

HEAVY = ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "PIL", "matplotlib")

# In a fresh interpreter: each command's --help in turn, and the heavy modules loaded after it.
HELP_PROBE = textwrap.dedent("""
    import argparse, contextlib, io, json, sys
    from atrous.cli import main
    from atrous.cli.parser import build_parser

    def run(argv):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(argv)
        return [name for name in HEAVY if name in sys.modules]

    def commands(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    seen = {"--help": run(["--help"])}
    for name, sub in commands(build_parser()).items():
        seen[name] = run([name, "--help"])
        if name == "analyze":
            for analysis in commands(sub):
                seen[f"analyze {analysis}"] = run(["analyze", analysis, "--help"])
    print(json.dumps(seen))
""")


def _probe(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{code}"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_of_every_command_imports_no_heavy_library():
    seen = json.loads(_probe(HELP_PROBE))
    assert {"--help", "fit", "predict", "serve", "benchmark", "analyze stride"} <= set(seen)
    loaded = {command: modules for command, modules in seen.items() if modules}
    assert not loaded, f"these --help runs imported heavy libraries: {loaded}"


def test_import_atrous_imports_no_heavy_library():
    out = _probe("import atrous, atrous.models, atrous.engines, atrous.evaluation, sys\n"
                 "print([name for name in HEAVY if name in sys.modules])")
    assert json.loads(out.replace("'", '"')) == []


def test_every_public_name_imports_on_first_use():
    for name in atrous.__all__:
        assert getattr(atrous, name) is not None, name
    assert set(atrous.__all__) <= set(dir(atrous))
    from atrous import Segmentor, build_model  # noqa: F401  (the from-import form)
    from atrous.engines import EngineOptions, build_engine  # noqa: F401
    from atrous.evaluation import SegmentationMetrics, predict  # noqa: F401


def test_an_unknown_name_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        atrous.no_such_name  # noqa: B018


def test_the_convert_formats_the_command_line_offers_are_the_converters():
    assert CONVERT_FORMATS == tuple(SOURCE_FORMATS)


# -- atrous zoo and atrous info: declared figures ----------------------------------------------

def test_zoo_and_info_of_a_packaged_config_import_no_heavy_library():
    out = _probe("import contextlib, io, sys\nfrom atrous.cli import main\n"
                 "with contextlib.redirect_stdout(io.StringIO()):\n"
                 "    assert main(['zoo']) == 0\n"
                 "    assert main(['info', '--config', 'denseaspp/denseaspp161_cityscapes', '--json']) == 0\n"
                 "print([name for name in HEAVY if name in sys.modules])")
    assert json.loads(out.replace("'", '"')) == []


def test_the_declared_figures_are_those_of_meta_device_builds():
    assert figures.declared() == figures.measure_declared(), "run python scripts/declare_figures.py"


def test_a_meta_device_build_counts_as_a_real_one():
    cfg = load_config(CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml")
    real = model_info(build_model(cfg, pretrained_backbone=False))
    assert figures.measure_info(cfg["model"]) == real == figures.declared_info(cfg["model"])


def test_figures_outside_the_declared_ones_are_measured():
    cfg = load_config("demo/denseaspp_resnet18_small", ["model.num_classes=7"])
    assert figures.declared_info(cfg["model"]) is None
    assert figures.declared_info(load_config("demo/denseaspp_resnet18_small")["model"], (256, 256)) is None
    assert figures.info(cfg["model"])["params_total"] == model_info(build_model(cfg))["params_total"]


def test_only_a_packaged_config_as_shipped_skips_the_validation():
    assert figures.is_packaged_config(load_config("denseaspp/denseaspp121_cityscapes"))
    assert not figures.is_packaged_config(load_config("denseaspp/denseaspp121_cityscapes", ["train.seed=5"]))
