"""Published weights that atrous converts and uses by name, stated as data.

Like torchvision's weight enums, each :class:`PublishedWeights` entry says where a published
model file is, how to check it (the sha256 prefix torch.hub checks, carried by torchvision's file
names), which converter reads it (:mod:`atrous.models.convert`), which packaged config builds its
network, its label space and normalisation, and the metrics its authors report and where.
:mod:`atrous.models.pretrained` downloads, converts and caches them; ``atrous weights`` lists
them; ``--weights NAME`` and :func:`atrous.load_pretrained` use them.

The torchvision entries restate ``torchvision.models.segmentation.DeepLabV3_*_Weights
.COCO_WITH_VOC_LABELS_V1`` (``.url``, ``.meta``); a test checks that they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .backbones.weights import PretrainedWeightsError

# Per RGB channel, for images scaled to [0, 1] (the same as atrous.data.transforms.NORMALIZATIONS).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The official DenseASPP inference.py (data_transforms): Cityscapes statistics.
CITYSCAPES_MEAN, CITYSCAPES_STD = (0.290101, 0.328081, 0.286964), (0.182954, 0.186566, 0.184475)

# Pascal VOC's 21 classes as atrous names them (torchvision's categories say "__background__").
VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# Cityscapes' 19 evaluated classes in train-id order (cityscapesScripts helpers/labels.py).
CITYSCAPES_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)

TORCHVISION_RECIPES = "https://github.com/pytorch/vision/tree/main/references/segmentation"
DENSEASPP_REPOSITORY = "https://github.com/DeepMotionAIResearch/DenseASPP"


@dataclass(frozen=True)
class ReportedMetrics:
    """What the authors report for the weights: percentages on ``dataset``, from ``source``."""

    dataset: str  # the evaluation data, e.g. "Cityscapes val"
    values: Mapping[str, float]  # metric → percent, e.g. {"miou": 79.9}
    source: str  # URL or paper table the numbers are quoted from

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def summary(self) -> str:
        """``"mIoU 66.4, pixel acc 92.4 (COCO val2017, VOC categories)"``."""
        names = {"miou": "mIoU", "miou_multi_scale": "mIoU multi-scale", "pixel_acc": "pixel acc"}
        shown = ", ".join(f"{names.get(key, key)} {value:g}" for key, value in self.values.items())
        return f"{shown} ({self.dataset})"


@dataclass(frozen=True)
class PublishedWeights:
    """One published model file and everything needed to use it in atrous."""

    name: str  # what `--weights` and load_pretrained take
    architecture: str  # in words
    config: str  # packaged config that builds the network (atrous zoo lists them)
    source_format: str  # converter: a key of atrous.models.convert.CONVERTERS
    file_name: str  # the published file's name; in torch.hub's cache as <hub dir>/checkpoints/<file_name>
    page: str  # where the weights are published
    url: str | None  # direct download; None: the file must be downloaded by hand from ``page``
    sha256_prefix: str | None  # leading hex digits of the file's sha256 (None: unknown)
    trained_on: str  # training data
    class_names: tuple[str, ...]  # in output-channel order
    mean: tuple[float, float, float]  # normalisation of [0, 1] RGB input
    std: tuple[float, float, float]
    metrics: ReportedMetrics
    file_size_mb: float | None = None  # as published
    notes: str = field(default="", compare=False)

    @property
    def manual(self) -> bool:
        """The file cannot be downloaded by script (e.g. Google Drive): place it by hand."""
        return self.url is None


def _torchvision(arch: str, *, architecture: str, file_name: str, sha256_prefix: str, miou: float,
                 pixel_acc: float, file_size_mb: float, recipe: str) -> PublishedWeights:
    """An entry for torchvision's ``deeplabv3_<arch>`` COCO_WITH_VOC_LABELS_V1 weights."""
    builder = "deeplabv3_" + arch.replace("-", "_")
    return PublishedWeights(
        name=f"deeplabv3-{arch}-coco-voc",
        architecture=architecture,
        config=f"torchvision/{builder}",
        source_format="torchvision-deeplabv3",
        file_name=file_name,
        page=f"https://pytorch.org/vision/stable/models/generated/torchvision.models.segmentation.{builder}.html",
        url=f"https://download.pytorch.org/models/{file_name}",
        sha256_prefix=sha256_prefix,
        trained_on="COCO train2017, the 20 Pascal VOC categories (+ background)",
        class_names=VOC_CLASS_NAMES,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        metrics=ReportedMetrics(
            dataset="COCO val2017, VOC categories",
            values={"miou": miou, "pixel_acc": pixel_acc},
            source=f"torchvision's weights meta (_metrics); recipe {recipe}",
        ),
        file_size_mb=file_size_mb,
        notes="torchvision evaluates with the shorter side resized to 520 pixels",
    )


