"""Synthetic street scenes: a built-in dataset whose vehicle classes need context to tell apart.

Each sample is a stylised forward-looking street seen through a pinhole camera: a road of 2–4
lanes receding to a vanishing point, kerbs and sidewalks, grass verges, building facades with
windows (or hedges), trees, poles with traffic signs, pedestrians, and cars, trucks and buses
in the lanes. Labels are Cityscapes train ids (the 19-class label space; 12 classes occur, no
``ignore`` pixels). Every object is a box or a billboard in metres projected into the image, so
its pixel size is proportional to the lane width at its base row: at 128×256, car heights run
from ~6 px (5th percentile) to ~60 px (95th), trucks up to ~110 px.

**Why a network needs context (the problem ASPP and DenseASPP address).**

* *Car, truck and bus look the same locally.* Their body colour is drawn from one shared
  distribution and they share one appearance vocabulary — body colour, a dark glass/stripe
  band in the upper half, dark wheels, red rear lights, the same pixel noise — so their
  per-instance mean colours agree within sampling noise. They differ in *shape relative to the
  road*: a car is ≈0.45 lane widths tall and ≈1.3 long, with a cabin on a lower body; a truck
  ≈1 lane width tall with a lower cab in front (a step in its outline); a bus ≈0.9 tall and
  ≈3.3 long with a row of side windows. As pixel size varies ~10–20× with depth, absolute size
  does not identify the class — a near car is as many pixels tall as a far bus. A pixel is
  classified by relating the object's whole extent to the lane width at its base: a receptive
  field covering the object *and* the road around it.
* *Scene rules.* Buses stand only in the kerb (rightmost) lane just past a bus stop (a short pole
  with a square yellow sign); trucks never use the leftmost lane; cars go anywhere.
* *Road and sidewalk share one colour distribution and the same noise.* The kerb stone, lane
  markings, paving joints near the camera and the position relative to vehicles and buildings
  separate them.

Large near objects need a large receptive field to be seen whole, small far ones need a fine
output stride: the multi-scale trade-off of DenseASPP §1 (Yang et al., CVPR 2018).

**Determinism.** Sample ``i`` of split ``s`` with ``seed`` is rendered from
``np.random.default_rng([seed, SPLIT_STREAMS[s], i])``: the same triple always gives the same
pair, and train (stream 0), val (1) and test (2) use disjoint seed sequences. Scenes are sampled
in metres and in fractions of the image, so ``image_size`` changes the resolution, not the
scene (at the same aspect ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision import tv_tensors

from .base import ClassInfo, SegmentationDataset, Transforms
from .palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY = 0, 1, 2, 5, 7, 8, 9, 10
PERSON, CAR, TRUCK, BUS = 11, 13, 14, 15
USED_CLASSES = (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR, TRUCK, BUS)
VEHICLE_CLASSES = (CAR, TRUCK, BUS)
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS = {"train": 2000, "val": 200, "test": 200}

# One body-colour law for every vehicle class: white, silver, grey, black, red, blue, green,
# yellow, brown. Car, truck and bus all sample from it.
VEHICLE_COLOURS = np.array(
    [(232, 232, 228), (188, 190, 194), (118, 120, 126), (42, 44, 50), (160, 34, 32),
     (36, 66, 142), (46, 92, 62), (214, 176, 44), (112, 74, 46)], dtype=np.float32)
VEHICLE_COLOUR_WEIGHTS = np.array([0.2, 0.18, 0.14, 0.14, 0.09, 0.09, 0.06, 0.05, 0.05])
FACADE_COLOURS = np.array(
    [(150, 140, 125), (120, 110, 100), (170, 160, 140), (140, 80, 60), (100, 100, 105),
     (190, 180, 160), (130, 125, 110)], dtype=np.float32)
SIGN_COLOURS = ((200, 30, 30), (30, 70, 170), (235, 235, 235))  # no yellow: that is the bus stop's
BUS_STOP_COLOUR = (200, 200, 40)
GLASS = np.array((44, 52, 64), dtype=np.float32)
TYRE, LIGHT, SHADOW = (26, 26, 28), (190, 30, 30), (32, 32, 34)
GROUND, FACADE, OBJECT = 0, 1, 2  # drawing layers
FAR = 3000.0  # metres; ground polygons end here, at the vanishing point to a pixel

Part = tuple[np.ndarray, tuple[int, int, int], bool]  # world polygon (N, 3), colour, paints labels


@dataclass(frozen=True)
class Camera:
    """Pinhole camera ``height`` m above the road looking along +Z; world X right, Y up (metres)."""

    focal: float  # pixels
    horizon: float  # image row of the horizon
    centre: float  # image column of the vanishing point
    height: float

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` → pixels ``(N, 2)`` as (column, row)."""
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        return np.stack([self.centre + self.focal * x / z, self.horizon + self.focal * (self.height - y) / z], 1)


