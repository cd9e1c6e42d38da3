"""``make demo``: train the small CPU model on the built-in synthetic streets and report.

Runs ``atrous fit`` with the packaged config ``demo/denseaspp_resnet18_small`` (about ten minutes on 2
CPU cores, no downloads), then writes into the output folder (default ``runs/demo``):

* ``metrics.json`` — validation metrics of the best checkpoint (mIoU, per-class IoU, ...);
* ``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt``;
* ``overlays/*.png`` — validation images | prediction | ground truth;
* ``training_curves.png`` — loss per iteration, train and val mIoU per epoch;
* ``tb/`` and ``csv/`` logs.

Running it again resumes an interrupted run (or re-reports a finished one).
"""

from __future__ import annotations

from pathlib import Path

from .analysis.curves import plot_training_curves
from .analysis.overlays import save_overlays
from .config import CONFIG_ROOT, config_name, load_config
from .data.build import build_dataset
from .models.checkpoint import load_segmentor

DEMO_CONFIG = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"


def run_demo(output: Path, overrides: list[str] | None = None, num_overlays: int = 6) -> int:
    from .training.runner import fit, format_table

    cfg = load_config(DEMO_CONFIG, [f"train.output_dir={output}", *(overrides or [])])
    resume = (output / "checkpoints" / "last.ckpt").is_file()
    print(f"atrous demo: training {config_name(DEMO_CONFIG)} on the built-in synthetic streets"
          + (" (resuming the previous run)" if resume else ""))
    metrics = fit(cfg, resume=resume, overwrite=not resume)  # no checkpoint yet: an interrupted first epoch
    best = output / "checkpoints" / "best.ckpt"
    model, _ = load_segmentor(best, cfg)
    val = build_dataset(cfg["data"]["dataset"], cfg["data"]["val"], train=False)
    overlays = save_overlays(model, val, range(min(num_overlays, len(val))), output / "overlays")
    curves = plot_training_curves(output / "csv" / "metrics.csv", output / "training_curves.png",
                                  title="DenseASPP (ResNet-18, OS 8) on synthetic streets")
    print(format_table(metrics))
    print(f"\nResults in {output}/:")
    print(f"  metrics.json            validation mIoU {100 * metrics['mIoU']:.1f}% (best checkpoint)")
    print("  checkpoints/best.ckpt   best checkpoint by validation mIoU")
    print(f"  overlays/               {len(overlays)} validation images: image | prediction | ground truth")
    print(f"  {curves.name}    loss and mIoU curves")
    print(f"  tb/, csv/               TensorBoard and CSV logs (tensorboard --logdir {output}/tb)")
    return 0
