"""Published weights by name: download once, check, convert once, load.

"Pretrained" here means published segmentation weights of a whole network (``load_pretrained``,
``--weights NAME``). The ImageNet weights of a backbone alone are the backbone config's
``pretrained`` key (:mod:`atrous.models.backbones.weights`; ``build_model(pretrained_backbone=...)``).

``resolve_checkpoint("deeplabv3-resnet50-coco-voc")``:

1. the published file, ``<hub dir>/checkpoints/<file_name>`` (``torch.hub.get_dir()``, i.e.
   ``$TORCH_HOME/hub``; torchvision's own downloads land there too), is downloaded if missing
   (progress bar on stderr) to a temporary name, its sha256 checked against the prefix the
   registry states, and only then renamed into place: a bad download never sits in the cache;
2. it is converted by :func:`atrous.models.convert.convert_checkpoint` (every key used, every
   weight filled) into ``<hub dir>/atrous/<name>.ckpt``, written atomically, its sha256 recorded
   beside it (``<name>.ckpt.sha256``);
3. later calls return that checkpoint once its content still has the recorded sha256; one that
   changed is converted again from the checked published file. A checkpoint converted by an
   earlier atrous, without a record, gets its record on first use.

Files that cannot be downloaded by script (``entry.manual``) are placed by hand at the path the
error names. Offline, the error names the URL and the path to place the file at.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms import v2

from ..io import atomic_write, sha256_of
from .backbones.weights import PretrainedWeightsError
from .checkpoint import load_segmentor
from .convert import ConversionError, convert_checkpoint
from .published import PUBLISHED_WEIGHTS, PublishedWeights, published_weights
from .segmentor import Segmentor


def source_path(entry: PublishedWeights) -> Path:
    """Where the published file lives (and is downloaded to, or placed by hand)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / entry.file_name


def checkpoint_path(entry: PublishedWeights) -> Path:
    """Where its converted atrous checkpoint is cached."""
    return Path(torch.hub.get_dir()) / "atrous" / f"{entry.name}.ckpt"


def cache_status(entry: PublishedWeights | str) -> str:
    """``"converted"`` (ready), ``"downloaded"`` (the published file is there, not yet converted)
    or ``"missing"``."""
    entry = published_weights(entry) if isinstance(entry, str) else entry
    if checkpoint_path(entry).is_file():
        return "converted"
    return "downloaded" if source_path(entry).is_file() else "missing"


def digest_path(entry: PublishedWeights) -> Path:
    """Where the sha256 of the converted checkpoint is recorded when it is written."""
    converted = checkpoint_path(entry)
    return converted.with_name(converted.name + ".sha256")


def converted_intact(entry: PublishedWeights) -> bool:
    """Whether the converted checkpoint exists and still has the sha256 recorded when it was
    written (one without a record is recorded now)."""
    converted = checkpoint_path(entry)
    if not converted.is_file():
        return False
    if not digest_path(entry).is_file():
        record_digest(entry)
        return True
    recorded = (digest_path(entry).read_text().split() or [""])[0]
    return sha256_of(converted) == recorded


def record_digest(entry: PublishedWeights) -> None:
    """Write the sha256 of the converted checkpoint beside it (``sha256sum``'s format)."""
    converted = checkpoint_path(entry)
    digest = sha256_of(converted)
    atomic_write(digest_path(entry), lambda tmp: tmp.write_text(f"{digest}  {converted.name}\n"))


def _where_to_place(entry: PublishedWeights) -> str:
    """The sentence that says which file to get from where, and the exact path to put it at."""
    target = source_path(entry)
    size = f" ({entry.file_size_mb:g} MB)" if entry.file_size_mb else ""
    origin = f"by hand from {entry.page}" if entry.manual else f"from {entry.url} (on a machine that is online)"
    linked = f", {entry.notes}" if entry.manual and entry.notes else ""
    return (
        f"download {entry.file_name}{size} {origin}{linked} and place it at {target} "
        f"(or set TORCH_HOME to a folder holding hub/checkpoints/{entry.file_name})."
    )