@dataclass(frozen=True)
class SceneObject:
    """One vehicle or person; ``instance`` is its id in :attr:`Scene.instances`."""

    instance: int
    class_id: int
    depth: float  # metres from the camera to its nearest face
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels of the unoccluded outline, clipped
    lane_width: float  # pixels: the lane width at the object's base row
    lane: int | None  # vehicles: 0 is the leftmost lane, Scene.lanes - 1 the kerb lane


@dataclass
class Scene:
    """A rendered sample: ``image`` ``(H, W, 3)`` uint8, ``labels`` ``(H, W)`` int64 train ids,
    ``instances`` ``(H, W)`` int64 (0 for stuff, else a :attr:`SceneObject.instance`)."""

    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    objects: list[SceneObject]
    lanes: int


@dataclass
class _Thing:
    """An object as world polygons, drawn by layer then far to near."""

    depth: float
    class_id: int
    parts: list[Part]
    layer: int = OBJECT
    is_instance: bool = False
    lane: int | None = None


class SyntheticStreets(SegmentationDataset):
    """Procedural street scenes labelled with Cityscapes train ids (see the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``: disjoint random streams.
        length: number of samples (default 2000 for train, 200 otherwise).
        image_size: ``(H, W)`` of each pair.
        seed: base seed; sample ``i`` depends only on ``(seed, split, i)``.
        transforms: joint transform applied by ``__getitem__``.
    """

    classes = ClassInfo(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, ignore_index=255)

    def __init__(
        self,
        split: str = "train",
        *,
        length: int | None = None,
        image_size: tuple[int, int] = (128, 256),
        seed: int = 0,
        transforms: Transforms | None = None,
    ) -> None:
        super().__init__(transforms)
        if split not in SPLIT_STREAMS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLIT_STREAMS)}")
        if len(image_size) != 2 or min(image_size) < 16:
            raise ValueError(f"image_size must be (H, W) with both >= 16, got {image_size!r}")
        if length is not None and length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.split = split
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.length

    def name(self, index: int) -> str:
        return f"synthetic_{self.split}_{self._check_index(index):06d}"

    def scene(self, index: int) -> Scene:
        """Render sample ``index`` with its instance map and object list."""
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], self._check_index(index)])
        return render_scene(rng, *self.image_size)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        scene = self.scene(index)
        image = torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1)))
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(scene.labels))

    def _check_index(self, index: int) -> int:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic samples")
        return index % self.length


