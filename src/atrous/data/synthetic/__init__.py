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
  distribution and they share one appearance vocabulary — body colour, a dark glass band in the
  upper half, dark wheels, red rear lights, the same pixel noise — so their per-instance mean
  colours agree within sampling noise. Trucks and buses share their whole body: width, height
  (≈1 lane width), rear face and side glazing band are drawn from one law, so from behind, or
  through any window smaller than the vehicle, a truck *is* a bus. They differ only in extent
  and context: a bus is ≈3.3 lane widths long, a truck's box ≈1.8 with a lower cab in front (a
  step in its outline); a car is ≈0.45 lane widths tall with a cabin on a lower body. As pixel
  size varies ~10–20× with depth, absolute size does not identify the class — a near car is as
  many pixels tall as a far bus. A pixel is classified by relating the object's whole extent to
  the lane width at its base, or by the bus stop beside it: a receptive field covering the
  object *and* the street around it.
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


from .dataset import DEFAULT_LENGTHS, SPLIT_STREAMS, SyntheticStreets
from .render import render_scene
from .scene import (
    BUILDING,
    BUS,
    CAR,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRUCK,
    USED_CLASSES,
    VEGETATION,
    VEHICLE_CLASSES,
    Camera,
    Scene,
    SceneObject,
)

__all__ = [
    "BUILDING", "BUS", "CAR", "DEFAULT_LENGTHS", "PERSON", "POLE", "ROAD", "SIDEWALK", "SIGN", "SKY",
    "SPLIT_STREAMS", "TERRAIN", "TRUCK", "USED_CLASSES", "VEGETATION", "VEHICLE_CLASSES", "Camera",
    "Scene", "SceneObject", "SyntheticStreets", "render_scene",
]
