"""The street's cross-section: lanes, sidewalks, kerbs, markings and facades (``_Street``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import (
    BUILDING,
    FACADE,
    FACADE_COLOURS,
    FAR,
    GROUND,
    ROAD,
    SIDEWALK,
    VEGETATION,
    _flat,
    _rgb,
    _side,
    _Thing,
)


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
