"""``atrous encoders --table``: the verified family table of timm encoders (docs/encoders.md).

One representative per timm family (:data:`REPRESENTATIVES`), at output stride 16 and 8. Per
row: whether it builds; timm's own ``output_stride`` and atrous' regridding (the method used is
the first that is exact), each as dilated-vs-strided agreement on the sampling grid
(:func:`~atrous.models.backbones.grid_check.grid_agreement`, float64); declared = measured
feature strides; parameters; GFLOPs at 512×1024; and export parity: the encoder's last map in
onnxruntime and OpenVINO against eager PyTorch (float32, largest difference relative to the
largest feature). ``tests/test_encoder_table.py`` re-measures a fixed subset against the
published page.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..models.backbones.base import check_output_stride
from ..models.backbones.grid_check import grid_agreement
from ..models.backbones.timm_backbone import TimmBackbone, _create, build_dilated, timm_family
from ..models.backbones.timm_families import REFUSED
from ..models.complexity import count_flops, count_parameters

# (model, why this one) — one per timm family; a few families twice where a variant dilates differently.
REPRESENTATIVES: tuple[str, ...] = (
    "resnet18", "resnet18d", "seresnet18", "resnest14d", "res2net50_14w_8s", "skresnet18", "legacy_seresnet18",
    "resnetv2_50", "regnetx_002", "regnety_002", "efficientnet_b0", "tf_efficientnet_b0", "mobilenetv2_050",
    "mixnet_s", "efficientnetv2_rw_t", "mobilenetv3_small_050", "mobilenetv4_conv_small", "lcnet_050",
    "hardcorenas_a", "ghostnet_050", "repghostnet_050", "repvgg_a0", "mobileone_s0", "gernet_s", "dla34",
    "dpn48b", "ese_vovnet19b_slim_dw", "cspresnet50", "darknet17", "xception41", "nf_resnet26", "rexnet_100",
    "selecsls42b", "vgg11", "convnext_atto", "inception_next_tiny", "hgnetv2_b0", "repvit_m0_9",
    "fasternet_t0", "starnet_s1", "mambaout_femto", "poolformer_s12", "fastvit_t8", "efficientvit_b0",
    "mobilevitv2_050", "hrnet_w18_small", "densenet121", "inception_v3",
)
OUTPUT_STRIDES = (16, 8)
PARITY_SIZE = (64, 96)


@dataclass
class EncoderRow:
    """One model at one output stride."""

    model: str
    family: str
    output_stride: int
    method: str = ""  # "timm" | "atrous" | "" (refused)
    timm_agreement: str = ""
    atrous_agreement: str = ""
    strides: str = ""  # "4 8 16 16 ✓" (declared = measured) or the mismatch
    params_m: float | None = None
    gflops: float | None = None
    onnx: str = ""
    openvino: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return bool(self.method)


def _agreement(strided: nn.Module, model: str, method: str, output_stride: int) -> tuple[str, bool]:
    try:
        dilated = build_dilated(model, method, output_stride, 3, None, {"pretrained": False})
    except Exception as err:  # noqa: BLE001 - a family timm or atrous cannot dilate: the table says why
        return f"fails: {(str(err).strip() or type(err).__name__)[:70]}", False
    a = grid_agreement(strided, dilated, output_stride)
    text = "exact" if a.verdict == "exact" else f"{a.verdict} ({a.relative_difference:.0e})"
    return text, a.verdict == "exact"


class _LastMap(nn.Module):
    def __init__(self, backbone: TimmBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return next(reversed(self.backbone(x).values()))


def export_parity(backbone: TimmBackbone, folder: Path) -> tuple[str, str]:
    """Largest |ONNX − eager| and |OpenVINO − eager| relative to the largest feature, on one input."""
    from ..engines.export import export_model
    from ..engines.openvino_engine import openvino_core

    net = _LastMap(backbone).eval()
    path = folder / f"{backbone.model_name}_os{backbone.output_stride}.onnx"
    export_model(net, path, "onnx", image_size=PARITY_SIZE, batch=1, dynamic=False, verify=False)
    x = torch.randn(1, 3, *PARITY_SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x)
    scale = float(expected.abs().max())
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    compiled = openvino_core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ov = torch.from_numpy(compiled(x.numpy())[compiled.outputs[0]])
    del compiled
    return (f"{float((ort - expected).abs().max()) / scale:.0e}", f"{float((ov - expected).abs().max()) / scale:.0e}")


def measure(model: str, output_stride: int, *, export: bool = True, folder: Path | None = None) -> EncoderRow:
    """One row of the table (see the module docstring)."""
    check_output_stride(output_stride)
    family = timm_family(model)
    row = EncoderRow(model, family, output_stride)
    if family in REFUSED:
        row.note = REFUSED[family]
        return row
    try:
        strided = _create(model, 32, 3, None, {"pretrained": False})
    except Exception as err:  # noqa: BLE001
        row.note = f"timm cannot build it: {str(err)[:80]}"
        return row
    row.timm_agreement, timm_ok = _agreement(strided, model, "timm", output_stride)
    row.atrous_agreement, atrous_ok = _agreement(strided, model, "atrous", output_stride)
    row.method = "timm" if timm_ok else "atrous" if atrous_ok else ""
    if not row.method:
        row.note = "neither method is exact on the grid: refused"
        return row
    backbone = TimmBackbone(model, output_stride=output_stride).eval()
    x = torch.zeros(1, 3, 64, 96)
    with torch.no_grad():
        measured = [64 // f.shape[-2] for f in backbone(x).values()]
    declared = [f.stride for f in backbone.feature_info]
    row.strides = " ".join(map(str, declared)) + (" ✓" if declared == measured else f" ✗ measured {measured}")
    row.params_m = count_parameters(backbone)[0] / 1e6
    row.gflops = count_flops(backbone, (512, 1024)) / 1e9
    if export:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                row.onnx, row.openvino = export_parity(backbone, Path(folder or tmp))
        except Exception as err:  # noqa: BLE001 - an export failure is a finding of the table
            row.onnx = f"fails: {type(err).__name__}"
    return row


HEADER = (
    "| family | model | OS | timm's output_stride | atrous' regridding | used | declared = measured strides "
    "| params (M) | GFLOPs 512×1024 | ONNX Δ | OpenVINO Δ |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def _num(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def render(rows: Sequence[EncoderRow]) -> str:
    """The markdown table (one line per row; refused rows say why)."""
    lines = [HEADER]
    for r in rows:
        if not r.method and r.note and not r.timm_agreement:
            lines.append(f"| {r.family} | {r.model} | {r.output_stride} | refused: {r.note} | | — | | | | | |")
            continue
        lines.append(
            f"| {r.family} | {r.model} | {r.output_stride} | {r.timm_agreement} | {r.atrous_agreement} | "
            f"{r.method or 'refused'} | {r.strides} | {_num(r.params_m, '.2f')} | {_num(r.gflops, '.1f')} | {r.onnx} | {r.openvino} |"
        )
    return "\n".join(lines) + "\n"


def summary(rows: Sequence[EncoderRow]) -> str:
    """One sentence: how many models and families are proven at both output strides."""
    proven = {(r.model, r.output_stride) for r in rows if r.usable}
    both = [r for r in rows if (r.model, 8) in proven and (r.model, 16) in proven]
    by_atrous = {r.model for r in rows if r.method == "atrous"}
    return (f"{len({r.model for r in both})} of {len({r.model for r in rows})} models "
            f"({len({r.family for r in both})} of {len({r.family for r in rows})} families) are proven at output "
            f"stride 8 and 16; {len(by_atrous)} of them need atrous' regridding at one stride or both.\n")


def parse(markdown: str) -> dict[tuple[str, int], dict[str, str]]:
    """The rows of a rendered table, by (model, output stride)."""
    names = [c.strip() for c in HEADER.splitlines()[0].strip("|").split("|")]
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(names) and cells[2].isdigit():
            rows[(cells[1], int(cells[2]))] = dict(zip(names, cells, strict=True))
    return rows


def build_table(models: Sequence[str] = REPRESENTATIVES, *, export: bool = True,
                progress: Callable[[str], None] | None = None) -> list[EncoderRow]:
    """Measure every model at output stride 16 and 8 (a progress bar on stderr)."""
    from tqdm import tqdm

    rows = []
    with tqdm(total=len(models) * len(OUTPUT_STRIDES), desc="encoders", unit="row") as bar:
        for model in models:
            for os_ in OUTPUT_STRIDES:
                bar.set_postfix_str(f"{model} OS {os_}")
                rows.append(measure(model, os_, export=export))
                if progress:
                    progress(render(rows[-1:]).splitlines()[-1])
                bar.update()
    return rows
