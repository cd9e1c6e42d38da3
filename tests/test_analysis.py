"""The analyses behind ``atrous analyze``: every computation against an independent computation
or a known answer (the report's receptive fields, brute-force valid-weight counts, a BFS for
connected components, hand-made label maps), then every subcommand once on a tiny checkpoint."""

from __future__ import annotations

import copy
import csv
import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_models import assert_identical, randomized_batchnorm
from torch import nn

from atrous.analysis.block_removal import block_removal, denseaspp_head, removed_top_layers
from atrous.analysis.common import class_ids
from atrous.analysis.confusion import confusion_matrix, confusion_summary, row_normalize
from atrous.analysis.effective_rf import (
    dense_path_fields,
    effective_receptive_field,
    head_receptive_fields,
    mass_square_side,
    square_mass,
    theoretical_receptive_field,
)
from atrous.analysis.object_size import (
    aggregate,
    bin_labels,
    connected_components,
    object_terms,
    objects_from_components,
    objects_from_instances,
)
from atrous.analysis.similarity import class_prototypes, labels_on_grid, similarity_maps
from atrous.analysis.stride_table import markdown_table, stride_table
from atrous.analysis.valid_weights import valid_weight_counts, valid_weight_curves
from atrous.cli import main
from atrous.data.base import ClassInfo
from atrous.data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from atrous.data.synthetic import SyntheticStreets
from atrous.data.transforms import build_transforms
from atrous.evaluation.metrics import metrics_from_confusion
from atrous.models import build_model
from atrous.models.heads import DenseASPPHead, Head
from atrous.models.receptive_field import ConvSpec

TINY_MODEL = {
    "num_classes": 19,
    "backbone": {"name": "resnet18", "output_stride": 8},
    "head": {"name": "denseaspp", "atrous_rates": [3, 6, 12], "bottleneck_channels": 16, "growth_channels": 8},
}
TINY_CONFIG = {
    "model": TINY_MODEL,
    "data": {"dataset": {"name": "synthetic", "image_size": [32, 64]}, "val": {"split": "val", "length": 3}},
}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    randomized_batchnorm(model)
    return model.eval()


@pytest.fixture(scope="module")
def val_set() -> SyntheticStreets:
    return SyntheticStreets("val", length=3, image_size=(32, 64), transforms=build_transforms(train=False))


# -- receptive fields ----------------------------------------------------------------------
@pytest.mark.parametrize(("rates", "expected"), [
    ((3, 6, 12, 18, 24), 127),  # report §4.1 and Table 1 #4
    ((3, 6, 9, 12), 61),  # Table 1 #1/#2
    ((6, 12, 18, 24), 121),  # Table 1 #3
    ((3, 6, 9, 12, 18, 24), 145),  # Table 1 #5
])
def test_head_receptive_fields_match_the_seed(rates, expected):
    fields = head_receptive_fields(DenseASPPHead(16, rates, growth_channels=4, bottleneck_channels=8))
    assert fields["max_rf"] == expected
    assert [lay["layer_rf"] for lay in fields["layers"]] == [2 * r + 1 for r in rates]  # (d−1)(3−1)+3
    assert fields["layers"][-1]["stacked_rf"] == expected
    # Every subset of layers is a path: 2^L − 1 paths, each of field 1 + 2·Σd.
    paths = fields["scales"]
    assert sum(paths.values()) == 2 ** len(rates) - 1
    brute: dict[int, int] = {}
    for mask in range(1, 2 ** len(rates)):
        rf = 1 + 2 * sum(r for i, r in enumerate(rates) if mask >> i & 1)
        brute[rf] = brute.get(rf, 0) + 1
    assert paths == dict(sorted(brute.items()))


def test_dense_paths_outnumber_parallel_branches():
    assert len(dense_path_fields((3, 6, 12, 18, 24))) == 21  # 7, 13, …, 127 in steps of 6
    fields = head_receptive_fields(build_model({"num_classes": 3, "backbone": {"name": "resnet18", "output_stride": 16},
                                                "head": {"name": "aspp", "atrous_rates": [6, 12, 18]}}).head)
    assert fields["scales"] == {1: 1, 13: 1, 25: 1, 37: 1} and fields["global_context"]


def test_erf_of_a_single_conv_is_its_weights():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(5, 3, 9, 11)
    erf = effective_receptive_field(conv, x)
    with torch.no_grad():
        predicted = conv(x)[:, :, 4, 5].argmax(1)
    expected = torch.zeros(9, 11)
    expected[3:6, 4:7] = torch.stack([conv.weight[k].abs().sum(0) for k in predicted]).mean(0)
    torch.testing.assert_close(erf, expected.detach())
    summed = effective_receptive_field(conv, x, target="sum")
    torch.testing.assert_close(summed[3:6, 4:7], conv.weight.sum(0).abs().sum(0).detach())


