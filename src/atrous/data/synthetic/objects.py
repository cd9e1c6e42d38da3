"""Vehicles, pedestrians, poles, signs and trees, and where the scene rules put them."""

from __future__ import annotations

import numpy as np

from .scene import (
    BUS,
    BUS_STOP_COLOUR,
    CAR,
    GLASS,
    LIGHT,
    PERSON,
    POLE,
    SHADOW,
    SIGN,
    SIGN_COLOURS,
    TRUCK,
    TYRE,
    VEGETATION,
    VEHICLE_COLOUR_WEIGHTS,
    VEHICLE_COLOURS,
    Camera,
    Part,
    _ellipse_front,
    _flat,
    _front,
    _plane_x,
    _rgb,
    _side,
    _Thing,
    _wheel,
)
from .street import _Street


def _vehicle(rng: np.random.Generator, class_id: int, lane: int, x: float, z: float, camera: Camera) -> _Thing:
    """A car, truck or bus: rear at depth ``z`` centred at lateral ``x``, the side the camera sees.

    All three share the body-colour law, glass, wheels and lights. Trucks and buses share their
    body too — width, height, rear face and side glazing band — and differ only in length and the
    truck's lower cab in front: seen from behind, or through a window smaller than the vehicle,
    they are the same thing."""
    body = VEHICLE_COLOURS[rng.choice(len(VEHICLE_COLOURS), p=VEHICLE_COLOUR_WEIGHTS)] * rng.uniform(0.85, 1.15)
    glass, rear, side = _rgb(GLASS * rng.uniform(0.7, 1.3)), _rgb(body), _rgb(body, 0.85)
    if class_id == CAR:
        width, height, length, wheel = rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.6), rng.uniform(4.0, 4.8), 0.33
    else:  # trucks and buses share one body: width, height, rear face, glazing band
        width, height, wheel = rng.uniform(2.4, 2.55), rng.uniform(3.0, 3.5), 0.5
        length = rng.uniform(5.5, 7.5) if class_id == TRUCK else rng.uniform(10.5, 12.5)
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
        else:  # the same glazing band along the box; a truck adds a lower cab in front
            parts.append((_side(side_x, z + 0.4, z1 - 0.4, height * 0.6, height * 0.85), glass, False))
            if class_id == TRUCK:  # a step in the outline, at the far end of the vehicle
                cab_height, cab0, cab1 = height * rng.uniform(0.72, 0.82), z1 + 0.15, z1 + 2.3
                parts.append((_side(side_x, cab0, cab1, 0, cab_height), side, True))
                parts.append((_side(side_x, cab0 + 0.9, cab1 - 0.1, cab_height * 0.55, cab_height * 0.9), glass, False))
                wheels = (z + 1.0, z1 - 1.1, cab1 - 0.8)
            else:
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
    if class_id != CAR:  # one rear face for trucks and buses: a glazing band
        parts.append((_front(x0 + 0.2, x1 - 0.2, height * 0.6, height * 0.85, z), glass, False))
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
    bus_stop = rng.uniform(max(nearest, 0.6 * in_view), 60.0) if rng.random() < 0.75 else None
    if bus_stop is not None:
        things += _pole(rng, stop_x, bus_stop, bus_stop=True)
    for lane in range(street.lanes):
        centre = street.road_left + (lane + 0.5) * street.lane_width
        taken: list[tuple[float, float]] = []
        if lane == street.lanes - 1 and bus_stop is not None and rng.random() < 0.9:
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
