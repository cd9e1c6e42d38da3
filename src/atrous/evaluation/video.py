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


def read_video(path: Path) -> tuple[Iterator[np.ndarray], Fraction]:
    """Frames ``(H, W, 3)`` uint8 of the first video stream (decoded lazily), and its frame rate."""
    av = require_av()
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.FFmpegError, IndexError) as err:
        raise DatasetError(f"{path}: cannot read a video stream ({err})") from err
    rate = stream.average_rate or Fraction(25)

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as err:
            raise DatasetError(f"{path}: cannot decode the video ({err})") from err
        finally:
            container.close()

    return frames(), rate


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
