"""Reading and writing videos with PyAV (FFmpeg): frames as ``(H, W, 3)`` uint8 RGB arrays.

PyAV comes with the ``video`` extra (``pip install "atrous[video]"``); without it, a video input
is one clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..data.base import DatasetError
from ..errors import require_extra


def require_av() -> Any:
    """PyAV, or a :class:`~atrous.errors.MissingExtraError` naming the ``video`` extra."""
    return require_extra("av", "video", "atrous predict on videos")


def read_video(path: Path) -> tuple[VideoFrames, Fraction]:
    """Frames ``(H, W, 3)`` uint8 of the first video stream (decoded lazily, counted), and its frame rate."""
    av = require_av()
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.FFmpegError, IndexError) as err:
        raise DatasetError(f"{path}: cannot read a video stream ({err})") from err
    rate = stream.average_rate or Fraction(25)
    return VideoFrames(path, av, container, stream, rate), rate


class VideoFrames:
    """The frames of one video stream, decoded as they are iterated and counted against the number
    its container declares, so that a truncated or partly corrupt file (an mp4 cut short by a
    failed copy) is told apart from a short video.

    The declared count is the stream's frame count where the container records it (mp4, mov),
    else its duration times the frame rate (mkv, avi: an estimate, ``estimated``). Decoding stops
    at the first frame that does not decode: the frames before it are kept, and
    :meth:`shortfall` says how many were read of how many declared. A video of which no frame
    decodes is a :class:`~atrous.data.base.DatasetError`.
    """

    def __init__(self, path: Path, av: Any, container: Any, stream: Any, rate: Fraction) -> None:
        self.path, self.av, self.container, self.stream = path, av, container, stream
        self.estimated = not stream.frames
        if stream.frames:
            self.declared: int | None = int(stream.frames)
        elif container.duration:  # microseconds (av.time_base)
            self.declared = round(container.duration * rate / 1_000_000)
        else:
            self.declared = None
        self.read = 0
        self.error: str | None = None  # why decoding stopped early

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for frame in self.container.decode(self.stream):
                image = frame.to_ndarray(format="rgb24")
                self.read += 1
                yield image
        except self.av.FFmpegError as err:
            self.error = str(err)
        finally:
            self.container.close()
        if self.read == 0:
            declared = f" (its container declares {self.declared})" if self.declared else ""
            why = f" ({self.error})" if self.error else ""
            raise DatasetError(f"{self.path}: no frame decodes{declared}; the file is empty, truncated or corrupt{why}")

    def shortfall(self) -> str | None:
        """``None`` when every declared frame was read; else one line for the user (after iterating)."""
        missing = self.declared is not None and self.read < self.declared - (1 if self.estimated else 0)
        if not missing and self.error is None:
            return None
        if self.declared is None:
            of = ""
        elif self.estimated:
            of = f" of about {self.declared} (its duration times its frame rate)"
        else:
            of = f" of the {self.declared} its container declares"
        why = f", then: {self.error}" if self.error else ""
        return (f"read {self.read} frame(s){of}{why}: the file looks truncated or corrupt, "
                f"the frames after the {self.read}th are missing from the outputs")


class VideoWriter:
    """Encodes ``(H, W, 3)`` uint8 frames to an H.264 (else MPEG-4) video at ``rate`` frames per
    second; the stream takes the first frame's size (odd sizes lose a row/column: yuv420p)."""

    def __init__(self, path: Path, rate: Fraction) -> None:
        self.av = require_av()
        self.rate = rate
        self.container = self.av.open(str(path), mode="w")
        self.stream: Any = None  # av.video.stream.VideoStream, once the first frame gives its size

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2])
        if self.stream is None:
            codec = "libx264" if "libx264" in self.av.codecs_available else "mpeg4"
            self.stream = self.container.add_stream(codec, rate=self.rate)
            self.stream.height, self.stream.width = frame.shape[:2]
            self.stream.pix_fmt = "yuv420p"
        for packet in self.stream.encode(self.av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
