"""Published weights by name: the registry states torchvision's and the official DenseASPP's
weights correctly, and ``--weights NAME`` / ``load_pretrained`` download once (sha256-checked),
convert once and reuse the cache; offline, a wrong file or an unknown name say what to do.

Downloads are served from a local ``file://`` URL: torchvision's DeepLabV3-MobileNetV3 with random
weights, saved under its real sha256 prefix, stands in for the published file; the converted model
must reproduce torchvision's outputs.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import trainId2label
from helpers_models import randomized_batchnorm
from PIL import Image
from test_convert import OfficialDenseASPP
from torchvision.models import get_model_weights
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

from atrous import PUBLISHED_WEIGHTS, load_pretrained
from atrous.cli import main
from atrous.config import load_config
from atrous.data.transforms import NORMALIZATIONS
from atrous.data.voc import VOC_CLASSES
from atrous.models.backbones.weights import PretrainedWeightsError
from atrous.models.convert import CONVERTERS, label_space
from atrous.models.pretrained import (
    cache_status,
    checkpoint_path,
    resolve_checkpoint,
    sha256_of,
    source_path,
)

MOBILENET = "deeplabv3-mobilenet-v3-large-coco-voc"
DENSEASPP = "denseaspp161-cityscapes"
TORCHVISION_ENTRIES = {
    "deeplabv3-resnet50-coco-voc": "deeplabv3_resnet50",
    "deeplabv3-resnet101-coco-voc": "deeplabv3_resnet101",
    MOBILENET: "deeplabv3_mobilenet_v3_large",
}


@pytest.fixture(autouse=True)
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache: ``<tmp>/torch/hub``."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub"


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    """torchvision's DeepLabV3-MobileNetV3 with random weights and BatchNorm statistics."""
    torch.manual_seed(3)
    return randomized_batchnorm(
        deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    )


@pytest.fixture(scope="module")
def served_file(reference, tmp_path_factory) -> Path:
    """``reference``'s state dict named as torchvision names its files: ``<name>-<sha256[:8]>.pth``."""
    folder = tmp_path_factory.mktemp("server")
    path = folder / "weights.pth"
    torch.save(reference.state_dict(), path)
    named = folder / f"deeplabv3_mobilenet_v3_large-{sha256_of(path)[:8]}.pth"
    path.rename(named)
    return named


@pytest.fixture
def served(served_file, monkeypatch):
    """The MobileNet entry, pointed at ``served_file`` through a file:// URL."""
    entry = dataclasses.replace(
        PUBLISHED_WEIGHTS[MOBILENET], url=served_file.as_uri(), file_name=served_file.name,
        sha256_prefix=served_file.name.rsplit("-", 1)[1].removesuffix(".pth"),
    )
    monkeypatch.setitem(PUBLISHED_WEIGHTS, MOBILENET, entry)
    return entry


@pytest.fixture
def count_downloads(monkeypatch) -> list[str]:
    """URLs torch.hub downloads (still downloading them)."""
    urls: list[str] = []
    download = torch.hub.download_url_to_file

    def counting(url, *args, **kwargs):
        urls.append(url)
        return download(url, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "download_url_to_file", counting)
    return urls


def go_offline(monkeypatch) -> None:
    def offline(url, *args, **kwargs):
        raise URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


# -- the registry ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", TORCHVISION_ENTRIES)
def test_torchvision_entries_restate_torchvisions_weight_enums(name):
    entry = PUBLISHED_WEIGHTS[name]
    weights = get_model_weights(TORCHVISION_ENTRIES[name]).COCO_WITH_VOC_LABELS_V1
    assert entry.url == weights.url and entry.file_name == Path(weights.url).name
    assert entry.sha256_prefix == torch.hub.HASH_REGEX.search(entry.file_name).group(1)  # what torch.hub checks
    assert dict(entry.metrics.values) == weights.meta["_metrics"]["COCO-val2017-VOC-labels"]
    assert entry.file_size_mb == weights.meta["_file_size"]
    assert entry.class_names == tuple("background" if c == "__background__" else c for c in weights.meta["categories"])
    transform = weights.transforms()
    assert list(entry.mean) == transform.mean and list(entry.std) == transform.std


@pytest.mark.parametrize("name", list(PUBLISHED_WEIGHTS))
def test_every_entry_fits_its_packaged_config_and_converter(name):
    entry = PUBLISHED_WEIGHTS[name]
    config = load_config(entry.config)
    assert entry.source_format in CONVERTERS
    assert config["model"]["num_classes"] == len(entry.class_names)
    # The converted checkpoint stores the config's label space and normalisation: the entry's.
    assert label_space(config, len(entry.class_names))[0] == list(entry.class_names)
    assert NORMALIZATIONS[config["data"]["val"]["transforms"]["normalize"]] == (entry.mean, entry.std)


