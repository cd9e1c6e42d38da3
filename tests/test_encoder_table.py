"""The verified family table (docs/encoders.md, ``atrous encoders --table``) stays true: a fixed
subset is re-measured against the published rows, and what the backbones trust
(``timm_families.VERIFIED``) is exactly what the page shows proven."""

from __future__ import annotations

from pathlib import Path

import pytest

from atrous.cli import main
from atrous.deploy.encoder_table import measure, parse, render
from atrous.models.backbones.timm_families import VERIFIED

pytestmark = pytest.mark.usefixtures("one_thread")
PAGE = Path(__file__).resolve().parents[1] / "docs" / "encoders.md"
ROWS = parse(PAGE.read_text())
# timm's dilation exact; timm's misaligned and atrous' exact; timm's missing
SUBSET = [("regnetx_002", 16), ("convnext_atto", 8), ("ghostnet_050", 8)]
COLUMNS = ["family", "timm's output_stride", "atrous' regridding", "used", "declared = measured strides",
           "params (M)", "GFLOPs 512×1024"]


@pytest.mark.parametrize(("model", "output_stride"), SUBSET)
def test_published_rows_are_remeasured(model, output_stride):
    row = parse(render([measure(model, output_stride, export=False)]))[(model, output_stride)]
    published = ROWS[(model, output_stride)]
    assert {c: row[c] for c in COLUMNS} == {c: published[c] for c in COLUMNS}
    assert float(published["ONNX Δ"]) < 1e-4 and float(published["OpenVINO Δ"]) < 1e-4


def test_the_backbones_trust_exactly_the_published_proofs():
    shown = {key: row["used"] for key, row in ROWS.items() if row["used"] in ("timm", "atrous")}
    assert VERIFIED == shown
    families = {row["family"] for row in ROWS.values()}
    usable = {row["family"] for (m, _), row in ROWS.items() if (m, 8) in shown and (m, 16) in shown}
    assert len(families) >= 30 and len(usable) >= 20
    assert all("✓" in ROWS[key]["declared = measured strides"] for key in shown)


def test_the_table_command_needs_the_markers(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("no markers\n")
    assert main(["encoders", "--table", "--models", "regnetx_002", "--output", str(page)]) == 2
    assert "encoders:start" in capsys.readouterr().err
    assert page.read_text() == "no markers\n"
