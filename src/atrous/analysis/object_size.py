"""Per-class IoU against object size (report §5.3: "The size of an object in an image plays a
significant role in the ability of a model to recognize it").

**Objects.** Where the dataset has instance maps (the built-in synthetic streets render one for
every vehicle and person: ``SyntheticStreets.scene(i).instances``) an object is an instance;
for every other class, and for datasets with semantic masks only, an object is a 4-connected
component of the class in the ground truth (two touching cars are then one object).

**Size.** ``sqrt(area)`` in pixels of the label map, binned by ``edges`` (default 8, 16, 32, 64,
128 → ``<8, 8–16, …, ≥128``).

**IoU of an object** ``o`` of class ``c`` with pixels ``O`` and bounding box ``B``: the
intersection is ``|O ∩ P_c|`` (``P_c``: pixels predicted as ``c``) and the union is
``|O| + |P_c ∩ B ∖ G_c|`` — the object plus the false positives of class ``c`` inside its box
(``G_c``: ground-truth pixels of ``c``; ignored pixels are excluded). A bin's IoU pools its
objects: ``Σ intersection / Σ union`` (like the confusion-matrix IoU, restricted to objects of
that size and their surroundings); ``recall = Σ intersection / Σ |O|``. False positives far from
every object belong to no size and appear only in the ordinary per-class IoU, also reported.
A false-positive pixel inside the boxes of two objects counts for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.patches import Rectangle

from ..data.base import ClassInfo, SegmentationDataset
from ..errors import InputError
from ..evaluation.metrics import SegmentationMetrics
from .common import batches, logits_on_cpu, plt, save_figure

DEFAULT_EDGES = (8, 16, 32, 64, 128)
# Classes that are objects rather than regions (Cityscapes "things", plus the report's small
# traffic signs and lights); the defaults of ``atrous analyze object-size``.
THING_CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
                 "traffic light", "traffic sign")


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean ``(H, W)`` mask: labels ``(H, W)`` int64 (0 outside,
    ``1 … n`` inside) and ``n``. Union-find over the horizontal runs of each row."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    diff = np.diff(padded, axis=1)
    run_rows, starts = np.nonzero(diff == 1)
    _, ends = np.nonzero(diff == -1)  # exclusive; runs come out row-major, so they pair up
    parent = list(range(len(starts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(run_rows, np.arange(h + 1))
    for r in range(1, h):
        a, a_end, b, b_end = row_start[r - 1], row_start[r], row_start[r], row_start[r + 1]
        while a < a_end and b < b_end:  # runs of rows r − 1 and r, sorted by column
            if starts[a] < ends[b] and starts[b] < ends[a]:  # they share a column
                parent[find(a)] = find(b)
            if ends[a] < ends[b]:
                a += 1
            else:
                b += 1
    labels = np.zeros((h, w), dtype=np.int64)
    ids: dict[int, int] = {}
    for i, (r, s, e) in enumerate(zip(run_rows, starts, ends, strict=True)):
        labels[r, s:e] = ids.setdefault(find(i), len(ids) + 1)
    return labels, len(ids)


def objects_from_components(labels: np.ndarray, class_ids: Sequence[int]) -> tuple[np.ndarray, dict[int, int]]:
    """Objects as connected components of each class: an object map ``(H, W)`` int64 (0: none)
    and object id → class id."""
    objects = np.zeros(labels.shape, dtype=np.int64)
    classes: dict[int, int] = {}
    for c in class_ids:
        components, n = connected_components(labels == c)
        inside = components > 0
        objects[inside] = components[inside] + len(classes)
        classes.update({len(classes) + k: c for k in range(1, n + 1)})
    return objects, classes


def objects_from_instances(
    labels: np.ndarray, instances: np.ndarray, class_ids: Sequence[int], instance_classes: Sequence[int]
) -> tuple[np.ndarray, dict[int, int]]:
    """Objects from an instance map for ``instance_classes`` (pixels of those classes with no
    instance id fall back to connected components), components for the other ``class_ids``."""
    with_instances = [c for c in class_ids if c in instance_classes]
    objects, classes = objects_from_components(
        np.where(np.isin(labels, with_instances) & (instances > 0), -1, labels), class_ids
    )
    keep = np.isin(labels, with_instances) & (instances > 0)
    for inst in np.unique(instances[keep]):
        pixels = keep & (instances == inst)
        new = len(classes) + 1
        objects[pixels] = new
        classes[new] = int(np.bincount(labels[pixels]).argmax())
    return objects, classes


def object_terms(
    prediction: np.ndarray, truth: np.ndarray, objects: np.ndarray, object_classes: dict[int, int], ignore_index: int = 255
) -> list[dict[str, Any]]:
    """Per object: class, area, ``size`` = sqrt(area), intersection and union (module docstring)."""
    terms = []
    for obj, c in object_classes.items():
        rows, cols = np.nonzero(objects == obj)
        if len(rows) == 0:
            continue
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        area = len(rows)
        intersection = int((prediction[rows, cols] == c).sum())
        box_pred, box_truth = prediction[y0:y1, x0:x1], truth[y0:y1, x0:x1]
        false_positives = int(((box_pred == c) & (box_truth != c) & (box_truth != ignore_index)).sum())
        terms.append({"class": c, "area": area, "size": float(np.sqrt(area)), "intersection": intersection,
                      "union": area + false_positives, "box": [int(x0), int(y0), int(x1), int(y1)]})
    return terms


def bin_labels(edges: Sequence[float]) -> list[str]:
    """``[8, 16]`` → ``["<8", "8–16", "≥16"]``."""
    return [f"<{edges[0]:g}"] + [f"{a:g}–{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f"≥{edges[-1]:g}"]


def aggregate(terms: Sequence[dict[str, Any]], class_ids: Sequence[int], classes: ClassInfo,
              edges: Sequence[float] = DEFAULT_EDGES) -> dict[str, Any]:
    """IoU, recall and object count per (class, size bin) and per bin over all classes."""
    if list(edges) != sorted(edges) or len(set(edges)) != len(edges) or not edges:
        raise InputError(f"size bin edges must be increasing, got {list(edges)}")
    names = bin_labels(edges)
    groups = [(classes.names[c], [c]) for c in class_ids] + [("all", list(class_ids))]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for name, ids in groups:
        table[name] = {}
        for b, bin_name in enumerate(names):
            chosen = [t for t in terms if t["class"] in ids and int(np.searchsorted(edges, t["size"], side="right")) == b]
            inter = sum(t["intersection"] for t in chosen)
            union = sum(t["union"] for t in chosen)
            area = sum(t["area"] for t in chosen)
            table[name][bin_name] = {
                "objects": len(chosen),
                "pixels": area,
                "iou": inter / union if union else float("nan"),
                "recall": inter / area if area else float("nan"),
            }
    return {"bins": names, "edges": list(edges), "table": table}


@torch.no_grad()
def object_size_analysis(
    model: torch.nn.Module, dataset: SegmentationDataset, indices: Sequence[int], class_ids: Sequence[int],
    edges: Sequence[float] = DEFAULT_EDGES, batch_size: int = 4,
) -> dict[str, Any]:
    """Predict ``indices`` and tabulate IoU per class and object size (module docstring)."""
    classes = dataset.classes
    metrics = SegmentationMetrics(classes.num_classes, classes.names, classes.ignore_index)
    instance_classes = dataset_instance_classes(dataset)
    terms: list[dict[str, Any]] = []
    model.eval()
    for idx, x, y in batches(dataset, indices, batch_size):
        pred = logits_on_cpu(model, x).argmax(1)
        metrics.update(pred, y)
        for i, index in enumerate(idx):
            truth = y[i].numpy()
            instances = _instance_map(dataset, index, truth.shape) if instance_classes else None
            if instances is not None:
                objects, owners = objects_from_instances(truth, instances, class_ids, instance_classes)
            else:
                objects, owners = objects_from_components(truth, class_ids)
            terms += object_terms(pred[i].numpy(), truth, objects, owners, classes.ignore_index)
    result = aggregate(terms, class_ids, classes, edges)
    overall = metrics.compute_metrics()["per_class_iou"]
    result["class_iou"] = {classes.names[c]: overall[classes.names[c]] for c in class_ids}
    result["objects_from"] = {
        classes.names[c]: "instance map" if c in instance_classes else "connected components" for c in class_ids
    }
    result["num_images"] = len(indices)
    result["definition"] = (
        "object IoU = sum |O & P_c| / sum (|O| + |P_c & box(O) - G_c|) over the bin's objects O of class c "
        "(P_c: predicted c, G_c: ground-truth c, ignored pixels excluded); recall = sum |O & P_c| / sum |O|; "
        "size = sqrt(object area) in label-map pixels"
    )
    return result


def dataset_instance_classes(dataset: SegmentationDataset) -> tuple[int, ...]:
    """Classes whose objects come with an instance map: the synthetic streets' vehicles and
    people (``SyntheticStreets.scene``); none for datasets on disk."""
    from ..data.synthetic import PERSON, VEHICLE_CLASSES, SyntheticStreets

    return (PERSON, *VEHICLE_CLASSES) if isinstance(dataset, SyntheticStreets) else ()


def _instance_map(dataset: SegmentationDataset, index: int, shape: tuple[int, ...]) -> np.ndarray | None:
    scene = getattr(dataset, "scene", None)
    if scene is None:
        return None
    instances = torch.from_numpy(scene(index).instances)
    if tuple(instances.shape) != tuple(shape):  # the evaluation transforms resized the labels
        instances = torch.nn.functional.interpolate(instances[None, None].float(), size=shape, mode="nearest")[0, 0].long()
    return instances.numpy()


def plot_object_size(result: dict[str, Any], classes: ClassInfo, output: Path, title: str = "") -> Path:
    """A table as a heat map: object IoU per class (rows, with their palette colour) and size bin
    (columns), each cell with its number of objects; the last row pools every class."""
    bins = [b for b in result["bins"] if result["table"]["all"][b]["objects"]] or result["bins"]  # non-empty bins
    names = [n for n in result["table"] if n != "all" and any(v["objects"] for v in result["table"][n].values())]
    names.append("all")
    iou = np.array([[100 * result["table"][n][b]["iou"] for b in bins] for n in names], dtype=float)
    counts = np.array([[result["table"][n][b]["objects"] for b in bins] for n in names])
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(bins), 1.2 + 0.55 * len(names)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.92")  # empty bins
    ax.imshow(np.ma.masked_invalid(iou), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for (i, j), value in np.ndenumerate(iou):
        text = "–" if np.isnan(value) else f"{value:.1f}\n({counts[i, j]} obj.)"
        dark = not np.isnan(value) and value < 60
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black",
                fontweight="bold" if names[i] == "all" else None)
    for i, name in enumerate(names[:-1]):  # palette swatches left of the class names
        ax.add_patch(Rectangle((-0.03, i - 0.3), 0.022, 0.6, color=classes.palette[classes.names.index(name)] / 255.0,
                               clip_on=False, transform=ax.get_yaxis_transform()))
    ax.axhline(len(names) - 1.5, color="white", lw=2)
    ax.set_yticks(range(len(names)), [*names[:-1], "all classes"])
    ax.tick_params(axis="y", pad=22, length=0)
    ax.set_xticks(range(len(bins)), bins)
    ax.set(xlabel="object size: sqrt(area) in pixels",
           title=title or f"Object IoU (%) per class and size (report §5.3), {result['num_images']} images")
    fig.tight_layout()
    return save_figure(fig, output)
