"""The files of ``atrous predict``: which inputs it reads, the names of what it writes, and
the checks that no output replaces an input or (without ``overwrite``) an existing file, made
for every input before the first is predicted. See :mod:`atrous.evaluation.predict_app`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.image_files import IMAGE_EXTENSIONS
from ..errors import InputError, OutputExistsError
from ..io import atomic_write

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
# cityscapesScripts matches a prediction to <city>_<seq>_<frame>_gtFine_labelIds.png by the
# file-name pattern "<city>_<seq>_<frame>*.png" (evalPixelLevelSemanticLabeling.getPrediction).
CITYSCAPES_NAME = re.compile(r"^(?P<core>[^_]+_\d{6}_\d{6})(_|$)")


@dataclass(frozen=True)
class Source:
    """One input file and the output sub-path (no suffix) its results are named after."""

    path: Path
    relative: Path
    is_video: bool




# -- inputs and outputs -----------------------------------------------------------------------

def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[Source]:
    """Image and video files of ``inputs`` (files, or folders searched recursively, sorted),
    each with its path relative to the inputs' common folder (without suffix)."""
    if not inputs:
        raise InputError("no inputs: pass image files, folders or videos")
    paths = [Path(os.path.abspath(p)) for p in inputs]
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: input not found")
    common = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in paths]))
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_media(p))
            if not found:
                raise InputError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) or videos ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
            files += found
        else:
            files.append(path)
    sources, seen = [], {}
    for file in dict.fromkeys(files):  # the same file twice is predicted once
        relative = file.relative_to(common).with_suffix("")
        if relative in seen:
            raise InputError(f"{seen[relative]} and {file} would write the same outputs ({relative}_*); rename one")
        seen[relative] = file
        sources.append(Source(file, relative, file.suffix.lower() in VIDEO_EXTENSIONS))
    check_video_folders(sources)
    return sources


def check_video_folders(sources: Sequence[Source]) -> None:
    """Refuse inputs whose outputs would land in a video's frame folder: a video ``x.mp4`` writes
    into ``<output>/x/``, and so would the images of a folder ``x/`` beside it (or a video inside
    it); their outputs could replace each other, so neither is renamed silently."""
    videos = {source.relative: source for source in sources if source.is_video}
    for source in sources:
        for folder in source.relative.parents:
            if folder in videos:
                video = videos[folder]
                raise InputError(
                    f"{video.path} writes its frames into <output>/{folder.as_posix()}/, where the outputs of "
                    f"{source.path} would go too; rename the video or the folder {folder.as_posix()}/, or predict "
                    "them into separate --output folders"
                )


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)``, shard K (1 ≤ K ≤ N) of N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"--shard {text}: expected K/N with 1 <= K <= N, e.g. --shard 2/4 (the second of four shards)")
    return int(match[1]), int(match[2])


def shard_of(sources: Sequence[Source], shard: tuple[int, int]) -> list[Source]:
    """Shard ``K`` of ``N``: every N-th input of the list sorted by output name, from the K-th.
    Every machine that lists the same inputs gets the same split, and the N shards together
    hold every input exactly once."""
    k, n = shard
    return sorted(sources, key=lambda s: s.relative.as_posix())[k - 1::n]


def planned_outputs(source: Source, output: Path, *, overlay_video: bool = False, **naming: bool) -> list[Path]:
    """The paths ``source``'s results are written to (a video: its frames' folder and, with
    ``overlay_video``, the overlay video, written last)."""
    if source.is_video:
        paths = [output / source.relative]
        if overlay_video:
            paths.append(output / source.relative.with_name(f"{source.relative.name}_overlay.mp4"))
        return paths
    return [output / relative for relative in output_names(source.relative, **naming).values()]


def _is_media(path: Path) -> bool:
    suffix = path.suffix.lower()
    return path.is_file() and not path.name.startswith(".") and suffix in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS


def check_output_folder(output: Path, inputs: Sequence[str | os.PathLike], sources: Sequence[Source]) -> set[Path]:
    """Refuse an output folder equal to or inside an input folder; return the resolved input
    files (which no output may replace)."""
    out = output.resolve()
    for path in map(Path, inputs):
        folder = path.resolve()
        if path.is_dir() and (out == folder or folder in out.parents):
            raise InputError(
                f"output folder {output} is inside the input folder {path}; choose an output folder "
                f"outside the inputs (predictions are never written next to the images)"
            )
    return {s.path.resolve() for s in sources}


def output_names(name: Path, *, probabilities: bool = False, submission: bool = False) -> dict[str, Path]:
    """Output paths (relative to the output folder) of the image whose results are named ``name``."""
    if submission:
        match = CITYSCAPES_NAME.match(name.name)
        if match is None:
            raise InputError(
                f"{name.name}: --cityscapes-submission needs Cityscapes file names "
                "<city>_<seq>_<frame>_leftImg8bit.png (the evaluator matches <city>_<seq>_<frame>)"
            )
        names = {"submission": name.with_name(f"{match['core']}_leftImg8bit.png")}
    else:
        names = {kind: Path(f"{name}_{kind}.png") for kind in ("labels", "color", "overlay")}
    if probabilities:
        names["probs"] = Path(f"{name}_probs.npz")
    return names


def check_outputs(
    sources: Sequence[Source], output: Path, protected: set[Path], *, overwrite: bool = False, overlay_video: bool = False,
    **naming: bool,
) -> list[Path]:
    """Fail before predicting anything if an output would replace an input (always) or an existing
    file (unless ``overwrite``), or, for a submission, a name or a video does not fit. A video's
    frames go to the folder ``<name>/``, which must not exist yet (unless ``overwrite``). Returns
    the outputs that exist (``overwrite`` moves them aside: :func:`atrous.io.move_aside`)."""
    existing: list[Path] = []
    inodes = {_inode(p) for p in protected} - {None}  # hard links of an input are the input
    for source in sources:
        if source.is_video and naming.get("submission"):
            raise InputError(f"{source.path}: --cityscapes-submission takes images, not videos")
        for path in planned_outputs(source, output, overlay_video=overlay_video, **naming):
            if path.resolve() in protected or _inode(path) in inodes:
                raise OutputExistsError(f"refusing to overwrite the input {path}; choose another output folder")
            if path.exists() or path.is_symlink():
                existing.append(path)
    if existing and not overwrite:
        shown = ", ".join(map(str, existing[:3])) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise OutputExistsError(
            f"{len(existing)} output(s) already exist in {output} ({shown}); nothing was written: pass --overwrite "
            f"to move them aside into {output}/replaced-<time>/, or choose another --output folder"
        )
    return existing


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class Writer:
    """Writes output files atomically, refusing to replace any input file, and any existing file
    unless ``overwrite`` (checked again at the rename: a file that appeared meanwhile is kept)."""

    def __init__(self, output: Path, protected: set[Path], overwrite: bool = False) -> None:
        self.output, self.protected, self.overwrite = output, protected, overwrite
        self.written: list[Path] = []

    def write(self, relative: Path | str, write: Callable[[Path], None]) -> Path:
        path = self.output / relative
        if path.resolve() in self.protected:
            raise OutputExistsError(f"refusing to overwrite the input {path}; choose another output folder")
        atomic_write(path, write, overwrite=self.overwrite)
        self.written.append(path)
        return path

    def png(self, relative: Path | str, array: np.ndarray) -> Path:
        return self.write(relative, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
