"""Converting published weights: the official DenseASPP checkpoints and torchvision's DeepLabV3.

The official DenseASPP network is re-implemented below as plainly as DeepMotionAIResearch/DenseASPP
``models/DenseASPP.py`` writes it (its module tree, hence its state-dict keys, and its forward),
independently of atrous; torchvision's DeepLabV3 is torchvision's own. Random weights with random
BatchNorm statistics are saved as those projects save them, converted by ``atrous convert``, and
the atrous model must give the same outputs.
"""

from __future__ import annotations

import copy
import json
import pickle
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cityscapes_labels
from fixtures_data import write_cityscapes
from helpers_models import assert_identical, randomized_batchnorm
from PIL import Image
from torch import nn
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
)

from atrous.cli import main
from atrous.config import CONFIG_ROOT, load_config
from atrous.models import build_model
from atrous.models.checkpoint import load_segmentor
from atrous.models.convert import (
    ConversionError,
    convert_checkpoint,
    convert_denseaspp_official,
    convert_torchvision_deeplabv3,
    describe_state_dict,
    read_state_dict,
)

DENSEASPP = {n: CONFIG_ROOT / f"denseaspp/denseaspp{n}_cityscapes.yaml" for n in ("121", "161", "169", "201")}
TORCHVISION = {n: CONFIG_ROOT / f"torchvision/deeplabv3_{n}.yaml" for n in ("resnet50", "resnet101", "mobilenet_v3_large")}

# cfgs/DenseASPP{121,161,169,201}.py: growth_rate, num_init_features, block_config, d_feature0, d_feature1
# (bn_size 4, drop_rate 0, dropout0 = dropout1 = 0.1 in all four).
OFFICIAL_CFGS = {
    "121": (32, 64, (6, 12, 24, 16), 128, 64),
    "161": (48, 96, (6, 12, 36, 24), 512, 128),
    "169": (32, 64, (6, 12, 32, 32), 336, 168),
    "201": (32, 64, (6, 12, 48, 32), 480, 240),
}
# inference.py, data_transforms: ToTensor, then Normalize with these.
OFFICIAL_MEAN, OFFICIAL_STD = (0.290101, 0.328081, 0.286964), (0.182954, 0.186566, 0.184475)


# -- the official DenseASPP, output stride 8 (models/DenseASPP.py) -------------------------------
class DottedSequential(nn.Sequential):
    """``nn.Sequential`` with PyTorch 0.3's dotted child names (``norm.1``), which ``add_module``
    refuses since 0.4; the state-dict keys come out exactly as in the official checkpoints."""

    def put(self, name: str, module: nn.Module) -> None:
        self._modules[name] = module