def download(entry: PublishedWeights, progress: bool = True) -> Path:
    """The published file in torch.hub's cache, downloaded and checked if missing."""
    target = source_path(entry)
    if target.is_file():
        return target
    if entry.manual:
        raise PretrainedWeightsError(
            f"{entry.name}: {target} does not exist, and {entry.file_name} cannot be downloaded by script: "
            + _where_to_place(entry)
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".download")
        os.close(fd)
    except OSError as err:
        raise PretrainedWeightsError(
            f"{entry.name}: cannot write to torch.hub's cache {target.parent} ({err}); set TORCH_HOME to a writable folder"
        ) from err
    partial = Path(partial_name)
    try:
        print(f"Downloading {entry.url} to {target}", file=sys.stderr)
        try:
            torch.hub.download_url_to_file(entry.url, str(partial), None, progress=progress)
        except Exception as err:  # URLError, HTTPError, OSError (offline, proxy, disk)
            raise PretrainedWeightsError(
                f"{entry.name}: could not download {entry.url} ({err}). If this machine is offline, "
                + _where_to_place(entry)
            ) from err
        _check_sha256(entry, partial, downloaded=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _check_sha256(entry: PublishedWeights, path: Path, downloaded: bool) -> None:
    if entry.sha256_prefix is None:
        return
    digest = sha256_of(path)
    if digest.startswith(entry.sha256_prefix):
        return
    if downloaded:
        raise PretrainedWeightsError(
            f"{entry.name}: the file downloaded from {entry.url} has sha256 {digest}, not the published "
            f"{entry.sha256_prefix}…: the download is corrupt or the file changed; it was discarded "
            f"(nothing was written to {source_path(entry)}). Try again, or " + _where_to_place(entry)
        )
    raise PretrainedWeightsError(
        f"{entry.name}: {path} has sha256 {digest}, not the published {entry.sha256_prefix}…: it is not "
        f"the published file (truncated or another version). Delete it (it is downloaded again) or "
        f"replace it with a good copy of {entry.url}."
    )


def resolve_checkpoint(name: str, progress: bool = True) -> Path:
    """The converted atrous checkpoint of the published weights ``name`` (see module docstring),
    readable by :func:`atrous.models.checkpoint.load_segmentor` and ``--checkpoint``."""
    entry = published_weights(name)
    converted = checkpoint_path(entry)
    if converted_intact(entry):
        return converted
    if converted.is_file():
        print(f"atrous: {converted} differs from the checkpoint atrous converted (sha256); converting it again",
              file=sys.stderr)
    cached = source_path(entry).is_file()
    path = download(entry, progress=progress)
    if cached:  # placed by hand or by another tool: check it (downloads were checked already)
        _check_sha256(entry, path, downloaded=False)
    try:
        convert_checkpoint(entry.source_format, path, entry.config, converted, overwrite=True, keep_replaced=False)
        record_digest(entry)
    except ConversionError as err:
        raise PretrainedWeightsError(
            f"{entry.name}: {err} Replace {path} with the published {entry.file_name} ({entry.url or entry.page})."
        ) from err
    return converted


@dataclass(frozen=True)
class Pretrained:
    """A published model ready to use: ``model(preprocess(image)[None])`` → logits ``(1, K, H, W)``."""

    model: Segmentor  # in eval mode, on the CPU
    class_names: tuple[str, ...]  # K names, in output-channel order
    preprocess: Callable[[Any], torch.Tensor]  # PIL image / uint8 (3, H, W) → normalised float32 (3, H, W)
    weights: PublishedWeights  # the registry entry: source, metrics, normalisation
    checkpoint: Path  # the converted atrous checkpoint
    config: dict[str, Any]  # the experiment config the checkpoint stores


def preprocessing(entry: PublishedWeights) -> v2.Compose:
    """The entry's input transform: to a float32 image in [0, 1], then ``Normalize(mean, std)``."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(entry.mean, entry.std)])


def load_pretrained(name: str, progress: bool = True) -> Pretrained:
    """Published weights ``name`` (``atrous weights`` lists them) as a model in eval mode, with
    its class names, preprocessing and registry entry; downloaded and converted on first use.

    >>> pretrained = load_pretrained("deeplabv3-mobilenet-v3-large-coco-voc")  # doctest: +SKIP
    >>> logits = pretrained.model(pretrained.preprocess(image)[None])  # doctest: +SKIP
    """
    entry = published_weights(name)
    path = resolve_checkpoint(name, progress=progress)
    model, config = load_segmentor(path)
    class_names = tuple(config.get("class_names") or entry.class_names)
    return Pretrained(model.eval(), class_names, preprocessing(entry), entry, path, config)


def weights_table() -> str:
    """The registry as a markdown table, with each entry's cache state on this machine."""
    lines = [
        "| name | architecture | config | trained on | reported | source | cached |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in PUBLISHED_WEIGHTS.values():
        status = cache_status(entry)
        source = entry.url or f"{entry.page} (download by hand)"
        lines.append(
            f"| `{entry.name}` | {entry.architecture} | `{entry.config}` | {entry.trained_on} | "
            f"{entry.metrics.summary()} | {source} | {status} |"
        )
    return "\n".join(lines)
