"""Sampling a scene and rasterising it: labels, instances, texture, exposure and noise."""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from .objects import _sample_objects
from .scene import (
    BUILDING,
    GLASS,
    OBJECT,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
    Camera,
    Scene,
    SceneObject,
    _rgb,
    _Thing,
)
from .street import _Street


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