def test_denseaspp_entry_is_the_official_cityscapes_model():
    entry = PUBLISHED_WEIGHTS[DENSEASPP]
    assert entry.manual and entry.url is None and entry.file_name == "denseASPP161.pkl"
    assert entry.page == "https://drive.google.com/file/d/1sCr-OkMUayaHAijdQrzndKk2WW78MVZG/view"
    assert entry.config == "denseaspp/denseaspp161_cityscapes" and entry.source_format == "denseaspp-official"
    assert entry.class_names == tuple(trainId2label[i].name for i in range(19))
    assert dict(entry.metrics.values) == {"miou": 79.9, "miou_multi_scale": 80.6}
    assert "github.com/DeepMotionAIResearch/DenseASPP" in entry.metrics.source
    assert (entry.mean, entry.std) == NORMALIZATIONS["cityscapes"]
    assert PUBLISHED_WEIGHTS[MOBILENET].class_names == VOC_CLASSES


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(PretrainedWeightsError, match="unknown published weights 'resnet50'.*denseaspp161-cityscapes"):
        load_pretrained("resnet50")


# -- download, check, convert, cache ------------------------------------------------------------
def test_weights_by_name_are_downloaded_converted_and_reproduce_torchvision(
    served, reference, torch_home, count_downloads, monkeypatch
):
    assert cache_status(MOBILENET) == "missing"
    pretrained = load_pretrained(MOBILENET, progress=False)
    assert count_downloads == [served.url]
    assert source_path(served) == torch_home / "checkpoints" / served.file_name
    assert sha256_of(source_path(served)).startswith(served.sha256_prefix)
    assert pretrained.checkpoint == checkpoint_path(served) == torch_home / "atrous" / f"{MOBILENET}.ckpt"
    assert sorted(p.name for p in (torch_home / "checkpoints").iterdir()) == [served.file_name]  # no partial files
    assert cache_status(MOBILENET) == "converted"
    assert pretrained.weights is served and pretrained.class_names == VOC_CLASSES
    assert not pretrained.model.training

    image = torch.randint(0, 256, (3, 33, 47), dtype=torch.uint8)
    x = pretrained.preprocess(image)
    mean, std = torch.tensor(served.mean)[:, None, None], torch.tensor(served.std)[:, None, None]
    torch.testing.assert_close(x, (image.float() / 255 - mean) / std)
    with torch.no_grad():
        logits, aux = pretrained.model.forward_with_aux(x[None])
        expected = reference(x[None])
    assert torch.equal(logits, expected["out"]) and torch.equal(aux, expected["aux"])  # the same operations

    # Later calls use the converted checkpoint: nothing is downloaded or even read from the source.
    go_offline(monkeypatch)
    source_path(served).unlink()
    written = pretrained.checkpoint.stat().st_mtime_ns
    assert resolve_checkpoint(MOBILENET) == pretrained.checkpoint
    assert pretrained.checkpoint.stat().st_mtime_ns == written


def test_a_download_with_the_wrong_checksum_is_refused_and_not_kept(served, served_file, torch_home, tmp_path, monkeypatch):
    corrupt = tmp_path / "server" / served.file_name
    corrupt.parent.mkdir()
    corrupt.write_bytes(served_file.read_bytes()[:-1000])  # a truncated copy under the same name
    monkeypatch.setitem(PUBLISHED_WEIGHTS, MOBILENET, dataclasses.replace(served, url=corrupt.as_uri()))
    with pytest.raises(PretrainedWeightsError) as err:
        resolve_checkpoint(MOBILENET, progress=False)
    message = str(err.value)
    assert f"sha256 {sha256_of(corrupt)}" in message and served.sha256_prefix in message
    assert "discarded" in message and corrupt.as_uri() in message
    assert list((torch_home / "checkpoints").iterdir()) == []  # neither the file nor a partial download
    assert not checkpoint_path(served).exists() and cache_status(MOBILENET) == "missing"

    # A wrong file placed in the cache by hand is refused too, and left for the user to replace.
    placed = source_path(served)
    shutil.copy(corrupt, placed)
    with pytest.raises(PretrainedWeightsError, match=rf"{re.escape(str(placed))} has sha256 .*Delete it"):
        resolve_checkpoint(MOBILENET, progress=False)
    assert placed.read_bytes() == corrupt.read_bytes() and not checkpoint_path(served).exists()