REGISTRY: tuple[PublishedWeights, ...] = (
    _torchvision(
        "resnet50", architecture="DeepLabV3, ResNet-50 at output stride 8 (torchvision)",
        file_name="deeplabv3_resnet50_coco-cd0a2569.pth", sha256_prefix="cd0a2569",
        miou=66.4, pixel_acc=92.4, file_size_mb=160.515, recipe=f"{TORCHVISION_RECIPES}#deeplabv3_resnet50",
    ),
    _torchvision(
        "resnet101", architecture="DeepLabV3, ResNet-101 at output stride 8 (torchvision)",
        file_name="deeplabv3_resnet101_coco-586e9e4e.pth", sha256_prefix="586e9e4e",
        # torchvision's meta links the fcn_resnet101 recipe for this model (quoted as published).
        miou=67.4, pixel_acc=92.4, file_size_mb=233.217, recipe=f"{TORCHVISION_RECIPES}#fcn_resnet101",
    ),
    _torchvision(
        "mobilenet-v3-large", architecture="DeepLabV3, MobileNetV3-Large at output stride 16 (torchvision)",
        file_name="deeplabv3_mobilenet_v3_large-fc3c493d.pth", sha256_prefix="fc3c493d",
        miou=60.3, pixel_acc=91.2, file_size_mb=42.301, recipe=f"{TORCHVISION_RECIPES}#deeplabv3_mobilenet_v3_large",
    ),
    PublishedWeights(
        name="denseaspp161-cityscapes",
        architecture="DenseASPP, DenseNet-161 at output stride 8 (official)",
        config="denseaspp/denseaspp161_cityscapes",
        source_format="denseaspp-official",
        file_name="denseASPP161.pkl",
        # Google Drive, linked from the official README ("Download pretrained model"): no direct URL.
        page="https://drive.google.com/file/d/1sCr-OkMUayaHAijdQrzndKk2WW78MVZG/view",
        url=None,
        sha256_prefix=None,  # unpublished: the converter's every-key, every-shape check verifies the file
        trained_on="Cityscapes train (fine annotations)",
        class_names=CITYSCAPES_CLASS_NAMES,
        mean=CITYSCAPES_MEAN,
        std=CITYSCAPES_STD,
        metrics=ReportedMetrics(
            dataset="Cityscapes val",
            values={"miou": 79.9, "miou_multi_scale": 80.6},
            source=f"{DENSEASPP_REPOSITORY} (README; 79.9 single-scale, 80.6 multi-scale)",
        ),
        file_size_mb=142.7,
        notes=f"linked from {DENSEASPP_REPOSITORY}",
    ),
)

PUBLISHED_WEIGHTS: dict[str, PublishedWeights] = {entry.name: entry for entry in REGISTRY}


def published_weights(name: str) -> PublishedWeights:
    """The registry entry called ``name``; an unknown name lists the known ones."""
    if name not in PUBLISHED_WEIGHTS:
        raise PretrainedWeightsError(
            f"unknown published weights {name!r}; choose one of {', '.join(PUBLISHED_WEIGHTS)} (atrous weights lists them)"
        )
    return PUBLISHED_WEIGHTS[name]
