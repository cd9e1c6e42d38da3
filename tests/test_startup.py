"""The command line starts without torch: ``atrous --help``, every ``atrous <command> --help``
and ``import atrous`` load none of the heavy libraries (scripts/bench_startup.py measures the
time and memory this saves); the public names still import on first use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import atrous
from atrous.models.choices import CONVERT_FORMATS
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
    import pytest

    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        atrous.no_such_name  # noqa: B018


def test_the_convert_formats_the_command_line_offers_are_the_converters():
    assert CONVERT_FORMATS == tuple(SOURCE_FORMATS)