def render_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Sample a street, its objects and the camera from ``rng``; render at ``height × width``."""
    camera = Camera(
        focal=width * rng.uniform(0.85, 1.1),
        horizon=height * rng.uniform(0.36, 0.46),
        centre=width * rng.uniform(0.42, 0.58),
        height=rng.uniform(1.3, 1.7),
    )
    street = _Street.sample(rng)
    things = street.things() + _sample_objects(rng, street, camera, height, width)
    return _render(rng, things, street, camera, height, width)


@dataclass
class _Street:
    """The street's cross-section in metres (X right of the camera), facades and colours."""

    lane_width: float
    lanes: int
    road_left: float
    sidewalk: tuple[float, float]  # widths, left and right
    facade: tuple[float, float]  # X of the left and right facade planes
    side_class: tuple[int, int]  # BUILDING or VEGETATION (a hedge), per side
    segments: tuple[np.ndarray, np.ndarray]  # per side (n, 5): z start, z end, height, window spacing, glass tone
    segment_colours: tuple[np.ndarray, np.ndarray]  # per side (n, 3)
    road_colour: np.ndarray
    sidewalk_colour: np.ndarray
    terrain_colour: np.ndarray
    sky: tuple[np.ndarray, np.ndarray]  # colour at the top and at the horizon
    exposure: float

    @property
    def road_right(self) -> float:
        return self.road_left + self.lanes * self.lane_width

    @staticmethod
    def sample(rng: np.random.Generator) -> _Street:
        lanes, lane_width = int(rng.integers(2, 5)), rng.uniform(3.0, 3.8)
        road_left = -(rng.integers(0, lanes) + rng.uniform(0.3, 0.7)) * lane_width  # camera in some lane
        sidewalk = (rng.uniform(2.0, 4.5), rng.uniform(2.0, 4.5))
        verge = [rng.uniform(1.0, 5.0) if rng.random() < 0.5 else 0.0 for _ in range(2)]
        facade = (road_left - sidewalk[0] - verge[0], road_left + lanes * lane_width + sidewalk[1] + verge[1])
        side_class = tuple(BUILDING if rng.random() < 0.75 else VEGETATION for _ in range(2))
        segments, colours = [], []
        for kind in side_class:
            if kind == BUILDING:
                count = 16
                lengths = rng.uniform(8.0, 30.0, count)
                heights = np.where(rng.random(count) < 0.1, 0.0, rng.uniform(7.0, 26.0, count))
                colour = FACADE_COLOURS[rng.integers(0, len(FACADE_COLOURS), count)]
                colour = colour * rng.uniform(0.8, 1.15, (count, 1))
            else:
                count = 40
                lengths, heights = rng.uniform(2.0, 6.0, count), rng.uniform(2.5, 6.0, count)
                colour = np.array((70, 100, 45)) * rng.uniform(0.75, 1.25, (count, 1))
            ends = np.cumsum(lengths)
            tone = rng.uniform(0.6, 1.3, count)
            segments.append(np.stack([ends - lengths, ends, heights, rng.uniform(2.5, 4.0, count), tone], 1))
            colours.append(colour)
        if rng.random() < 0.6:  # clear sky, else overcast
            sky = (np.array((70, 130, 200)) * rng.uniform(0.85, 1.1), np.array((170, 200, 230)) * rng.uniform(0.9, 1.05))
        else:
            sky = (np.array((175, 180, 190)) * rng.uniform(0.8, 1.1), np.array((215, 218, 222)) * rng.uniform(0.9, 1.05))
        return _Street(
            lane_width=lane_width, lanes=lanes, road_left=road_left, sidewalk=sidewalk, facade=facade,
            side_class=side_class, segments=tuple(segments), segment_colours=tuple(colours),
            road_colour=_pavement(rng), sidewalk_colour=_pavement(rng),  # one law for both
            terrain_colour=np.array((95, 130, 60)) * rng.uniform(0.8, 1.2, 3),
            sky=sky, exposure=rng.uniform(0.8, 1.15),
        )

    def things(self) -> list[_Thing]:
        """Ground polygons (sidewalks, road, kerbs, markings) and facade segments."""
        left, right = self.road_left, self.road_right
        ground = [
            (_flat(left - self.sidewalk[0], left, 0.3, FAR), _rgb(self.sidewalk_colour), SIDEWALK),
            (_flat(right, right + self.sidewalk[1], 0.3, FAR), _rgb(self.sidewalk_colour), SIDEWALK),
            (_flat(left, right, 0.3, FAR), _rgb(self.road_colour), ROAD),
        ]
        kerb = _rgb(self.sidewalk_colour * 0.4 + 120)
        ground += [(_flat(left - 0.3, left, 0.3, FAR), kerb, SIDEWALK),
                   (_flat(right, right + 0.3, 0.3, FAR), kerb, SIDEWALK)]
        paint = (225, 225, 220)  # edge lines and dashed lane lines
        ground += [(_flat(left + 0.25, left + 0.4, 0.3, 60.0), paint, ROAD),
                   (_flat(right - 0.4, right - 0.25, 0.3, 60.0), paint, ROAD)]
        for lane in range(1, self.lanes):
            x = left + lane * self.lane_width
            ground += [(_flat(x - 0.08, x + 0.08, z, z + 3.5), paint, ROAD) for z in np.arange(1.0, 60.0, 9.0)]
        things = [_Thing(FAR - i, class_id, [(points, colour, True)], GROUND)
                  for i, (points, colour, class_id) in enumerate(ground)]  # drawn in list order
        for side in (0, 1):
            for (z0, z1, height, *_), colour in zip(self.segments[side], self.segment_colours[side], strict=True):
                if height > 0:
                    face = _side(self.facade[side], max(z0, 0.3), z1, 0.0, height)
                    things.append(_Thing(z0, self.side_class[side], [(face, _rgb(colour), True)], FACADE))
        return things


