"""The peers ``atrous benchmark --peers`` times atrous against, each the same network as an
atrous config, built independently:

* torchvision's ``deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)``
  against ``torchvision/deeplabv3_resnet50`` with ``model.aux_head=null`` (ResNet-50
  at output stride 8 without multi-grid, ASPP (12, 24, 36) + image pooling + torchvision's 3×3
  refine conv, 21 classes). ``deeplabv3/aspp_resnet50_os8`` is *not* this network:
  it follows the paper (multi-grid (1, 2, 4) in block4, no refine conv, 39,048,533 parameters
  against torchvision's 39,638,869);
* :class:`PlainDenseASPP121`, the official DenseASPP-121 written out plainly — torchvision's
  DenseNet-121 features with two pools removed and dilated convolutions, then a loop of
  BN-ReLU-1×1-BN-ReLU-3×3 layers and ``torch.cat`` — against
  ``denseaspp/denseaspp121_cityscapes``.

Both peers take the atrous model's weights by a fixed renaming of state-dict keys (the tests
check that outputs then agree), so the benchmark times identical computations.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import densenet121
from torchvision.models.segmentation import deeplabv3_resnet50

from ..config import CONFIG_ROOT, config_name

TORCHVISION_CONFIG = CONFIG_ROOT / "torchvision" / "deeplabv3_resnet50.yaml"
TORCHVISION_OVERRIDES = ("model.aux_head=null",)  # torchvision's aux_loss=False
DENSEASPP121_CONFIG = CONFIG_ROOT / "denseaspp" / "denseaspp121_cityscapes.yaml"


class TorchvisionLogits(nn.Module):
    """torchvision's DeepLabV3 returning the logits tensor instead of ``{"out": logits}``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def torchvision_deeplabv3_resnet50(num_classes: int = 21) -> TorchvisionLogits:
    """torchvision's DeepLabv3-ResNet-50 (output stride 8, no aux head, random weights)."""
    net = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False, num_classes=num_classes)
    return TorchvisionLogits(net)


def atrous_to_torchvision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of ``torchvision/deeplabv3_resnet50.yaml`` (no aux head) → :func:`torchvision_deeplabv3_resnet50`'s."""
    renames = (
        ("head.convs.", "net.classifier.0.convs."),
        ("head.project.", "net.classifier.0.project."),
        ("head.refine.0.", "net.classifier.1."),
        ("head.refine.1.", "net.classifier.2."),
        ("classifier.", "net.classifier.4."),
        ("backbone.", "net.backbone."),
    )
    return {_rename(key, renames): value for key, value in state.items()}


class PlainDenseASPP121(nn.Module):
    """Official DenseASPP-121 (DeepMotionAIResearch/DenseASPP, ``cfgs/DenseASPP121.py``), plainly.

    Backbone: torchvision's DenseNet-121 features at output stride 8 (pools of ``transition2``
    and ``transition3`` removed, dense blocks 3 and 4 dilated by 2 and 4), then the official
    ``transition4`` (BN-ReLU-1×1 conv 1024 → 512, no pool) and ``norm5`` (BN on 512). Head: five
    layers ``[BN]-ReLU-1×1 conv (128)-BN-ReLU-3×3 conv (64, rate r)-dropout``, r = 3, 6, 12, 18,
    24, each output concatenated *in front of* its input; the first layer has no BN and its ReLU
    also rectifies the concatenated features (the official in-place ReLU). Classifier: dropout,
    1×1 conv, bilinear upsampling with ``align_corners=True`` (PyTorch 0.3).

    Shapes: ``(N, 3, H, W)`` → ``(N, num_classes, H, W)``.
    """

    def __init__(self, num_classes: int = 19, rates: tuple[int, ...] = (3, 6, 12, 18, 24)) -> None:
        super().__init__()
        tv = densenet121(weights=None).features
        tv.transition2.pool = nn.Identity()
        tv.transition3.pool = nn.Identity()
        for block, rate in ((tv.denseblock3, 2), (tv.denseblock4, 4)):
            for layer in block.values():
                layer.conv2.dilation, layer.conv2.padding = (rate, rate), (rate, rate)
        modules = OrderedDict((name, module) for name, module in tv.named_children() if name != "norm5")
        modules["transition4"] = nn.Sequential(
            OrderedDict(norm=nn.BatchNorm2d(1024), relu=nn.ReLU(inplace=True), conv=nn.Conv2d(1024, 512, 1, bias=False))
        )
        modules["norm5"] = nn.BatchNorm2d(512)
        self.features = nn.Sequential(modules)

        channels = 512
        self.aspp = nn.ModuleList()
        for i, rate in enumerate(rates):
            layer = OrderedDict()
            if i > 0:
                layer["norm1"] = nn.BatchNorm2d(channels, momentum=0.0003)
            layer["relu1"] = nn.ReLU()
            layer["conv1"] = nn.Conv2d(channels, 128, 1)
            layer["norm2"] = nn.BatchNorm2d(128, momentum=0.0003)
            layer["relu2"] = nn.ReLU()
            layer["conv2"] = nn.Conv2d(128, 64, 3, padding=rate, dilation=rate)
            layer["dropout"] = nn.Dropout2d(0.1)
            self.aspp.append(nn.Sequential(layer))
            channels += 64
        self.classifier = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.features(x))
        for layer in self.aspp:
            features = torch.cat([layer(features), features], dim=1)
        logits = self.classifier(features)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


def atrous_to_plain_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State dict of ``denseaspp121_cityscapes.yaml`` → :class:`PlainDenseASPP121`'s."""
    renames = (("backbone.features.", "features."), ("head.layers.", "aspp."), ("classifier.", "classifier.1."))
    return {_rename(key, renames): value for key, value in state.items()}


def _rename(key: str, renames: tuple[tuple[str, str], ...]) -> str:
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old) :]
    raise KeyError(f"no rename rule for {key!r}")


def peer_pairs() -> list[tuple[str, dict[str, nn.Module]]]:
    """``(title, {name: model})`` for each comparison, atrous first, the peer holding atrous' weights."""
    from ..config import load_config
    from ..models import build_model

    pairs = []
    for config, overrides, make_peer, rename, peer_name in (
        (TORCHVISION_CONFIG, TORCHVISION_OVERRIDES, torchvision_deeplabv3_resnet50, atrous_to_torchvision_keys,
         "torchvision deeplabv3_resnet50"),
        (DENSEASPP121_CONFIG, (), PlainDenseASPP121, atrous_to_plain_keys, "plain DenseASPP-121"),
    ):
        cfg = load_config(config, overrides)
        torch.manual_seed(0)
        model = build_model(cfg, pretrained_backbone=False)
        peer = make_peer(num_classes=cfg["model"]["num_classes"])
        peer.load_state_dict(rename(model.state_dict()))
        name = " ".join(["atrous", config_name(config), *overrides])
        pairs.append((f"{name} vs {peer_name}", {name: model, peer_name: peer}))
    return pairs
