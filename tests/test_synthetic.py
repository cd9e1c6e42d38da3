"""Synthetic streets: deterministic, valid Cityscapes train ids, perspective-scaled vehicles
whose classes share one colour distribution."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from atrous.data.synthetic import (
    BUS,
    CAR,
    TRUCK,
    USED_CLASSES,
    VEHICLE_CLASSES,
    Camera,
    SyntheticStreets,
)
from atrous.data.synthetic.objects import _vehicle
from atrous.data.transforms import build_transforms


@pytest.fixture(scope="module")
def scenes():
    """40 training scenes at the default 128×256."""
    dataset = SyntheticStreets("train", length=40)
    return [dataset.scene(i) for i in range(len(dataset))]


def test_same_seed_split_and_index_give_the_same_pair() -> None:
    first, second = SyntheticStreets("train", seed=3), SyntheticStreets("train", seed=3)
    for index in (0, 7, 1999):
        image_a, mask_a = first.load(index)
        image_b, mask_b = second.load(index)
        assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)
    assert torch.equal(first.load(5)[0], first.load(5)[0])
    assert first.name(42) == "synthetic_train_000042"
    assert SyntheticStreets("val").name(7) == "synthetic_val_000007"


def test_splits_and_seeds_give_different_scenes() -> None:
    train, val, other_seed = SyntheticStreets("train"), SyntheticStreets("val"), SyntheticStreets("train", seed=1)
    for index in range(3):
        reference = train.load(index)[1]
        assert not torch.equal(reference, val.load(index)[1])
        assert not torch.equal(reference, other_seed.load(index)[1])
    assert len(train) == 2000 and len(val) == 200 and len(SyntheticStreets("val", length=5)) == 5


def test_load_follows_the_dataset_contract() -> None:
    dataset = SyntheticStreets("val", image_size=(96, 160))
    image, mask = dataset.load(0)
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 96, 160)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.uint8 and mask.shape == (96, 160)
    assert dataset.classes.num_classes == 19 and dataset.classes.ignore_index == 255
    assert dataset.image_path(0) is None
    with pytest.raises(IndexError):
        dataset.load(len(dataset))
    with pytest.raises(ValueError, match="split"):
        SyntheticStreets("training")


def test_labels_are_valid_train_ids(scenes) -> None:
    seen = set()
    for scene in scenes:
        values = set(np.unique(scene.labels).tolist())
        assert values <= set(USED_CLASSES)
        seen |= values
    assert seen == set(USED_CLASSES), f"classes never drawn: {set(USED_CLASSES) - seen}"


def test_instance_map_agrees_with_labels(scenes) -> None:
    for scene in scenes:
        for obj in scene.objects:
            pixels = scene.labels[scene.instances == obj.instance]
            assert (pixels == obj.class_id).all()
        assert (scene.instances[np.isin(scene.labels, VEHICLE_CLASSES)] > 0).all()


def test_vehicles_appear_at_many_pixel_scales_in_proportion_to_the_lane(scenes) -> None:
    heights: dict[int, list[int]] = defaultdict(list)
    relative: dict[int, list[float]] = defaultdict(list)
    for scene in scenes:
        for obj in scene.objects:
            if obj.class_id not in VEHICLE_CLASSES:
                continue
            rows = np.nonzero((scene.instances == obj.instance).any(1))[0]
            if len(rows):  # bounding-box height of the visible pixels
                heights[obj.class_id].append(int(rows.max() - rows.min() + 1))
            if obj.box[1] > 0 and obj.box[3] < scene.labels.shape[0]:  # full outline in the frame
                relative[obj.class_id].append((obj.box[3] - obj.box[1]) / obj.lane_width)
    for class_id in VEHICLE_CLASSES:
        assert len(heights[class_id]) >= 5, f"class {class_id} appears too rarely"
    small, large = np.percentile(heights[CAR], [10, 90])
    assert large / small > 3, f"car heights span only {small}..{large} px"
    # Size is proportional to the lane width at the base row: the ratio varies little per class
    # and separates cars from trucks and buses although pixel heights overlap.
    car, truck, bus = (np.median(relative[c]) for c in (CAR, TRUCK, BUS))
    assert 0.35 < car < 0.6 and 0.8 < truck < 1.3 and 0.8 < bus < 1.2
    assert np.percentile(relative[CAR], 90) < min(np.percentile(relative[TRUCK], 10), np.percentile(relative[BUS], 10))
    assert max(heights[CAR]) > np.median(heights[BUS]), "a near car should look as tall as a typical bus"


def test_buses_keep_to_the_kerb_lane_and_trucks_avoid_the_leftmost() -> None:
    dataset = SyntheticStreets("train", length=80, image_size=(64, 128))
    counts = defaultdict(int)
    for index in range(len(dataset)):
        scene = dataset.scene(index)
        for obj in scene.objects:
            counts[obj.class_id] += 1
            if obj.class_id == BUS:
                assert obj.lane == scene.lanes - 1
            if obj.class_id == TRUCK:
                assert obj.lane > 0
    assert counts[BUS] > 10 and counts[TRUCK] > 10


def test_from_behind_a_truck_is_a_bus() -> None:
    """Same random draws, same place straight ahead: every part facing the camera (rear face,
    glazing band, lights, tyres) is the same polygon in the same colour — only the extent along
    the road, and the context, tell a truck from a bus."""
    camera = Camera(focal=250.0, horizon=55.0, centre=128.0, height=1.5)

    def rear(class_id: int) -> list:
        thing = _vehicle(np.random.default_rng(7), class_id, 1, 0.0, 12.0, camera)
        return [(points.round(6).tolist(), colour) for points, colour, _ in thing.parts if np.all(points[:, 2] == 12.0)]

    assert len(rear(TRUCK)) >= 5
    assert rear(TRUCK) == rear(BUS)
    assert rear(TRUCK) != rear(CAR)


def test_car_truck_and_bus_share_one_colour_distribution() -> None:
    """Per-instance mean colours of the three classes agree: the class is not in the colour."""
    dataset = SyntheticStreets("train", length=400, image_size=(64, 128))
    means: dict[int, list[np.ndarray]] = defaultdict(list)
    for index in range(len(dataset)):
        scene = dataset.scene(index)
        for obj in scene.objects:
            pixels = scene.image[scene.instances == obj.instance]
            if obj.class_id in VEHICLE_CLASSES and len(pixels) >= 10:
                means[obj.class_id].append(pixels.mean(0))
    stats = {c: (np.mean(means[c], 0), np.std(means[c], 0) / np.sqrt(len(means[c]))) for c in VEHICLE_CLASSES}
    for a, b in itertools.combinations(VEHICLE_CLASSES, 2):
        difference = stats[a][0] - stats[b][0]
        standard_error = np.hypot(stats[a][1], stats[b][1])
        print(f"classes {a} vs {b}: mean RGB difference {difference.round(1)}, z {(difference / standard_error).round(2)}")
        assert np.all(np.abs(difference) < 15), difference
        assert np.all(np.abs(difference / standard_error) < 3.5), (difference, standard_error)


def test_image_size_changes_the_resolution_not_the_scene() -> None:
    small = SyntheticStreets("train", image_size=(64, 128)).load(4)[1].numpy()
    large = SyntheticStreets("train", image_size=(128, 256)).load(4)[1].numpy()
    assert (large[::2, ::2] == small).mean() > 0.9


def test_dataloader_with_workers_and_transforms() -> None:
    transforms = build_transforms(train=True, scale_range=(0.5, 1.5), crop_size=(96, 96), hflip=True)
    dataset = SyntheticStreets("train", length=8, transforms=transforms)
    images, masks = next(iter(DataLoader(dataset, batch_size=4, num_workers=2)))
    assert images.shape == (4, 3, 96, 96) and images.dtype == torch.float32
    assert masks.shape == (4, 96, 96) and masks.dtype == torch.uint8
    assert set(masks.unique().tolist()) <= set(USED_CLASSES) | {255}
    plain = SyntheticStreets("train", length=8)
    loaded = next(iter(DataLoader(plain, batch_size=4, num_workers=2)))[1]
    assert torch.equal(loaded, torch.stack([plain.load(i)[1] for i in range(4)]))