def test_erf_of_stacked_atrous_convs_fills_exactly_the_theoretical_field():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.Conv2d(4, 2, 3, padding=3, dilation=3))
    theory = theoretical_receptive_field(model, (32, 32))
    assert theory["input_pixels"] == 1 + 2 * 2 + 2 * 3 == 11
    erf = effective_receptive_field(model, torch.randn(2, 3, 31, 31))
    rows, cols = torch.nonzero(erf > 0, as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 20, 10, 20)  # 11×11 around (15, 15)


def test_erf_of_a_segmentor_is_zero_outside_its_theoretical_field():
    torch.manual_seed(3)
    model = build_model({"num_classes": 5, "backbone": {"name": "resnet18", "output_stride": 32}, "head": {"name": "fcn"}})
    randomized_batchnorm(model)
    theory = theoretical_receptive_field(model, (64, 512))
    # ResNet-18: 7×7/2 conv, 3×3/2 pool, 16 3×3 convs at input strides 4…32 = 435; + one step of 32 to upsample.
    assert theory["backbone"] == 435 and theory["input_pixels"] == 467
    erf = effective_receptive_field(model.eval(), torch.randn(2, 3, 64, 512))
    columns = torch.nonzero(erf.sum(0) > 0).flatten()
    width = int(columns.max() - columns.min()) + 1
    assert theory["input_pixels"] - 32 < width <= theory["input_pixels"]  # tight to one output-stride step
    # Strided convolutions centre feature j at input s·j, the upsampling at s·j + (s − 1)/2: the
    # field sits (s − 1)/2 = 15.5 pixels left of the output pixel.
    assert int(columns.min()) + width / 2 == pytest.approx(256 - 15.5, abs=1)
    mass = square_mass(erf)
    assert mass[-1] == pytest.approx(1.0) and np.all(np.diff(mass) >= 0)


def test_mass_square_side():
    erf = torch.zeros(11, 11)
    erf[5, 5], erf[5, 7], erf[0, 0] = 5.0, 4.0, 1.0  # centre, distance 2, distance 5
    mass = square_mass(erf)
    assert mass_square_side(mass, 0.5) == 1 and mass_square_side(mass, 0.9) == 5 and mass_square_side(mass, 1.0) == 11


# -- valid weights -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(9, 9), (7, 11)])
def test_valid_weight_counts_match_brute_force(size):
    ones = torch.ones(1, 1, *size)
    for rate in range(1, 14):
        taps = F.conv2d(ones, torch.ones(1, 1, 3, 3), padding=rate, dilation=rate).long().flatten()
        brute = {v: int((taps == v).sum()) for v in (1, 2, 3, 4, 6, 9)}
        assert valid_weight_counts(size, rate) == brute


def test_valid_weights_reproduce_deeplabv3_fig4():
    curves = valid_weight_curves(65)
    nine, four, one = curves["fractions"][9], curves["fractions"][4], curves["fractions"][1]
    assert nine[0] == pytest.approx(63**2 / 65**2)  # rate 1: all but the border see 9 taps
    assert one[64] == 1.0 and curves["rates"][64] == 65  # rate ≥ N: only the centre tap
    assert max(range(65), key=lambda i: four[i]) + 1 in (32, 33)  # 4 valid weights peak halfway
    assert all(a >= b for a, b in zip(nine, nine[1:], strict=False))


# -- block removal -------------------------------------------------------------------------
@pytest.mark.parametrize("official", [False, True])  # input first / new features first
def test_removing_top_layers_equals_zeroing_their_outputs(official):
    torch.manual_seed(4)
    head = DenseASPPHead(16, (3, 6, 12, 18), growth_channels=4, bottleneck_channels=8, official=official)
    randomized_batchnorm(head)
    head.eval().double()
    x = torch.randn(2, 16, 12, 14, dtype=torch.float64)
    full = head(x)
    # identities (the same layers, some of them fed zeros): float64 rounding only
    with removed_top_layers(head, 0):
        assert_identical(head(x), full)
    for k in range(1, 5):
        zeroed = copy.deepcopy(head)
        for layer in zeroed.layers[4 - k:]:
            layer.conv2.weight.data.zero_()  # no output norm: without bias, the layer outputs zeros
            if layer.conv2.bias is not None:
                layer.conv2.bias.data.zero_()
        with removed_top_layers(head, k):
            assert_identical(head(x), zeroed(x))
    with removed_top_layers(head, 4):
        alone = head(x)
    parts = [x, torch.zeros(2, 16, 12, 14, dtype=torch.float64)]  # the input, then zeros
    assert_identical(alone, torch.cat(parts[::-1] if official else parts, 1))
    assert not any(layer._forward_hooks for layer in head.layers)  # restored
    assert list(head.state_dict()) == list(copy.deepcopy(head).state_dict())
    with pytest.raises(ValueError, match="0 to 4"):
        with removed_top_layers(head, 5):
            pass


