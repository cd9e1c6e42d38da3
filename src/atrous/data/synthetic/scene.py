"""Vocabulary of the synthetic streets: class ids, colours, the camera, scene records and the
world-space polygons every object is made of (metres; X right, Y up, Z forward)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY = 0, 1, 2, 5, 7, 8, 9, 10
PERSON, CAR, TRUCK, BUS = 11, 13, 14, 15
USED_CLASSES = (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR, TRUCK, BUS)
VEHICLE_CLASSES = (CAR, TRUCK, BUS)

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
