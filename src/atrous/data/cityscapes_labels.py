"""Cityscapes' label table, carried as data so that training and validating on Cityscapes need
no extra package.

The 35 labels are those of cityscapesScripts' ``cityscapesscripts/helpers/labels.py`` (Cordts et
al., https://github.com/mcordts/cityscapesScripts, release 2.3.0, MIT licence): name, label id
(the value in gtFine's ``*_labelIds.png``; −1: none), train id (0…18 for the 19 evaluated
classes, 255 or −1 for the rest), category and its id, whether the label has instances and
whether the benchmark ignores it, and its colour. :data:`AVERAGE_INSTANCE_SIZES` is the mean
instance size per class, in pixels, that the benchmark's pixel-level evaluation weighs iIoU with
(``cityscapesscripts/evaluation/evalPixelLevelSemanticLabeling.py``, ``args.avgClassSize``).
``atrous evaluate-cityscapes`` runs that evaluator itself (the ``cityscapes`` extra);
tests/test_cityscapes.py checks this table against cityscapesScripts' own.
"""

from __future__ import annotations

from typing import NamedTuple


class Label(NamedTuple):
    """One row of the table, in cityscapesScripts' field order."""

    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


LABELS = (
    #     name                     id  train_id  category       cat_id  instances  ignored  colour
    Label("unlabeled",              0,  255,     "void",         0,     False,     True,    (0, 0, 0)),
    Label("ego vehicle",            1,  255,     "void",         0,     False,     True,    (0, 0, 0)),
    Label("rectification border",   2,  255,     "void",         0,     False,     True,    (0, 0, 0)),
    Label("out of roi",             3,  255,     "void",         0,     False,     True,    (0, 0, 0)),
    Label("static",                 4,  255,     "void",         0,     False,     True,    (0, 0, 0)),
    Label("dynamic",                5,  255,     "void",         0,     False,     True,    (111, 74, 0)),
    Label("ground",                 6,  255,     "void",         0,     False,     True,    (81, 0, 81)),
    Label("road",                   7,  0,       "flat",         1,     False,     False,   (128, 64, 128)),
    Label("sidewalk",               8,  1,       "flat",         1,     False,     False,   (244, 35, 232)),
    Label("parking",                9,  255,     "flat",         1,     False,     True,    (250, 170, 160)),
    Label("rail track",            10,  255,     "flat",         1,     False,     True,    (230, 150, 140)),
    Label("building",              11,  2,       "construction", 2,     False,     False,   (70, 70, 70)),
    Label("wall",                  12,  3,       "construction", 2,     False,     False,   (102, 102, 156)),
    Label("fence",                 13,  4,       "construction", 2,     False,     False,   (190, 153, 153)),
    Label("guard rail",            14,  255,     "construction", 2,     False,     True,    (180, 165, 180)),
    Label("bridge",                15,  255,     "construction", 2,     False,     True,    (150, 100, 100)),
    Label("tunnel",                16,  255,     "construction", 2,     False,     True,    (150, 120, 90)),
    Label("pole",                  17,  5,       "object",       3,     False,     False,   (153, 153, 153)),
    Label("polegroup",             18,  255,     "object",       3,     False,     True,    (153, 153, 153)),
    Label("traffic light",         19,  6,       "object",       3,     False,     False,   (250, 170, 30)),
    Label("traffic sign",          20,  7,       "object",       3,     False,     False,   (220, 220, 0)),
    Label("vegetation",            21,  8,       "nature",       4,     False,     False,   (107, 142, 35)),
    Label("terrain",               22,  9,       "nature",       4,     False,     False,   (152, 251, 152)),
    Label("sky",                   23,  10,      "sky",          5,     False,     False,   (70, 130, 180)),
    Label("person",                24,  11,      "human",        6,     True,      False,   (220, 20, 60)),
    Label("rider",                 25,  12,      "human",        6,     True,      False,   (255, 0, 0)),
    Label("car",                   26,  13,      "vehicle",      7,     True,      False,   (0, 0, 142)),
    Label("truck",                 27,  14,      "vehicle",      7,     True,      False,   (0, 0, 70)),
    Label("bus",                   28,  15,      "vehicle",      7,     True,      False,   (0, 60, 100)),
    Label("caravan",               29,  255,     "vehicle",      7,     True,      True,    (0, 0, 90)),
    Label("trailer",               30,  255,     "vehicle",      7,     True,      True,    (0, 0, 110)),
    Label("train",                 31,  16,      "vehicle",      7,     True,      False,   (0, 80, 100)),
    Label("motorcycle",            32,  17,      "vehicle",      7,     True,      False,   (0, 0, 230)),
    Label("bicycle",               33,  18,      "vehicle",      7,     True,      False,   (119, 11, 32)),
    Label("license plate",         -1,  -1,      "vehicle",      7,     False,     True,    (0, 0, 142)),
)

# The 19 evaluated classes in train-id order.
EVALUATED = tuple(sorted((label for label in LABELS if 0 <= label.train_id < 255), key=lambda label: label.train_id))

# category → its labels, in the table's order (cityscapesScripts' ``category2labels``).
CATEGORIES: dict[str, tuple[Label, ...]] = {
    category: tuple(label for label in LABELS if label.category == category)
    for category in dict.fromkeys(label.category for label in LABELS)
}

AVERAGE_INSTANCE_SIZES = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}