def test_block_removal_rows_and_examples(tiny_model, val_set):
    result = block_removal(tiny_model, val_set, [0, 1], examples=1, batch_size=2)
    assert [r["removed"] for r in result["rows"]] == [0, 1, 2, 3]
    assert [r["max_rf"] for r in result["rows"]] == [43, 19, 7, 1]
    assert [r["rates"] for r in result["rows"]] == [[3, 6, 12], [3, 6], [3], []]
    # k = 0 is the ordinary evaluation.
    plain = confusion_matrix(tiny_model, val_set, [0, 1])
    assert torch.equal(result["rows"][0]["confusion"].long(), plain)
    (index, preds), = result["predictions"].items()
    assert preds.shape == (4, 32, 64) and index == max(result["changed_pixels"], key=result["changed_pixels"].get)
    assert not any(layer._forward_hooks for layer in tiny_model.head.layers)


class _TwoBranchHead(Head):
    """A head that is not DenseASPP: two parallel atrous convolutions, summed."""

    def __init__(self) -> None:
        super().__init__()
        self.in_channels = self.out_channels = 2
        self.layers = nn.ModuleList(nn.Conv2d(2, 2, 3, padding=d, dilation=d) for d in (1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[0](x) + self.layers[1](x)

    def conv_path(self) -> list[ConvSpec]:
        return [ConvSpec(3, 1), ConvSpec(3, 2)]

    def removable_layers(self) -> list[tuple[nn.Module, ConvSpec]]:
        return list(zip(self.layers, self.conv_path(), strict=True))


def test_the_analyses_ask_the_head_contract_not_the_head_type():
    head = _TwoBranchHead().double()
    fields = head_receptive_fields(head)  # the default path_fields(): one chain, conv_path()
    assert fields["scales"] == {3: 1, 7: 1} and fields["parallel_scales"] == [3, 5]
    assert denseaspp_head(build_model({"num_classes": 3, "backbone": {"name": "resnet18", "output_stride": 8},
                                       "head": {"name": "denseaspp", "atrous_rates": [3, 6]}})).removable_layers()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    with removed_top_layers(head, 1):  # any head offering removable layers
        assert_identical(head(x), head.layers[0](x))
    assert not any(layer._forward_hooks for layer in head.layers)


def test_block_removal_needs_denseaspp():
    fcn = build_model({"num_classes": 3, "backbone": {"name": "resnet18", "output_stride": 8}, "head": {"name": "fcn"}})
    with pytest.raises(ValueError, match="DenseASPP head; this model's head is FCNHead"):
        denseaspp_head(fcn)


# -- feature similarity --------------------------------------------------------------------
def test_labels_on_grid_takes_cell_centres():
    labels = torch.arange(64).reshape(1, 8, 8)
    assert labels_on_grid(labels, (2, 2)).tolist() == [[[2 * 8 + 2, 2 * 8 + 6], [6 * 8 + 2, 6 * 8 + 6]]]


def test_similarity_of_a_known_class_pattern():
    torch.manual_seed(5)
    a, b = torch.zeros(6), torch.zeros(6)
    a[0], b[1] = 1.0, 1.0
    labels = torch.zeros(2, 4, 5, dtype=torch.long)
    labels[:, :, 3:] = 1  # class 1 on the right
    features = torch.where(labels[:, None] == 0, a[None, :, None, None], b[None, :, None, None])
    features = features * torch.rand(2, 1, 4, 5).add(0.5) + 0.01 * torch.randn(2, 6, 4, 5)
    protos = class_prototypes(features, labels, [0, 1, 7])
    assert torch.isnan(protos[2]).all()  # class 7 is absent
    maps = similarity_maps(features, protos[:2])
    independent = torch.stack([F.cosine_similarity(features, p[None, :, None, None], dim=1) for p in protos[:2]], 1)
    torch.testing.assert_close(maps, independent)
    assert (maps[:, 0][labels == 0] > 0.95).all() and (maps[:, 0][labels == 1].abs() < 0.1).all()
    assert (maps[:, 1][labels == 1] > 0.95).all()


# -- object size ---------------------------------------------------------------------------
def _bfs_components(mask: np.ndarray) -> list[set[tuple[int, int]]]:
    seen, out = np.zeros_like(mask, bool), []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        comp, queue = set(), deque([start])
        seen[start] = True
        while queue:
            r, c = queue.popleft()
            comp.add((r, c))
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        out.append(comp)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_connected_components_match_bfs(seed):
    mask = np.random.default_rng(seed).random((23, 31)) < 0.45
    labels, n = connected_components(mask)
    expected = _bfs_components(mask)
    assert n == len(expected)
    found = [set(zip(*np.nonzero(labels == k), strict=True)) for k in range(1, n + 1)]
    assert sorted(map(sorted, found)) == sorted(map(sorted, expected))
    assert (labels > 0).sum() == mask.sum()


def test_object_iou_on_a_hand_made_map():
    car, bus = 13, 15
    truth = np.zeros((40, 40), dtype=np.int64)
    truth[2:6, 2:6] = car  # 16 px: size 4
    truth[10:30, 10:30] = car  # 400 px: size 20
    truth[33:37, 30:39] = bus  # 36 px: size 6
    truth[0, 39] = 255
    pred = np.zeros_like(truth)
    pred[2:4, 2:6] = car  # half the small car
    pred[10:30, 10:30] = car  # the whole big car ...
    pred[10:12, 30:32] = car  # ... whose box is 10:30: these 4 px are outside it
    pred[28:30, 8:10] = car  # outside too
    pred[12:14, 12:14] = bus  # 4 px of the big car missed
    pred[0, 39] = car  # ignored pixel: never a false positive
    objects, owners = objects_from_components(truth, [car, bus])
    assert sorted(owners.values()) == [car, car, bus]
    terms = {(t["class"], t["area"]): t for t in object_terms(pred, truth, objects, owners)}
    assert terms[(car, 16)]["intersection"] == 8 and terms[(car, 16)]["union"] == 16
    assert terms[(car, 400)]["intersection"] == 396 and terms[(car, 400)]["union"] == 400
    assert terms[(bus, 36)]["intersection"] == 0 and terms[(bus, 36)]["union"] == 36
    classes = ClassInfo(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE)
    table = aggregate(list(terms.values()), [car, bus], classes, edges=(8, 16))["table"]
    assert table["car"]["<8"] == {"objects": 1, "pixels": 16, "iou": 0.5, "recall": 0.5}
    assert table["car"]["≥16"]["iou"] == pytest.approx(396 / 400)
    assert table["all"]["<8"]["iou"] == pytest.approx(8 / 52) and table["bus"]["8–16"]["objects"] == 0
    assert bin_labels((8, 16)) == ["<8", "8–16", "≥16"]
    # Two touching cars are one component but two instances.
    instances = np.zeros_like(truth)
    instances[10:30, 10:20], instances[10:30, 20:30] = 1, 2
    objects, owners = objects_from_instances(truth, instances, [car], [car])
    assert sorted((objects == k).sum() for k in owners) == [16, 200, 200]


# -- stride table and confusion ------------------------------------------------------------
@pytest.mark.slow
def test_stride_table_rows_and_feature_sizes(tiny_model, val_set):
    result = stride_table(tiny_model, val_set, [0, 1], scales=(1.0, 1.25), batch_size=2)
    rows = result["rows"]
    assert [(r["output_stride"], r["strategy"]) for r in rows] == [
        (s, name) for s in (8, 16, 32) for name in ("single scale", "+ flip", "+ multi-scale", "+ multi-scale + flip")
    ]
    assert {r["output_stride"]: r["feature_size"] for r in rows} == {8: [4, 8], 16: [2, 4], 32: [1, 2]}
    assert tiny_model.output_stride == 8 and result["trained_output_stride"] == 8
    plain = metrics_from_confusion(confusion_matrix(tiny_model, val_set, [0, 1]))
    assert rows[0]["mIoU"] == pytest.approx(plain["mIoU"])  # single scale at the trained stride
    assert rows[3]["scales"] == [1.0, 1.25] and rows[3]["flip"]
    table = markdown_table(result).splitlines()
    assert table[0] == "| OS=8 (trained) | OS=16 | OS=32 | MS | Flip | mIOU |" and len(table) == 2 + 12
    assert table[-1].startswith("|  |  | ✓ | ✓ | ✓ |")  # output stride 32, multi-scale + flip


def test_confusion_summary():
    confusion = torch.zeros(19, 19, dtype=torch.long)
    confusion[13, 13], confusion[13, 14], confusion[14, 14], confusion[15, 14] = 90, 10, 50, 30
    summary = confusion_summary(confusion, ClassInfo(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE))
    assert summary["classes"] == ["car", "truck", "bus"]
    torch.testing.assert_close(summary["row_normalized"], torch.tensor(
        [[0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64))
    assert summary["top_confusions"][0] == {"truth": "bus", "predicted": "truck", "fraction_of_truth": 1.0}
    assert row_normalize(torch.zeros(2, 2)).sum() == 0


def test_class_names_are_checked():
    assert class_ids(CITYSCAPES_CLASSES, ["car", "road"]) == [13, 0]
    with pytest.raises(ValueError, match="unknown class name"):
        class_ids(CITYSCAPES_CLASSES, ["lorry"])


# -- the command line ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model) -> Path:
    """A tiny random model saved as ``atrous fit`` saves it, with a CSV log beside it."""
    run = tmp_path_factory.mktemp("run")
    state = {f"model.{k}": v for k, v in tiny_model.state_dict().items()}
    hparams = {"config": TINY_CONFIG, "class_names": list(CITYSCAPES_CLASSES), "ignore_index": 255}
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": state, "hyper_parameters": hparams}, run / "checkpoints" / "best.ckpt")
    (run / "csv").mkdir()
    with open(run / "csv" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "step", "train/loss_step", "val/loss", "val/mIoU", "train/mIoU", "val/IoU/car"])
        writer.writeheader()
        for epoch in range(2):
            writer.writerow({"epoch": epoch, "step": 2 * epoch + 1, "train/loss_step": 1.0 / (epoch + 1)})
            writer.writerow({"epoch": epoch, "step": 2 * epoch + 2, "val/loss": 0.9, "val/mIoU": 0.2 * (epoch + 1),
                             "train/mIoU": 0.1 * (epoch + 1), "val/IoU/car": 0.3})
    return run / "checkpoints" / "best.ckpt"


SUBCOMMANDS = {
    "receptive-field": [],
    "valid-weights": ["--size", "33"],
    "similarity": ["--classes", "car", "road", "--rows", "2"],
    "block-removal": [],
    "object-size": ["--bins", "4", "16"],
    "stride": ["--scales", "1.0", "1.25", "--output-strides", "8", "16", "--num-images", "1"],
    "confusion": [],
    "curves": [],
}


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_writes_png_and_json(name, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["analyze", name, "--checkpoint", str(checkpoint), "--num-images", "2", "--output", str(out),
                 "--device", "cpu", *SUBCOMMANDS[name]])
    assert code == 0, capsys.readouterr().err
    file = name.replace("-", "_")
    assert (out / f"{file}.png").stat().st_size > 10_000
    data = json.loads((out / f"{file}.json").read_text())
    assert data["analysis"] == name and data["weights"] == str(checkpoint)
    assert not list(out.glob(".*")), "no temporary files left behind"
    if name == "receptive-field":
        assert data["head"]["max_rf"] == 43 and data["erf"]["num_images"] == 2
    if name == "valid-weights":
        assert [p["size"] for p in data["panels"]] == [[33, 33], [4, 8]]
    if name == "stride":
        assert len(data["rows"]) == 8 and "Tables 4/6" in data["measured"]
    if name == "curves":
        assert data["val_mIoU"] == [[1.0, 0.2], [2.0, 0.4]]


def test_analyze_all_and_defaults(checkpoint, capsys):
    code = main(["analyze", "all", "--checkpoint", str(checkpoint), "--num-images", "1", "--scales", "1.0",
                 "--output-strides", "8", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    out = checkpoint.parent.parent / "analysis"  # default: <run>/analysis
    for name in SUBCOMMANDS:
        assert (out / f"{name.replace('-', '_')}.png").is_file() and (out / f"{name.replace('-', '_')}.json").is_file()


def test_analyze_errors_are_clear(checkpoint, tmp_path, capsys):
    assert main(["analyze", "similarity", "--checkpoint", str(checkpoint), "--classes", "lorry",
                 "--output", str(tmp_path)]) == 2
    assert "unknown class name(s) ['lorry']" in capsys.readouterr().err
    assert main(["analyze", "confusion", "--output", str(tmp_path)]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err
    assert main(["analyze", "curves", "--run", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert "no training log" in capsys.readouterr().err
    # valid-weights needs no model at all
    assert main(["analyze", "valid-weights", "--output", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "valid_weights.json").read_text())["panels"][0]["size"] == [65, 65]