class OfficialDenseLayer(DottedSequential):
    """``_DenseLayer``: norm.1 relu.1 conv.1 (1×1) norm.2 relu.2 conv.2 (3×3, dilated), then
    ``cat([x, new])``."""

    def __init__(self, in_channels: int, growth: int, dilation: int) -> None:
        super().__init__()
        self.put("norm.1", nn.BatchNorm2d(in_channels))
        self.put("relu.1", nn.ReLU(inplace=True))
        self.put("conv.1", nn.Conv2d(in_channels, 4 * growth, 1, bias=False))
        self.put("norm.2", nn.BatchNorm2d(4 * growth))
        self.put("relu.2", nn.ReLU(inplace=True))
        self.put("conv.2", nn.Conv2d(4 * growth, growth, 3, padding=dilation, dilation=dilation, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class OfficialTransition(nn.Sequential):
    """``_Transition``: norm relu conv (1×1), and an average pool only when its stride is 2."""

    def __init__(self, in_channels: int, pool: bool) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, in_channels // 2, 1, bias=False))
        if pool:
            self.add_module("pool", nn.AvgPool2d(2, 2))


class OfficialDenseAsppBlock(DottedSequential):
    """``_DenseAsppBlock``: [norm.1] relu.1 conv.1 norm.2 relu.2 conv.2, biases on, BN momentum
    0.0003, dropout2d. Its ``relu.1`` is in place: without norm.1 it rectifies its input tensor."""

    def __init__(self, in_channels: int, mid: int, out: int, rate: int, bn_start: bool) -> None:
        super().__init__()
        if bn_start:
            self.put("norm.1", nn.BatchNorm2d(in_channels, momentum=0.0003))
        self.put("relu.1", nn.ReLU(inplace=True))
        self.put("conv.1", nn.Conv2d(in_channels, mid, 1))
        self.put("norm.2", nn.BatchNorm2d(mid, momentum=0.0003))
        self.put("relu.2", nn.ReLU(inplace=True))
        self.put("conv.2", nn.Conv2d(mid, out, 3, dilation=rate, padding=rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout2d(super().forward(x), 0.1, self.training)


class OfficialDenseASPP(nn.Module):
    """``DenseASPP(model_cfg, n_class=19, output_stride=8)``: transition2/3 keep stride 1 (no
    pool), dense blocks 3/4 dilated 2/4, transition4 + norm5, ASPP_3 … ASPP_24 with the new
    features in front, classification = dropout2d, 1×1 conv, ×8 bilinear upsampling (PyTorch 0.3:
    corner-aligned)."""

    def __init__(self, variant: str, num_classes: int = 19) -> None:
        super().__init__()
        growth, channels, blocks, mid, out = OFFICIAL_CFGS[variant]
        self.features = nn.Sequential(
            OrderedDict(
                conv0=nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(channels),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(3, stride=2, padding=1),
            )
        )
        for b, (layers, dilation) in enumerate(zip(blocks, (1, 1, 2, 4), strict=True), start=1):
            block = nn.Sequential()
            for i in range(layers):
                block.add_module(f"denselayer{i + 1}", OfficialDenseLayer(channels + i * growth, growth, dilation))
            self.features.add_module(f"denseblock{b}", block)
            channels += layers * growth
            self.features.add_module(f"transition{b}", OfficialTransition(channels, pool=b == 1))
            channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.rates = (3, 6, 12, 18, 24)
        for i, rate in enumerate(self.rates):
            self.add_module(f"ASPP_{rate}", OfficialDenseAsppBlock(channels + i * out, mid, out, rate, bn_start=i > 0))
        self.classification = nn.Sequential(
            nn.Dropout2d(0.1),
            nn.Conv2d(channels + 5 * out, num_classes, 1),
            nn.Upsample(scale_factor=8, mode="bilinear", align_corners=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.features(x)
        for rate in self.rates:
            feature = torch.cat((getattr(self, f"ASPP_{rate}")(feature), feature), 1)
        return self.classification(feature)


def conv_geometry(model: nn.Module) -> list[tuple]:
    """Kernel, stride, padding, dilation and groups of every convolution, in module order (the
    same order in both models): checks rates a small test input cannot reach."""
    return [(m.kernel_size, m.stride, m.padding, m.dilation, m.groups) for m in model.modules() if isinstance(m, nn.Conv2d)]


def save_like_pytorch_03(state: dict[str, torch.Tensor], path: Path) -> None:
    """``torch.save(model.state_dict(), path)`` as PyTorch 0.3 did it on a GPU: the legacy (non-zip)
    format, tensors rebuilt by ``torch._utils._rebuild_tensor`` from ``torch.cuda.FloatStorage``s
    at location ``cuda:0``, a plain ``OrderedDict`` (no ``_metadata``)."""

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, torch.Tensor):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TypedStorage is deprecated
                    storage = obj.storage()
                return torch._utils._rebuild_tensor, (storage, obj.storage_offset(), tuple(obj.shape), obj.stride())
            return NotImplemented

    module = types.ModuleType("pickle_pytorch03")
    module.Pickler, module.dump = Pickler, pickle.dump
    state = OrderedDict((k, v.detach().contiguous()) for k, v in state.items())
    torch.save(state, path, pickle_module=module, _use_new_zipfile_serialization=False)
    # Storages saved from a GPU: pickled as torch.cuda.FloatStorage at "cuda:0" (lengths are
    # prefixed, so the location string is rewritten with its length byte).
    raw = path.read_bytes().replace(b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n")
    path.write_bytes(raw.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"))


# -- official DenseASPP ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def official121() -> OfficialDenseASPP:
    torch.manual_seed(1)
    return randomized_batchnorm(OfficialDenseASPP("121"))


def test_official_tree_has_the_official_key_names(official121):
    keys = set(official121.state_dict())
    for key in (
        "features.denseblock1.denselayer1.norm.1.weight",
        "features.denseblock4.denselayer16.conv.2.weight",
        "features.transition3.conv.weight",
        "features.transition4.norm.running_var",
        "features.norm5.bias",
        "ASPP_3.conv.1.bias",
        "ASPP_6.norm.1.running_mean",
        "ASPP_24.conv.2.weight",
        "classification.1.weight",
    ):
        assert key in keys
    assert not any(k.startswith("ASPP_3.norm.1") for k in keys)  # bn_start=False


def test_pytorch03_file_is_the_legacy_format_and_loads_weights_only(official121, tmp_path):
    state = {f"module.{k}": v for k, v in official121.state_dict().items() if "num_batches" not in k}
    path = tmp_path / "denseASPP121.pkl"
    save_like_pytorch_03(state, path)
    raw = path.read_bytes()
    assert not raw.startswith(b"PK")  # not the zip format of PyTorch >= 1.6
    assert b"_rebuild_tensor\n" in raw and b"_rebuild_tensor_v2" not in raw
    assert b"torch.cuda\nFloatStorage" in raw and b"cuda:0" in raw
    loaded = read_state_dict(path)  # torch.load(weights_only=True), module. stripped
    assert loaded.keys() == {k.removeprefix("module.") for k in state}
    assert all(torch.equal(loaded[k.removeprefix("module.")], v) for k, v in state.items())


@pytest.mark.parametrize("layout", [pytest.param("pytorch03-dataparallel", marks=pytest.mark.slow), "plain"])
def test_official_denseaspp121_converted_reproduces_official_outputs(official121, layout, tmp_path):
    state = {k: v for k, v in official121.state_dict().items() if "num_batches" not in k}  # 0.3 had none
    path = tmp_path / "weights.pkl"
    if layout == "plain":
        torch.save(state, path)
    else:
        save_like_pytorch_03({f"module.{k}": v for k, v in state.items()}, path)
    out = tmp_path / "denseaspp121.ckpt"
    done = convert_checkpoint("denseaspp-official", path, DENSEASPP["121"], out)
    assert done["tensors"] == len(state) and done["params"] == sum(p.numel() for p in official121.parameters())

    model, cfg = load_segmentor(out)
    assert cfg["class_names"][0] == "road" and len(cfg["class_names"]) == 19
    assert cfg["data"]["val"]["transforms"]["normalize"] == "cityscapes"
    assert conv_geometry(model) == conv_geometry(official121)
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():  # both in float64 (the float32 weights convert exactly)
        expected = copy.deepcopy(official121).double()(x.clone())
        got = model.double()(x)
    assert got.shape == expected.shape == (2, 19, 64, 96)
    assert_identical(got, expected)  # the same network in another module tree: float64 rounding only


@pytest.mark.parametrize("variant", ["121", "161", "169", "201"])
def test_official_variants_fit_their_configs_key_for_key(variant):
    with torch.device("meta"):
        state = OfficialDenseASPP(variant).state_dict()
    converted = convert_denseaspp_official(state, load_config(DENSEASPP[variant]))
    target = build_model(load_config(DENSEASPP[variant])).state_dict()
    assert converted.keys() == target.keys()
    assert all(converted[k].shape == target[k].shape for k in target)
    # Parameter for parameter: the official network's count equals the atrous model's.
    official = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert official == sum(p.numel() for p in build_model(load_config(DENSEASPP[variant])).parameters())


def test_official_variant_in_the_wrong_config_is_named():
    with torch.device("meta"):
        state = OfficialDenseASPP("161").state_dict()
    with pytest.raises(ConversionError, match="shapes differ"):
        convert_denseaspp_official(state, load_config(DENSEASPP["121"]))
    hint = describe_state_dict(f"module.{k}" for k in state)
    assert "DenseASPP161" in hint and "--config denseaspp/denseaspp161_cityscapes" in hint


def official_preprocess(image_path: Path) -> torch.Tensor:
    """inference.py: PIL RGB → ToTensor (÷255) → Normalize(MEAN, STD), ``(3, H, W)``."""
    image = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255)
    mean, std = torch.tensor(OFFICIAL_MEAN)[:, None, None], torch.tensor(OFFICIAL_STD)[:, None, None]
    return (image.permute(2, 0, 1) - mean) / std


@pytest.mark.slow
def test_convert_then_validate_from_the_cli_reproduces_the_official_predictions(tmp_path, capsys):
    """``atrous convert`` then ``atrous validate --checkpoint`` (config read from the checkpoint) on
    Cityscapes in its true layout, whose label maps are the official pipeline's predictions
    (PIL RGB → ToTensor → Normalize with inference.py's statistics → official model → argmax):
    atrous must score 100% pixel accuracy, which needs its normalisation and upsampling too."""
    root = write_cityscapes(tmp_path / "cityscapes", cities=("aachen",), per_city=2, size=(64, 128), splits=("val",))
    images = sorted((root / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))
    torch.manual_seed(2)
    official = randomized_batchnorm(OfficialDenseASPP("121"))
    # BatchNorm statistics of the network's own activations: its predictions follow the input.
    batch = torch.stack([official_preprocess(p) for p in images])
    for m in official.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        official.train()(batch)
    official.eval()
    train_id_to_label_id = {label.trainId: label.id for label in cityscapes_labels if 0 <= label.trainId < 255}
    for image_path in images:
        with torch.no_grad():
            prediction = official(official_preprocess(image_path)[None]).argmax(1)[0].numpy()
        assert len(np.unique(prediction)) > 3  # the labels depend on the image
        label_ids = np.vectorize(train_id_to_label_id.get)(prediction).astype(np.uint8)
        label_path = Path(str(image_path).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png"))
        Image.fromarray(label_ids).save(label_path)

    weights = tmp_path / "denseASPP121.pkl"
    save_like_pytorch_03({f"module.{k}": v for k, v in official.state_dict().items() if "num_batches" not in k}, weights)
    ckpt = tmp_path / "denseaspp121.ckpt"
    args = ["convert", "--from", "denseaspp-official", str(weights), "--config", str(DENSEASPP["121"]), "--output", str(ckpt)]
    assert main(args) == 0
    assert "atrous validate --checkpoint" in capsys.readouterr().out
    overrides = [f"data.dataset.root={root}", "data.num_workers=0", "train.progress_bar=false", "train.accelerator=cpu"]
    assert main(["validate", "--checkpoint", str(ckpt), "--output", str(tmp_path / "val"), *overrides]) == 0
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert metrics["num_pixels"] == len(images) * 64 * 128
    # validate runs in float32, as users do: another CPU's kernels may flip a near-tie of the
    # argmax (a handful of 16,384 pixels), nothing more — a wrong conversion scores far lower
    assert metrics["pixel_accuracy"] > 0.999


# -- torchvision DeepLabV3 ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "builder"), [pytest.param("resnet50", deeplabv3_resnet50, marks=pytest.mark.slow),
                          ("mobilenet_v3_large", deeplabv3_mobilenet_v3_large)]
)
def test_torchvision_deeplabv3_converted_reproduces_out_and_aux(name, builder, tmp_path):
    reference = randomized_batchnorm(builder(weights=None, weights_backbone=None, aux_loss=True, num_classes=21))
    path = tmp_path / f"deeplabv3_{name}.pth"
    torch.save(reference.state_dict(), path)
    out = tmp_path / f"deeplabv3_{name}.ckpt"
    convert_checkpoint("torchvision-deeplabv3", path, TORCHVISION[name], out)
    model, cfg = load_segmentor(out)
    assert cfg["class_names"][:2] == ["background", "aeroplane"] and len(cfg["class_names"]) == 21
    assert conv_geometry(model) == conv_geometry(reference)
    x = torch.randn(1, 3, 65, 65, dtype=torch.float64)
    with torch.no_grad():
        expected = reference.double()(x)
        logits, aux = model.double().forward_with_aux(x)
    # the same network in another module tree: float64 rounding only
    assert_identical(logits, expected["out"])
    assert_identical(aux, expected["aux"])


def test_torchvision_deeplabv3_without_aux_classifier(tmp_path):
    reference = randomized_batchnorm(deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=False))
    path = tmp_path / "no_aux.pth"
    torch.save(reference.state_dict(), path)
    config = TORCHVISION["mobilenet_v3_large"]
    with pytest.raises(ConversionError, match=r"aux_head\.0\.weight.*--set model\.aux_head=null"):
        convert_checkpoint("torchvision-deeplabv3", path, config, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()
    convert_checkpoint("torchvision-deeplabv3", path, config, tmp_path / "x.ckpt", ["model.aux_head=null"])
    model, cfg = load_segmentor(tmp_path / "x.ckpt")
    assert model.aux_head is None and "aux_head" not in cfg["model"], "null removes the inherited aux head"
    x = torch.randn(1, 3, 65, 65, dtype=torch.float64)
    with torch.no_grad():  # the same network in another module tree: float64 rounding only
        assert_identical(model.double()(x), reference.double()(x)["out"])


def test_torchvision_resnet101_fits_its_config_key_for_key():
    with torch.device("meta"):
        state = deeplabv3_resnet101(weights=None, weights_backbone=None, aux_loss=True).state_dict()
    converted = convert_torchvision_deeplabv3(state, load_config(TORCHVISION["resnet101"]))
    assert len(converted) == len(state)
    assert "head.refine.1.running_var" in converted and "aux_head.4.bias" in converted


# -- wrong and missing files ---------------------------------------------------------------------
def _torchvision_like(path: Path) -> Path:
    """A few keys of a torchvision DeepLabV3 ResNet file (enough to be recognised)."""
    keys = ["backbone.conv1.weight", "backbone.layer3.5.conv1.weight", "classifier.0.convs.0.0.weight",
            "classifier.4.weight", "aux_classifier.0.weight"]
    torch.save({k: torch.zeros(1) for k in keys}, path)
    return path


def test_torchvision_file_given_as_denseaspp_official_names_the_right_format(tmp_path):
    path = _torchvision_like(tmp_path / "deeplabv3_resnet50_coco-cd0a2569.pth")
    with pytest.raises(ConversionError) as err:
        convert_checkpoint("denseaspp-official", path, DENSEASPP["121"], tmp_path / "out.ckpt")
    message = str(err.value)
    assert str(path) in message and "fit no weight" in message and "backbone.conv1.weight" in message
    assert "--from torchvision-deeplabv3" in message and "--config torchvision/deeplabv3_resnet50" in message
    assert not (tmp_path / "out.ckpt").exists()


def test_official_file_given_as_torchvision_names_the_right_format(official121, tmp_path):
    path = tmp_path / "denseASPP121.pkl"
    torch.save({f"module.{k}": v for k, v in official121.state_dict().items()}, path)
    with pytest.raises(ConversionError, match=r"--from denseaspp-official --config denseaspp/denseaspp121_cityscapes"):
        convert_checkpoint("torchvision-deeplabv3", path, TORCHVISION["resnet50"], tmp_path / "out.ckpt")


def test_missing_official_file_says_where_to_get_it(tmp_path):
    for file in (tmp_path / "nowhere.pkl", None):
        with pytest.raises(ConversionError, match=r"weights/denseASPP161\.pkl") as err:
            convert_checkpoint("denseaspp-official", file, DENSEASPP["161"], tmp_path / "out.ckpt")
        assert "github.com/DeepMotionAIResearch/DenseASPP" in str(err.value)


def test_torchvision_without_file_uses_the_hub_cache_or_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = tmp_path / "torch" / "hub" / "checkpoints" / "deeplabv3_mobilenet_v3_large-fc3c493d.pth"
    with pytest.raises(ConversionError) as err:
        convert_checkpoint("torchvision-deeplabv3", None, TORCHVISION["mobilenet_v3_large"], tmp_path / "out.ckpt")
    message = str(err.value)
    assert "https://download.pytorch.org/models/deeplabv3_mobilenet_v3_large-fc3c493d.pth" in message
    assert str(target) in message and "network is unreachable" in message
    # A file already in the cache is used without a download.
    reference = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=True)
    torch.save(reference.state_dict(), target)
    done = convert_checkpoint("torchvision-deeplabv3", None, TORCHVISION["mobilenet_v3_large"], tmp_path / "out.ckpt")
    assert done["file"] == str(target)
    with pytest.raises(ConversionError, match="does not exist.*download.pytorch.org"):
        convert_checkpoint("torchvision-deeplabv3", tmp_path / "missing.pth", TORCHVISION["resnet50"], tmp_path / "o.ckpt")


def test_pickled_code_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.pkl"
    torch.save({"weight": torch.zeros(1), "hook": print}, path)
    with pytest.raises(ConversionError, match="weights_only"):
        convert_checkpoint("denseaspp-official", path, DENSEASPP["121"], tmp_path / "out.ckpt")


@pytest.mark.slow
def test_converted_official_denseaspp121_runs_in_the_exported_engines(official121, tmp_path):
    """The engines agree with eager on a converted official DenseASPP121 (labels >= 99.9%)."""
    from atrous.engines import EngineOptions, build_engine

    path = tmp_path / "weights.pth"
    torch.save({k: v for k, v in official121.state_dict().items() if "num_batches" not in k}, path)
    convert_checkpoint("denseaspp-official", path, DENSEASPP["121"], tmp_path / "c.ckpt")
    model, _ = load_segmentor(tmp_path / "c.ckpt")
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = copy.deepcopy(official121).eval()(x).argmax(1)
        for engine in ("onnxruntime", "openvino"):
            built = build_engine(model, EngineOptions(engine=engine, cache_dir=tmp_path / "cache"), "cpu", log=False)
            assert (built(x).argmax(1) == expected).float().mean() >= 0.999, engine