def test_offline_says_which_file_to_place_where_and_a_placed_file_is_used(served, served_file, torch_home, monkeypatch):
    go_offline(monkeypatch)
    with pytest.raises(PretrainedWeightsError) as err:
        resolve_checkpoint(MOBILENET)
    message = str(err.value)
    assert "network is unreachable" in message and f"download {served.file_name} (42.301 MB) from {served.url}" in message
    assert f"place it at {torch_home / 'checkpoints' / served.file_name} " in message and "TORCH_HOME" in message
    assert not (torch_home / "checkpoints").exists() or not any((torch_home / "checkpoints").iterdir())

    (torch_home / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copy(served_file, torch_home / "checkpoints" / served.file_name)
    assert cache_status(MOBILENET) == "downloaded"
    assert resolve_checkpoint(MOBILENET) == checkpoint_path(served)


def test_manual_denseaspp_file_says_where_to_put_it_and_works_once_placed(torch_home, tmp_path):
    target = torch_home / "checkpoints" / "denseASPP161.pkl"
    with pytest.raises(PretrainedWeightsError) as err:
        load_pretrained(DENSEASPP)
    message = str(err.value)
    assert f"place it at {target} " in message and "cannot be downloaded by script" in message
    assert "https://drive.google.com/file/d/1sCr-OkMUayaHAijdQrzndKk2WW78MVZG/view" in message
    assert "github.com/DeepMotionAIResearch/DenseASPP" in message and "142.7 MB" in message

    # A file of another model at that place: the converter's every-key check names it.
    target.parent.mkdir(parents=True)
    torch.save({"backbone.conv1.weight": torch.zeros(1), "classifier.4.weight": torch.zeros(1)}, target)
    with pytest.raises(PretrainedWeightsError, match=rf"fit no weight.*Replace {re.escape(str(target))} with the published"):
        resolve_checkpoint(DENSEASPP)
    assert not checkpoint_path(PUBLISHED_WEIGHTS[DENSEASPP]).exists()

    # The official layout (nn.DataParallel's "module.", PyTorch 0.3's dotted names), each tensor
    # one constant stored once (stride 0), so that the 142 MB model stays small on disk.
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in OfficialDenseASPP("161").state_dict().items() if "num_batches" not in k}
    official = {f"module.{k}": torch.full((), float(i)).expand(shape) for i, (k, shape) in enumerate(shapes.items())}
    torch.save(official, target)
    path = resolve_checkpoint(DENSEASPP)
    assert path == torch_home / "atrous" / "denseaspp161-cityscapes.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    assert checkpoint["hyper_parameters"]["class_names"] == list(PUBLISHED_WEIGHTS[DENSEASPP].class_names)
    state = checkpoint["state_dict"]
    for official_key, key in (("classification.1.weight", "classifier.weight"),
                              ("ASPP_24.conv.2.bias", "head.layers.4.conv2.bias"),
                              ("features.denseblock4.denselayer24.norm.1.running_var",
                               "backbone.features.denseblock4.denselayer24.norm1.running_var")):
        assert torch.all(state[f"model.{key}"] == official[f"module.{official_key}"][()]), key


# -- the command line ---------------------------------------------------------------------------
def test_cli_lists_the_registry_with_its_cache_state(served, capsys):
    assert main(["weights"]) == 0
    table = capsys.readouterr().out
    for name, entry in PUBLISHED_WEIGHTS.items():
        row = next(line for line in table.splitlines() if f"`{name}`" in line)
        assert entry.config in row and entry.metrics.summary() in row and row.endswith("| missing |")
    assert "79.9" in table and "(download by hand)" in table
    assert main(["weights", MOBILENET, "--no-progress"]) == 0
    assert str(checkpoint_path(served)) in capsys.readouterr().out
    assert main(["weights"]) == 0
    assert next(line for line in capsys.readouterr().out.splitlines() if MOBILENET in line).endswith("| converted |")


def test_cli_predict_with_weights_segments_an_image_as_torchvision_does(served, reference, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "street.png")
    args = ["predict", str(tmp_path / "street.png"), "--weights", MOBILENET, "--output", str(tmp_path / "out"),
            "--device", "cpu", "--precision", "fp32", "--no-progress"]
    assert main(args) == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "street_labels.png"))
    mean, std = NORMALIZATIONS["imagenet"]
    x = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        expected = reference(x[None])["out"].argmax(1)[0].numpy()
    assert labels.shape == expected.shape == (40, 56)
    assert (labels == expected).mean() > 0.99  # float rounding may flip a near-tie, nothing more
    assert len(np.unique(expected)) > 1


@pytest.mark.parametrize("command", [
    ["predict", "image.png", "--output", "out"],
    ["validate"],
    ["export", "--format", "onnx", "--output", "model.onnx"],
])
def test_weights_and_checkpoint_together_exit_2(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--weights", MOBILENET, "--checkpoint", "model.ckpt"])
    assert exit_.value.code == 2
    assert re.search(r"argument --(weights|checkpoint): not allowed with argument --(checkpoint|weights)", capsys.readouterr().err)


def test_predict_without_checkpoint_or_weights_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "image.png", "--output", "out"])
    assert exit_.value.code == 2
    assert "one of the arguments --checkpoint --weights is required" in capsys.readouterr().err


def test_cli_unknown_or_missing_weights_is_one_error_line(capsys, tmp_path):
    assert main(["predict", "image.png", "--weights", "nope", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("atrous: error: unknown published weights 'nope'")
    assert main(["validate", "--weights", DENSEASPP]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "denseASPP161.pkl" in err


# -- the docs page (its Python examples run in tests/test_docs.py) ----------------------------
def test_docs_page_names_every_entry(repo_root):
    text = (repo_root / "docs" / "weights.md").read_text()
    assert re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert all(f"`{name}`" in text for name in PUBLISHED_WEIGHTS)
