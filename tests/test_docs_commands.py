"""Every shell command in the README and docs/*.md runs, from a folder outside the checkout, on
a tiny trained run of the demo config (2 steps at 64x128): the ``atrous ...`` lines of each page's
```bash blocks, in order, as a user would type them.

The placeholders the pages use exist: ``runs/mine``, ``runs/demo``, ``runs/x`` (copies of the
tiny run), ``CKPT``, ``CONFIG`` (a tiny config), ``photos/``, ``frames/``, ``aerial/``,
``drive.mp4``, ``leftImg8bit/{val,test}`` and ``data/cityscapes`` (a Cityscapes fixture),
``my_data.yaml``... ``atrous fit --config demo/denseaspp_resnet18_small`` gets tiny-size
overrides placed before the page's own (which win). Optional ``[--option VALUE]`` parts are
passed, the first of ``a|b`` alternatives taken, ``[--option ...]`` left out. A command followed
by a ``# atrous: error: ...`` line (or listed in :data:`EXPECTED_ERRORS`) must fail with that
one-line error. :data:`SKIPPED` lists, with the reason, what cannot run here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_data import write_cityscapes
from fixtures_user_data import write_folder
from PIL import Image

from atrous.cli import main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DEMO = "demo/denseaspp_resnet18_small"
TINY = ["data.dataset.image_size=[64,128]", "data.train.length=4", "data.val.length=2", "data.test.length=2",
        "data.train.transforms.crop_size=[64,128]", "data.batch_size=2", "data.num_workers=0",
        "train.max_epochs=1", "train.max_steps=2", "train.progress_bar=false", "train.accelerator=cpu"]

# command prefix → why it cannot run in this test (and where what it does is tested instead)
SKIPPED = {
    "make ": "make targets run the whole suite / demo / wheel build (CI runs them)",
    "pip ": "installs the wheel into an environment (make wheel-check does it)",
    "curl ": "a download; this machine is offline",
    "mkdir ": "part of placing downloaded weights (the offline weights cache: test_published_weights.py)",
    "cp ": "part of placing downloaded weights",
    "mv ": "part of placing downloaded weights",
    "atrous weights deeplabv3-resnet50-coco-voc": "downloads published weights (file:// registry: test_published_weights.py)",
    "atrous weights denseaspp161-cityscapes": "needs the official DenseASPP161 file placed by hand",
    "--weights ": "downloads published weights (file:// registry: test_published_weights.py)",
    "atrous convert --from denseaspp-official": "needs the official DenseASPP161 weights (conversion: test_convert.py)",
    "atrous validate --checkpoint runs/denseaspp161.ckpt": "the converted official DenseASPP161 (a command above)",
    "atrous predict leftImg8bit/test --checkpoint runs/denseaspp161.ckpt": "the converted official DenseASPP161",
    "atrous convert --from torchvision-deeplabv3": "torchvision's DeepLabV3-ResNet50 weights: a download, or a file "
                                                   "of 40M weights (conversion: test_convert.py)",
    "atrous validate --config denseaspp_report/": "a trained paper-size model (DenseNet-121 at 512x1024) and Cityscapes "
                                                  "(the strategies: test_evaluation_matrix.py)",
    "atrous validate --config deeplabv3/": "trained ResNet-101 DeepLabv3 models on VOC (the strategies and --sweep: "
                                           "test_evaluation_matrix.py, test_evaluation_protocols.py)",
    "OS16=": "a path of the skipped ResNet-101 commands below it",
    "OS8=": "a path of the skipped ResNet-101 commands below it",
    "atrous benchmark --config denseaspp/": "times a paper-size model at full resolution (minutes; test_benchmark.py "
                                            "runs the command small)",
    "atrous benchmark --config CONFIG --device cuda": "needs a CUDA device",
    "atrous benchmark --peers": "times paper-size peers at 512x1024 for minutes (test_engines.py, test_benchmark.py "
                                "run the command small)",
    "atrous benchmark-data --train-results": "reads a benchmark's results.json (the skipped timing above)",
    "atrous benchmark-data": "times full-size 1024x2048 frames (test_data_pipeline.py runs it small)",
    "atrous fit --config CONFIG train.devices=4": "4 processes (DDP with 2: test_cli_training.py)",
    "atrous validate --checkpoint CKPT --engine torch --compile": "torch.compile takes minutes on CPU (test_engines.py)",
    "atrous quantize": "int8 calibration of 128 images (atrous quantize: test_quantize.py)",
    "atrous validate --checkpoint CKPT --engine openvino --precision int8": "the int8 model of the skipped quantize",
    "atrous serve ": "a server that runs until it is stopped (test_serve.py starts the command, sends requests, "
                     "stops it; test_serve_page.py drives its page)",
    "atrous benchmark-serve": "a load test of minutes (test_serve.py runs the command tiny)",
    "torchrun ": "several machines (test_multinode.py runs 2 nodes x 1 process on 127.0.0.1 through torchrun)",
    "HEAD=": "a SLURM batch script's line (needs a SLURM cluster)",
    "srun ": "a SLURM batch script's line (needs a SLURM cluster)",
    "atrous predict /data/photos": "shards of a folder on shared storage (test_predict_shard.py runs N shards)",
}
# pages whose ```bash blocks are sessions (a line uses what the lines before it made); on the
# other pages every line is an example of its own, run in a fresh folder
SESSIONS = {"README.md", "datasets.md", "cityscapes_evaluation.md", "files_and_images.md", "runs_and_resume.md", "training.md"}
RUN_NAMES = ("mine", "demo", "x")
# commands the page shows being refused when repeated (its text says so) → the message
EXPECTED_ERRORS = {
    "atrous export --checkpoint runs/x/checkpoints/best.ckpt --format onnx --output model.onnx": "exists",
}


def blocks(page: Path) -> list[list[tuple[str, str | None]]]:
    """Per ```bash block of the page, ``(command, expected error or None)`` for each command line."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        found: list[tuple[str, str | None]] = []
        for line in block.replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if stripped.startswith("# atrous: error:") and found:
                pieces = stripped.split("error:", 1)[1].split("...")
                found[-1] = (found[-1][0], max(pieces, key=len).strip(" ;[") or "error")
            if not stripped or stripped.startswith("#"):
                continue
            command = " ".join(re.sub(r"\s+#.*$", "", stripped).split())
            repeated = any(command == earlier for earlier, _ in found)
            found.append((command, EXPECTED_ERRORS.get(command) if repeated else None))
        out.append(found)
    return out


def commands(page: Path) -> list[tuple[str, str | None]]:
    return [c for block in blocks(page) for c in block]


def skip_reason(command: str) -> str | None:
    return next((reason for prefix, reason in SKIPPED.items()
                 if command.startswith(prefix) or (prefix.startswith("--") and f" {prefix}" in command)), None)


def _options(command: str) -> str:
    """``[--a X]`` → ``--a X``, ``[--b x|y]`` → ``--b x``, ``[--c ...]`` → nothing."""
    def option(match: re.Match) -> str:
        inner = match.group(1)
        return "" if "..." in inner else re.sub(r"(\S+)\|\S+", r"\1", inner)
    return re.sub(r"\[([^\]]*)\]", option, command)


def argv(command: str) -> list[str]:
    words = shlex.split(_options(command))
    assert words[0] == "atrous", command
    words = words[1:]
    replace = {"CKPT": "tiny/best.ckpt", "CONFIG": "tiny.yaml", "C": "tiny.yaml", "DIR": "out", "IMAGES...": "photos/",
               "N": "18", "/data/cityscapes": "data/cityscapes", "/data/other": "data/other",
               "/data/VOCdevkit": "data/VOCdevkit"}
    words = [replace.get(w, w) for w in words]
    words = [w.replace("=/data/", "=data/") for w in words]
    if "H" in words and "W" in words:
        words[words.index("H")], words[words.index("W")] = "64", "128"
    if words[0] == "fit" and DEMO in words:
        at = words.index(DEMO) + 1
        words[at:at] = TINY
    return words


# -- the folder a user works in ----------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The demo config trained for 2 steps at 64x128, as `atrous fit` writes it."""
    root = tmp_path_factory.mktemp("tiny-run")
    assert main(["fit", "--config", DEMO, *TINY, f"train.output_dir={root / 'run'}"]) == 0
    return root / "run"


def _images(folder: Path, n: int = 2, size: tuple[int, int] = (64, 128)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"image_{i}.png")


def _video(path: Path, frames: int = 3) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((64, 128, 3), 40 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def materialise(cwd: Path, tiny_run: Path) -> None:
    """What the pages assume exists in the user's folder."""
    config = torch_config(tiny_run)
    config["train"]["output_dir"] = "runs/config"
    (cwd / "tiny.yaml").write_text(yaml.safe_dump(config))
    (cwd / "tiny").mkdir()
    _link_or_copy(tiny_run / "checkpoints" / "best.ckpt", cwd / "tiny" / "best.ckpt")
    _link_or_copy(tiny_run / "checkpoints" / "best.ckpt", cwd / "best.ckpt")
    for name in ("photos", "frames", "aerial"):
        _images(cwd / name)
    _video(cwd / "drive.mp4")
    cityscapes = write_cityscapes(cwd / "data" / "cityscapes", cities=("aachen",), per_city=2, size=(64, 128))
    for split in ("val", "test"):
        shutil.copytree(cityscapes / "leftImg8bit" / split, cwd / "leftImg8bit" / split)
    for name in ("mine", "other"):
        write_folder(cwd / "data" / name, n=2, size=(64, 128), split="train")
        write_folder(cwd / "data" / name, n=2, size=(64, 128), split="val")
    folder = {**config, "model": {**config["model"], "num_classes": 4},
              "data": {"dataset": {"name": "folder", "root": "data/mine"}, "train": {"split": "train"},
                       "val": {"split": "val"}, "batch_size": 2, "num_workers": 0}}
    for name in ("my_data.yaml", "my_aerial.yaml"):
        (cwd / name).write_text(yaml.safe_dump({**folder, "train": {**folder["train"], "output_dir": f"runs/{name[:-5]}"}}))


def _link_or_copy(source: Path | str, target: Path | str) -> None:
    """Checkpoints are hard-linked (atrous replaces a checkpoint, never writes into one), so that
    a page's sessions do not hold a copy each; any other file is copied."""
    if Path(source).suffix == ".ckpt":
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


def torch_config(run: Path) -> dict:
    import torch

    return torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["hyper_parameters"]["config"]


def _pages_with_commands() -> list[Path]:
    return [p for p in PAGES if any(c.startswith("atrous ") and not skip_reason(c) for c, _ in commands(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_commands(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_shell_commands_run_outside_the_checkout(page, tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    sessions = blocks(page) if page.name in SESSIONS else [[c] for block in blocks(page) for c in block]
    for number, session in enumerate(sessions):
        if all(skip_reason(command) for command, _ in session):
            continue
        folder = tmp_path / f"session{number}"  # a fresh folder for each session
        folder.mkdir()
        monkeypatch.chdir(folder)
        materialise(folder, tiny_run)
        run_session(page, session, tiny_run, capsys)
        monkeypatch.chdir(tmp_path)
        shutil.rmtree(folder)  # a passed session's files are not kept


def run_session(page: Path, session: list[tuple[str, str | None]], tiny_run: Path, capsys) -> None:
    for command, expected_error in session:
        if skip_reason(command):
            continue
        words = argv(command)
        for name in RUN_NAMES:  # a run the page trained earlier, else the tiny one
            if re.search(rf"\bruns/{name}(/|$|\s)", command) and words[0] != "fit" and not Path("runs", name).exists():
                shutil.copytree(tiny_run, Path("runs", name), copy_function=_link_or_copy)
        capsys.readouterr()
        status = main(words)
        err = capsys.readouterr().err
        if expected_error is None:
            assert status == 0, f"{page.name}: `{command}` failed:\n{err[-3000:]}"
        else:
            assert status == 2 and expected_error in err, f"{page.name}: `{command}` should fail with {expected_error!r}:\n{err[-2000:]}"


def test_every_shell_line_is_run_or_skipped_for_a_reason():
    """Every command line of a ```bash block is an `atrous` command this test runs or a SKIPPED
    entry; no prefix of SKIPPED is stale."""
    lines = [c for p in PAGES for c, _ in commands(p)]
    assert all(c.startswith("atrous ") or skip_reason(c) for c in lines), [c for c in lines if not c.startswith("atrous ") and not skip_reason(c)]
    used = {prefix for prefix in SKIPPED for c in lines if c.startswith(prefix) or f" {prefix}" in c}
    assert used == set(SKIPPED), set(SKIPPED) - used