def _pavement(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(75, 150) * rng.uniform(0.94, 1.06, 3)


def _rgb(colour: np.ndarray, factor: float = 1.0) -> tuple[int, int, int]:
    red, green, blue = (min(255, max(0, int(c * factor))) for c in colour.tolist())
    return red, green, blue


def _flat(x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> np.ndarray:
    """Horizontal rectangle at height ``y`` (the road surface, a roof), corners ``(4, 3)``."""
    return np.array([(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)], dtype=np.float64)


def _plane_x(x: float, outline: list[tuple[float, float]]) -> np.ndarray:
    """Polygon in the vertical plane ``X = x`` from ``(z, y)`` corners, ``(N, 3)``."""
    return np.array([(x, y, z) for z, y in outline], dtype=np.float64)


def _side(x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
    """Rectangle in the vertical plane ``X = x`` (a facade, a vehicle's side), corners ``(4, 3)``."""
    return np.array([(x, y0, z0), (x, y1, z0), (x, y1, z1), (x, y0, z1)], dtype=np.float64)


def _front(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    """Rectangle facing the camera at depth ``z``, corners ``(4, 3)``."""
    return np.array([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)], dtype=np.float64)


@cache
def _unit_circle(corners: int) -> np.ndarray:
    angle = np.linspace(0, 2 * np.pi, corners, endpoint=False) + np.pi / 2
    return np.stack([np.cos(angle), np.sin(angle)], 1)


def _ellipse_front(x: float, y: float, z: float, rx: float, ry: float, corners: int = 10) -> np.ndarray:
    circle = _unit_circle(corners)
    return np.stack([x + rx * circle[:, 0], y + ry * circle[:, 1], np.full(corners, z)], 1)


def _wheel(x: float, z: float, radius: float) -> np.ndarray:
    circle = _unit_circle(8)
    return np.stack([np.full(8, x), radius * (1 + circle[:, 1]), z + radius * circle[:, 0]], 1)


def _vehicle(rng: np.random.Generator, class_id: int, lane: int, x: float, z: float, camera: Camera) -> _Thing:
    """A car, truck or bus: rear at depth ``z`` centred at lateral ``x``, the side the camera sees.

    All three share the body-colour law, glass, wheels and lights; they differ in shape."""
    body = VEHICLE_COLOURS[rng.choice(len(VEHICLE_COLOURS), p=VEHICLE_COLOUR_WEIGHTS)] * rng.uniform(0.85, 1.15)
    glass, rear, side = _rgb(GLASS * rng.uniform(0.7, 1.3)), _rgb(body), _rgb(body, 0.85)
    if class_id == CAR:
        width, height, length, wheel = rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.6), rng.uniform(4.0, 4.8), 0.33
    elif class_id == TRUCK:
        width, height, length, wheel = rng.uniform(2.3, 2.5), rng.uniform(3.2, 3.7), rng.uniform(5.5, 7.5), 0.5
    else:
        width, height, length, wheel = rng.uniform(2.45, 2.55), rng.uniform(2.9, 3.2), rng.uniform(10.5, 12.5), 0.5
    x0, x1, z1 = x - width / 2, x + width / 2, z + length
    parts: list[Part] = [(_flat(x0 - 0.2, x1 + 0.2, z - 0.2, z1), SHADOW, False)]
    side_x = x0 if x0 > 0 else (x1 if x1 < 0 else None)  # the side the camera sees, if any
    shoulder = height * 0.55 if class_id == CAR else height  # cars: body below, cabin above
    if class_id == CAR:  # the top of the body around the cabin
        parts.append((_flat(x0, x1, z, z1, shoulder), _rgb(body, 1.08), True))
    if side_x is not None:
        parts.append((_side(side_x, z, z1, 0, shoulder), side, True))
        if class_id == CAR:
            cabin_x = side_x - 0.12 if side_x < 0 else side_x + 0.12  # the cabin is narrower
            cabin = [(z + 0.7, shoulder), (z + 1.2, height), (z1 - 1.6, height), (z1 - 1.0, shoulder)]
            window = [(z + 0.95, shoulder + 0.06), (z + 1.3, height - 0.07),
                      (z1 - 1.7, height - 0.07), (z1 - 1.2, shoulder + 0.06)]
            parts += [(_plane_x(cabin_x, cabin), side, True), (_plane_x(cabin_x, window), glass, False)]
            wheels = (z + 0.8, z1 - 0.9)
        elif class_id == TRUCK:  # cargo box with a stripe, and a lower cab in front: a step in the outline
            cab_height, cab0, cab1 = height * rng.uniform(0.72, 0.82), z1 + 0.15, z1 + 2.3
            parts.append((_side(side_x, z + 0.3, z1 - 0.3, height * 0.62, height * 0.8), glass, False))
            parts.append((_side(side_x, cab0, cab1, 0, cab_height), side, True))
            parts.append((_side(side_x, cab0 + 0.9, cab1 - 0.1, cab_height * 0.55, cab_height * 0.9), glass, False))
            wheels = (z + 1.0, z1 - 1.1, cab1 - 0.8)
        else:  # a bus: one long box with a row of windows
            for start in np.arange(z + 0.4, z1 - 1.4, 1.4):
                parts.append((_side(side_x, start, start + 1.0, height * 0.6, height * 0.85), glass, False))
            wheels = (z + 2.3, z1 - 2.5)
        parts += [(_wheel(side_x, wheel_z, wheel), TYRE, False) for wheel_z in wheels]
    if class_id == CAR:  # cabin roof and sloped rear window
        inner0, inner1 = x0 + 0.12, x1 - 0.12
        if height < camera.height:
            parts.append((_flat(inner0, inner1, z + 1.2, z1 - 1.6, height), _rgb(body, 1.08), True))
        slope = np.array([(inner0, shoulder, z + 0.7), (inner1, shoulder, z + 0.7),
                          (inner1, height, z + 1.2), (inner0, height, z + 1.2)])
        inset = np.array([(0.1, 0.05, 0.05), (-0.1, 0.05, 0.05), (-0.1, -0.06, -0.05), (0.1, -0.06, -0.05)])
        parts += [(slope, rear, True), (slope + inset, glass, False)]
    elif height < camera.height:
        parts.append((_flat(x0, x1, z, z1, height), _rgb(body, 1.08), True))
    parts.append((_front(x0, x1, 0.0, shoulder, z), rear, True))
    if class_id == TRUCK:  # stripe and a door seam
        parts.append((_front(x0 + 0.1, x1 - 0.1, height * 0.58, height * 0.8, z), glass, False))
        parts.append((_front(x - 0.03, x + 0.03, 0.4, height - 0.1, z), glass, False))
    elif class_id == BUS:  # rear window
        parts.append((_front(x0 + 0.2, x1 - 0.2, height * 0.6, height * 0.86, z), glass, False))
    for left in (True, False):  # lights and tyres, in proportion to the rear face
        light_x = x0 + 0.04 * width if left else x1 - 0.18 * width
        parts.append((_front(light_x, light_x + 0.14 * width, 0.3 * height, 0.37 * height, z), LIGHT, False))
        tyre_x = x0 + 0.05 * width if left else x1 - 0.21 * width
        parts.append((_front(tyre_x, tyre_x + 0.16 * width, 0.0, 0.1 * height, z), TYRE, False))
    return _Thing(z, class_id, parts, is_instance=True, lane=lane)


def _person(rng: np.random.Generator, x: float, z: float) -> _Thing:
    """A pedestrian facing the camera, 1.55–1.95 m: legs, torso, head."""
    height = rng.uniform(1.55, 1.95)
    shirt, trousers = _rgb(rng.uniform(20, 230, 3)), _rgb(rng.uniform(20, 90, 3))
    skin = _rgb(np.array((225, 180, 150)) * rng.uniform(0.45, 1.0))
    hip, shoulder, stride = 0.48 * height, 0.83 * height, rng.uniform(0.0, 0.12)
    parts = [
        (_front(x - 0.17 - stride, x - 0.02, 0, hip, z), trousers, True),
        (_front(x + 0.02, x + 0.17 + stride, 0, hip, z), trousers, True),
        (_front(x - 0.22, x + 0.22, hip, shoulder, z), shirt, True),
        (_ellipse_front(x, shoulder + 0.08 * height, z, 0.1, 0.12, 8), skin, True),
    ]
    return _Thing(z, PERSON, parts, is_instance=True)


def _pole(rng: np.random.Generator, x: float, z: float, bus_stop: bool = False) -> list[_Thing]:
    """A pole (4–8 m) that may carry a traffic sign; a bus stop is a short pole with a square sign."""
    height = 2.9 if bus_stop else rng.uniform(4.0, 8.0)
    half = rng.uniform(0.06, 0.1)
    grey = _rgb(np.full(3, rng.uniform(60, 140)))
    things = [_Thing(z + 0.01, POLE, [(_front(x - half, x + half, 0, height, z), grey, True)])]
    if bus_stop:
        sign = [(_front(x - 0.35, x + 0.35, 2.2, 2.9, z), BUS_STOP_COLOUR, True),
                (_front(x - 0.08, x + 0.08, 2.3, 2.8, z), (40, 120, 60), True)]
    elif rng.random() < 0.6:
        centre, radius, corners = rng.uniform(2.3, 3.2), rng.uniform(0.3, 0.4), int(rng.choice([3, 4, 12]))
        outline = _ellipse_front(x, centre, z, radius, radius, corners)  # triangle, diamond or disc
        sign = [(outline, SIGN_COLOURS[rng.integers(0, len(SIGN_COLOURS))], True)]
    else:
        return things
    return things + [_Thing(z, SIGN, sign)]


def _tree(rng: np.random.Generator, x: float, z: float) -> _Thing:
    """A trunk and a crown of three ellipses, all vegetation as in Cityscapes."""
    trunk, radius = rng.uniform(1.8, 3.0), rng.uniform(1.3, 2.8)
    green = np.array((60, 95, 40)) * rng.uniform(0.7, 1.3)
    parts = [(_front(x - 0.14, x + 0.14, 0, trunk + radius, z), (75, 60, 45), True)]
    for dx, dy, shade in ((-0.4, 0.9, 0.85), (0.45, 1.0, 1.0), (0.0, 1.5, 1.15)):
        crown = _ellipse_front(x + dx * radius, trunk + dy * radius, z, radius * 0.8, radius * 0.75, 12)
        parts.append((crown, _rgb(green, shade), True))
    return _Thing(z + 0.02, VEGETATION, parts)


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _sample_objects(
    rng: np.random.Generator, street: _Street, camera: Camera, height: int, width: int
) -> list[_Thing]:
    """Vehicles in the lanes (with the bus and truck rules), people, poles, signs and trees."""
    nearest = camera.focal * camera.height / (height - camera.horizon) + 1.0  # base row inside the image
    things: list[_Thing] = []
    stop_x = street.road_right + rng.uniform(0.4, 0.9)
    in_view = camera.focal * stop_x / (0.95 * width - camera.centre)  # nearest depth with the sign in view
    bus_stop = rng.uniform(max(nearest, 0.6 * in_view), 60.0) if rng.random() < 0.55 else None
    if bus_stop is not None:
        things += _pole(rng, stop_x, bus_stop, bus_stop=True)
    for lane in range(street.lanes):
        centre = street.road_left + (lane + 0.5) * street.lane_width
        taken: list[tuple[float, float]] = []
        if lane == street.lanes - 1 and bus_stop is not None and rng.random() < 0.8:
            z = bus_stop + rng.uniform(0.5, 6.0)  # just past the stop, so the sign stays in view
            things.append(_vehicle(rng, BUS, lane, centre + rng.uniform(-0.2, 0.2), z, camera))
            taken.append((z - 2.0, z + 14.0))
        for z in np.sort(_log_uniform(rng, nearest, 110.0, int(rng.integers(1, 4)))):
            class_id = TRUCK if lane > 0 and rng.random() < 0.3 else CAR
            extent = 10.5 if class_id == TRUCK else 5.0
            if not any(z < end and z + extent > start for start, end in taken):
                taken.append((z - 2.0, z + extent + 2.0))
                things.append(_vehicle(rng, class_id, lane, centre + rng.uniform(-0.35, 0.35), z, camera))
    sides = ((-1.0, street.road_left, street.sidewalk[0]), (1.0, street.road_right, street.sidewalk[1]))
    for direction, kerb, width in sides:
        for z in _log_uniform(rng, nearest - 2.0, 80.0, int(rng.integers(0, 5))):
            things.append(_person(rng, kerb + direction * rng.uniform(0.6, width - 0.3), z))
        z, spacing = rng.uniform(nearest, nearest + 15.0), rng.uniform(15.0, 30.0)
        while z < 110.0:
            if bus_stop is None or direction < 0 or abs(z - bus_stop) > 4.0:
                things += _pole(rng, kerb + direction * 0.45, z)
            z += spacing * rng.uniform(0.8, 1.2)
        if rng.random() < 0.6:  # a row of trees at the back of the sidewalk
            z = rng.uniform(nearest, nearest + 10.0)
            while z < 90.0:
                things.append(_tree(rng, kerb + direction * (width + rng.uniform(0.0, 1.0)), z))
                z += rng.uniform(7.0, 14.0)
    return things


@cache
def _noise_tile(height: int, width: int) -> np.ndarray:
    """A fixed luminance-noise tile ``(2H, 2W, 1)`` float32; each sample takes a random window."""
    return np.random.default_rng(12345).standard_normal((2 * height, 2 * width, 1), dtype=np.float32)


def _render(
    rng: np.random.Generator, things: list[_Thing], street: _Street, camera: Camera, height: int, width: int
) -> Scene:
    """Paint sky, then every thing by layer and far to near; add facade windows, paving joints,
    exposure and pixel noise."""
    horizon = min(max(int(round(camera.horizon)), 0), height)
    blend = (np.arange(height, dtype=np.float32)[:, None] / max(camera.horizon, 1.0)).clip(0, 1)
    background = np.empty((height, width, 3), dtype=np.uint8)
    background[:] = ((1 - blend) * street.sky[0] + blend * street.sky[1])[:, None, :].astype(np.uint8)
    background[horizon:] = _rgb(street.terrain_colour)
    labels = np.full((height, width), TERRAIN, dtype=np.uint8)
    labels[:horizon] = SKY
    image, label_map = Image.fromarray(background), Image.fromarray(labels)
    instance_map = Image.new("L", (width, height), 0)
    draw_image, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label_map)
    draw_instance = ImageDraw.Draw(instance_map)

    things = sorted(things, key=lambda thing: (thing.layer, -thing.depth))
    corners = np.concatenate([points for thing in things for points, _, _ in thing.parts])
    pixels = camera.project(corners).ravel().tolist()  # x0, y0, x1, y1, … of every polygon
    objects: list[SceneObject] = []
    start = 0
    for thing in things:
        instance = len(objects) + 1 if thing.is_instance and len(objects) < 255 else 0
        outline: list[float] = []  # x0, y0, x1, y1, …
        for points, colour, labelled in thing.parts:
            polygon = pixels[start : start + 2 * len(points)]
            start += 2 * len(points)
            if not labelled and _sub_pixel(polygon):
                continue  # a detail smaller than a pixel would paint a whole pixel
            draw_image.polygon(polygon, fill=colour)
            if labelled:
                draw_label.polygon(polygon, fill=thing.class_id)
                if thing.layer == OBJECT:
                    draw_instance.polygon(polygon, fill=instance)
                    outline += polygon
        if instance:
            columns, rows = outline[0::2], outline[1::2]
            box = (max(0, int(min(columns))), max(0, int(min(rows))),
                   min(width, int(np.ceil(max(columns)))), min(height, int(np.ceil(max(rows)))))
            lane_px = street.lane_width * (max(rows) - camera.horizon) / camera.height  # at the base row
            objects.append(SceneObject(instance, thing.class_id, thing.depth, box, lane_px, thing.lane))

    labels = np.asarray(label_map)
    result = np.asarray(image, dtype=np.float32)
    _texture(result, labels, street, camera)
    tile = _noise_tile(height, width)
    top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
    noise = tile[top : top + height, left : left + width] * rng.uniform(3.0, 7.0)
    noise[labels == VEGETATION] *= 3.0  # leafy
    result = result * street.exposure + noise
    return Scene(
        image=np.clip(result, 0, 255).astype(np.uint8),
        labels=labels.astype(np.int64),
        instances=np.asarray(instance_map, dtype=np.int64),
        objects=objects,
        lanes=street.lanes,
    )


def _sub_pixel(polygon: list[float]) -> bool:
    columns, rows = polygon[0::2], polygon[1::2]
    return max(columns) - min(columns) < 1.0 or max(rows) - min(rows) < 1.0


def _texture(image: np.ndarray, labels: np.ndarray, street: _Street, camera: Camera) -> None:
    """In place: windows on visible facade pixels, joints on visible paving, in perspective.

    Patterns smaller than a pixel fade to their average colour instead of aliasing."""
    rows, columns = np.nonzero(labels == BUILDING)
    if len(rows):
        offset = columns.astype(np.float32) + 0.5 - camera.centre
        right = offset >= 0
        facade_x = np.where(right, np.float32(street.facade[1]), np.float32(street.facade[0]))
        z = camera.focal * facade_x / np.where(offset == 0, np.float32(1e-3), offset)
        y = camera.height - (rows.astype(np.float32) + 0.5 - camera.horizon) * z / camera.focal
        table = np.concatenate(street.segments)  # both sides; the right side's z shifted by 1e6
        ends = np.concatenate([street.segments[0][:, 1], street.segments[1][:, 1] + 1e6])
        segment = table[np.minimum(np.searchsorted(ends, z + right * 1e6), len(table) - 1)]
        spacing = segment[:, 3]
        local, floor = (z - segment[:, 0]) % spacing, y % 3.2  # position in the window grid, metres
        window = (local > 0.6) & (local < spacing - 0.6) & (floor > 1.0) & (floor < 2.6)
        window &= (y > 3.0) & (y < segment[:, 2] - 0.8)  # no windows at street level or in the roof
        size = np.minimum(camera.focal * np.abs(facade_x) * 1.2 / z**2, 1.0)  # window width, pixels
        coverage = (window * size + (1 - size) * 0.3).astype(np.float32)
        pixels = image[rows, columns]
        image[rows, columns] = pixels + coverage[:, None] * (GLASS * segment[:, 4:5].astype(np.float32) - pixels)
    rows, columns = np.nonzero(labels == SIDEWALK)
    if len(rows):
        z = camera.focal * camera.height / np.maximum(rows + 0.5 - camera.horizon, 1e-3)
        x = (columns + 0.5 - camera.centre) * z / camera.focal
        metres = z / camera.focal  # per pixel
        along = _line_coverage((x % 1.2) - 0.6, 0.03, metres)
        across = _line_coverage((z % 1.2) - 0.6, 0.03, metres * z / camera.height)  # depth per pixel row
        joint = np.maximum(along, across)
        image[rows, columns] *= (1 - 0.3 * joint)[:, None]


def _line_coverage(offset: np.ndarray, half_width: float, metres_per_pixel: np.ndarray) -> np.ndarray:
    """Fraction of a pixel covered by the line ``|offset| < half_width``, fading when sub-pixel."""
    inside = np.abs(offset) < np.maximum(half_width, metres_per_pixel / 2)
    return np.clip((half_width * 2) / metres_per_pixel, 0, 1) * inside
