"""``atrous fit`` on 2 nodes × 1 process: two ``torchrun`` launches on 127.0.0.1 meeting through
c10d rendezvous, as two machines would, drive Lightning's DDP. The run equals the same job as 2
processes on one node, and its validation metrics (sharded across the nodes) equal ``atrous
validate`` of its checkpoint in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers_serve import free_port
from test_cli_training import CONFIG, _atrous

TORCHRUN = Path(sys.executable).with_name("torchrun")
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.slow
def test_two_nodes_train_as_two_processes_and_validate_as_one(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    port = free_port()
    # --verbose: Lightning's own line names each process' rank ("MEMBER: k/2"), hidden by default
    fit = ["-m", "atrous.cli", "fit", "--verbose", "--config", str(config), f"train.output_dir={tmp_path / 'nodes'}",
           "train.num_nodes=2", "train.devices=1", "train.strategy=ddp"]
    nodes = [subprocess.Popen([str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "atrous-test", *fit],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(err[-2000:] for _, err in outputs)
    assert sum(out.count("mIoU") for out, _ in outputs) == 1, "only global rank 0 reports"
    logs = ["".join(output) for output in outputs]
    assert sum("MEMBER: 2/2" in log for log in logs) == 1 and sum("MEMBER: 1/2" in log for log in logs) == 1

    one_node = _atrous("fit", "--config", str(config), f"train.output_dir={tmp_path / 'one_node'}",
                       "train.devices=2", "train.strategy=ddp", cwd=tmp_path)
    assert one_node.returncode == 0, one_node.stderr[-2000:]
    nodes_metrics = json.loads((tmp_path / "nodes" / "metrics.json").read_text())
    one_node_metrics = json.loads((tmp_path / "one_node" / "metrics.json").read_text())
    assert nodes_metrics["mIoU"] == one_node_metrics["mIoU"]
    assert nodes_metrics["per_class_iou"] == one_node_metrics["per_class_iou"]

    validated = _atrous("validate", "--config", str(config), "--checkpoint", str(tmp_path / "nodes" / "checkpoints" / "best.ckpt"),
                        "--output", str(tmp_path / "one_process"), cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr[-2000:]
    one_process = json.loads((tmp_path / "one_process" / "metrics.json").read_text())
    assert one_process["num_pixels"] == nodes_metrics["num_pixels"] == 5 * 64 * 128  # every image once
    assert one_process["mIoU"] == nodes_metrics["mIoU"]
    assert one_process["per_class_iou"] == nodes_metrics["per_class_iou"]
