"""Benchmarks: the JSON report's keys and sane values (no speed assertions), the peers are the
same networks as the atrous configs (same parameters, same outputs with the same weights),
clear errors, and the data-loading benchmark on Cityscapes-layout files."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_models import assert_identical, randomized_batchnorm

from atrous.cli import main
from atrous.config import CONFIG_ROOT, load_config
from atrous.data.cityscapes import Cityscapes
from atrous.deploy.benchmark import paired_ratio
from atrous.deploy.data_benchmark import benchmark_data, format_data_report, write_cityscapes_frames
from atrous.deploy.memory import LiveTensorMemory
from atrous.deploy.peers import (
    DENSEASPP121_CONFIG,
    TORCHVISION_CONFIG,
    TORCHVISION_OVERRIDES,
    PlainDenseASPP121,
    atrous_to_plain_keys,
    atrous_to_torchvision_keys,
    torchvision_deeplabv3_resnet50,
)
from atrous.models import build_model
from atrous.models.complexity import count_flops, count_parameters

DEMO = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_benchmark_json_has_the_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["benchmark", "--config", str(DEMO), "--image-size", "32", "64", "--repeats", "2", "--warmup", "1",
            "--threads", "1", "--fold-bn", "--output", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "inference: batch 1, 32×64" in table and "train: batch 2, 32×64" in table
    report = json.loads(out.read_text())
    assert set(report) >= {"machine", "settings", "models", "note"}
    assert report["settings"]["fold_bn"] and report["settings"]["repeats"] == 2
    (entry,) = report["models"]
    model = build_model(load_config(DEMO))
    assert entry["params"] == count_parameters(model)[0]
    inference_flops = count_flops(model, (32, 64))
    for phase, batch in (("inference", 1), ("train", 2)):
        r = entry[phase]
        assert r["batch"] == batch and r["image_size"] == [32, 64]
        lat = r["latency"]
        assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"]
        assert lat["images_per_s"] == pytest.approx(batch / (lat["median_ms"] / 1e3), rel=1e-3)
        assert len(lat["runs_ms"]) == 2 and lat["median_ms"] == pytest.approx(sum(lat["runs_ms"]) / 2, abs=1e-3)
        assert r["tflops_per_s"] == pytest.approx(r["gflops"] / lat["median_ms"], rel=0.02, abs=1e-4)
        assert r["peak_memory_mb"] > 0 and r["peak_rss_increase_mb"] >= 0 and r["memory_measure"].startswith("cpu")
    assert entry["inference"]["gflops"] == round(inference_flops / 1e9, 3)
    # forward + backward per image: the backward costs about twice the forward (less for the
    # stem, whose input needs no gradient).
    ratio = entry["train"]["gflops"] / (2 * entry["inference"]["gflops"])
    assert 2.5 < ratio <= 3.0


def test_plain_denseaspp121_is_the_same_network():
    model = randomized_batchnorm(build_model(load_config(DENSEASPP121_CONFIG)))
    plain = PlainDenseASPP121(num_classes=19)
    assert count_parameters(plain) == count_parameters(model) == (8_280_851, 8_280_851)
    plain.load_state_dict(atrous_to_plain_keys(model.state_dict()))  # strict: every key maps
    plain.eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))  # the same operations in the same order: bitwise equal on any CPU
    assert count_flops(plain, (64, 96)) == count_flops(model, (64, 96))


def test_torchvision_peer_has_the_atrous_architecture():
    cfg = load_config(TORCHVISION_CONFIG, [*TORCHVISION_OVERRIDES, "model.backbone.pretrained=false"])
    model = randomized_batchnorm(build_model(cfg))
    peer = torchvision_deeplabv3_resnet50(num_classes=21)
    assert count_parameters(peer)[0] == count_parameters(model)[0] == 39_638_869
    peer.load_state_dict(atrous_to_torchvision_keys(model.state_dict()))
    peer.eval().double()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():  # the same network and weights: float64 rounding only
        assert_identical(peer(x), model.double()(x))
    # The paper's configuration is a different network (multi-grid, no 3×3 refine conv).
    paper = build_model(load_config(DENSEASPP121_CONFIG.parents[1] / "deeplabv3" / "aspp_resnet50_os8.yaml",
                                    ["model.backbone.pretrained=false"]))
    assert count_parameters(paper)[0] == 39_048_533


def test_paired_ratio_compares_runs_of_the_same_round():
    # Round by round the ratios are 1.05, 1.1, 1.0; the medians compare runs of different rounds.
    ours = {"median_ms": 220.0, "runs_ms": [105.0, 220.0, 300.0]}
    peer = {"median_ms": 200.0, "runs_ms": [100.0, 200.0, 300.0]}
    assert paired_ratio(ours, peer) == {"of_medians": 1.1, "paired_median": 1.05, "paired_p10": 1.0, "paired_p90": 1.1}


def test_live_tensor_memory_counts_what_is_held_at_once():
    x = torch.ones(1024, 256)  # 1 MiB, existed before: not counted
    with LiveTensorMemory() as memory:
        a = x * 2  # +1 MiB
        b = a + 1  # +1 MiB (peak 2 MiB)
        del a  # -1 MiB
        b.add_(1)  # in place: nothing new
        c = b[:512]  # a view: nothing new
        d = torch.cat([b, c])  # +1.5 MiB (peak 2.5 MiB)
    assert memory.peak == int(2.5 * 2**20)
    assert memory.live == int(2.5 * 2**20) and d.numel() and c.numel()


def test_atrous_inference_holds_no_more_memory_than_the_plain_peer():
    """The backbone returns only the feature maps asked for: at inference the segmentor holds
    the last one, not every stage's output while later stages run."""
    model = build_model(load_config(DENSEASPP121_CONFIG)).eval()
    plain = PlainDenseASPP121(num_classes=19).eval()
    x = torch.randn(1, 3, 64, 128)
    peaks = []
    for net in (model, plain):
        with torch.no_grad(), LiveTensorMemory() as memory:
            net(x)
        peaks.append(memory.peak)
    assert peaks[0] == peaks[1]
    with torch.no_grad():
        features = model.backbone(x, ["block2"])
        assert list(features) == ["block2"]
        assert list(model.backbone(x)) == ["block1", "block2", "block3", "block4"]  # default: all
        with pytest.raises(ValueError, match="unknown feature"):
            model.backbone(x, ["layer4"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    assert main(["benchmark", "--config", str(DEMO), "--device", "cuda", "--repeats", "1"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_config_and_peers_are_exclusive(capsys):
    assert main(["benchmark"]) == 2
    assert main(["benchmark", "--config", str(DEMO), "--peers"]) == 2
    assert "either --config CONFIG, --peers or --peak" in capsys.readouterr().err


def test_data_benchmark_reads_cityscapes_layout(tmp_path):
    write_cityscapes_frames(tmp_path, count=2, size=(64, 128))
    dataset = Cityscapes(tmp_path, "train")
    assert len(dataset) == 2 and set(torch.unique(dataset[0][1]).tolist()) <= set(range(19))
    report = benchmark_data(tmp_path, repeats=2, train_images_per_s=3.0)
    assert report["frames"] == 2 and report["frame_size"] == [64, 128] and not report["synthetic_frames"]
    assert set(report["stages_ms"]) == {"image_decode", "label_decode", "label_mapping"}
    assert all(v > 0 for v in report["stages_ms"].values()) and report["decode_ms"] > 0
    assert 0 < report["cached_decode_ms"] and all(v > 0 for v in report["peers"].values())
    for name in ("augment", "denseaspp_report"):
        entry = report["pipelines"][name]
        assert entry["images_per_s_per_worker"] > 0 and entry["sample_ms"] > 0 and entry["transform_ms"] > 0
        assert entry["cached_images_per_s_per_worker"] > 0 and entry["cache_speedup"] > 0
        assert entry["workers_needed"] >= 1 and entry["cached_workers_needed"] >= 1
    assert report["pipelines"]["augment"]["v2_color_jitter_ratio"] > 0
    assert "color_jitter_ms" not in report["pipelines"]["denseaspp_report"]
    table = format_data_report(report, "given")
    assert "augment" in table and "denseaspp_report" in table and "training consumes 3.00 img/s" in table
    assert "decoded-frame cache" in table and "v2.ColorJitter" in table


def test_the_peak_probe_measures_every_probe_in_every_precision_against_fp32():
    from atrous.deploy.peak import PEAK_RATES, format_peak_table, peak_table

    report = peak_table(torch.device("cpu"), ("fp32", "bf16"), matmul_n=256, conv_size=(16, 32), repeats=2, warmup=1)
    rows = report["rows"]
    large = [r for r in PEAK_RATES if r > 1]
    assert len(rows) == 2 * (2 + len(PEAK_RATES) + len(large))  # tap-wise rows for the large rates
    aspp = [r for r in rows if r["op"] == "conv3x3" and r["shape"][1] == 2048 and r["precision"] == "fp32"]
    assert [r["dilation"] for r in aspp if not r["tapwise"]] == list(PEAK_RATES)
    assert [r["dilation"] for r in aspp if r["tapwise"]] == large
    assert all(r["vs_fp32"] == 1.0 for r in rows if r["precision"] == "fp32" and not r.get("tapwise"))
    assert all(r["tflops_per_s"] > 0 and r["vs_fp32"] > 0 for r in rows)
    table = format_peak_table(report)
    assert "| conv 3×3 2048→256 on 16×32, rate 36 | bf16 |" in table and table.count("\n") == len(rows) + 3
    assert "| conv 3×3 2048→256 on 16×32, rate 36, tap-wise | bf16 |" in table


@pytest.mark.slow
def test_benchmark_peak_from_the_command_line(tmp_path, capsys):
    assert main(["benchmark", "--peak", "--threads", "1", "--repeats", "1", "--output", str(tmp_path / "peak.json")]) == 0
    assert "| matmul 2048×2048×2048 | fp32 |" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "peak.json").read_text())["rows"]) == 18
