"""`make demo`'s code path, shrunk: it trains, evaluates and writes everything it promises."""

from __future__ import annotations

import json

from PIL import Image

from atrous.demo import run_demo


def test_demo_writes_metrics_checkpoint_overlays_and_curves(tmp_path, capsys):
    out = tmp_path / "demo"
    tiny = [
        "data.dataset.image_size=[64, 128]", "data.train.length=8", "data.val.length=2",
        "data.train.transforms.crop_size=[64, 128]", "data.num_workers=0", "train.max_epochs=1",
        "train.progress_bar=false",
    ]
    assert run_demo(out, tiny) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["mIoU"] <= 1 and "bus" in metrics["per_class_iou"]
    assert (out / "checkpoints" / "best.ckpt").is_file()
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 2
    with Image.open(overlays[0]) as im:  # three enlarged 64x128 panels under a title strip
        assert im.size == (3 * 128 * 4, 64 * 4 + 22)
    assert (out / "training_curves.png").stat().st_size > 10_000
    assert str(out) in printed and "mIoU" in printed
    # Running it again resumes/re-reports instead of starting over.
    assert run_demo(out, tiny) == 0
    assert "resuming" in capsys.readouterr().out
