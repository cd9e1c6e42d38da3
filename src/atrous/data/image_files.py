"""Reading images and label maps with errors that name the file and the fix.

Images are read as an image viewer displays them (:func:`read_image_array`, the one place atrous
decodes an image file; datasets, ``atrous predict`` and ``atrous serve``'s uploads use it):

* the EXIF orientation tag is applied (phone photos are stored sideways and tagged);
* every mode becomes 8-bit RGB by scaling, never by clipping: 16-bit (``I;16*``, and ``I``
  holding 0…65535) by ``round(v · 255 / 65535)``, so a 16-bit PNG keeps its contrast (PIL's
  ``convert("RGB")`` would clip it to 255); ``F`` holding 0…1 by ``round(v · 255)``; ``1``,
  ``L``, ``P`` (transparency included), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` by PIL's
  conversion; alpha is dropped (the stored colour is kept, as OpenCV and torchvision do). Other
  modes and values outside those ranges are refused with a message;
* an image of more pixels than ``max_pixels`` (default: Pillow's decompression-bomb limit,
  ``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485) is refused with how to raise the limit
  (``atrous predict --max-pixels``, the config's ``data.dataset.max_image_pixels``; 0: none).

Images for models of other input channels (``model.in_channels``) are read with ``channels``:
1 gives the grey image (grey files as stored, colour files by PIL's luminance), 4 the four bands of
a 4-band file as stored (``RGBA``/``RGBX`` PNG or TIFF, e.g. RGB + near-infrared in the fourth band).

Label maps are read as stored: no orientation, no conversion of values.

:data:`IMAGE_EXTENSIONS` are the image files atrous looks for, in a ``folder`` dataset and
among ``atrous predict``'s inputs: the formats :func:`read_image_array` decodes through Pillow
(the tests write and read one file of each).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import tv_tensors

from ..errors import ConfigError, InputError, UserError
from .base import DatasetError
from .decoded_cache import DecodedCache

# The image files read_image_array decodes, lower case (PNG, JPEG, BMP, TIFF, WebP, PPM/PGM).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# EXIF orientations (tag 0x0112) that swap width and height: 5 transpose, 6 rotate 90° clockwise,
# 7 transverse, 8 rotate 90° counter-clockwise.
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
EXIF_ORIENTATION = 0x0112
_pillow_limit_lock = threading.Lock()


def pixel_limit(max_pixels: int | None) -> int | None:
    """The limit in force: ``max_pixels``, Pillow's ``MAX_IMAGE_PIXELS`` for ``None``, no
    limit (``None``) for 0."""
    if max_pixels is None:
        return Image.MAX_IMAGE_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise InputError(f"the pixel limit must be a whole number of pixels (0: no limit), got {max_pixels!r}")
    return max_pixels or None


def check_image_pixels(option: str, height: int, width: int, error: type[UserError] = ConfigError) -> None:
    """An image size atrous makes (a crop, a synthetic frame, an export example, a padded window)
    has at most Pillow's decompression-bomb limit of pixels, the largest image atrous reads
    (``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485: 8000 x 11000); ``error`` names ``option``."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and height * width > limit:
        raise error(f"{option} {height}x{width} is {height * width:,} pixels, more than the {limit:,} of the largest "
                    "image atrous reads; choose a smaller size")


IMAGE_CHANNELS = (1, 3, 4)  # what read_image_array can give
_GREY_MODES = ("1", "L", "I", "F")


def read_image_array(path: Path, max_pixels: int | None = None, channels: int = 3) -> np.ndarray:
    """Decode an image file as displayed → uint8 ``(H, W, channels)``: RGB for 3, grey for 1,
    four stored bands for 4 (see the module docstring).

    Raises:
        DatasetError: naming the file: missing, undecodable, a mode that cannot be shown as
            RGB, or more pixels than the limit (:class:`ImageTooLargeError`).
    """
    return _decode(Path(path), Path(path), max_pixels, channels)


def decode_image_bytes(data: bytes, name: str, max_pixels: int | None = None, channels: int = 3) -> np.ndarray:
    """:func:`read_image_array` for the bytes of an image file (an upload), named ``name`` in errors."""
    return _decode(io.BytesIO(data), Path(name), max_pixels, channels)


def _decode(source: Path | io.BytesIO, path: Path, max_pixels: int | None, channels: int) -> np.ndarray:
    if channels not in IMAGE_CHANNELS:
        raise InputError(f"images are read with 1 (grey), 3 (RGB) or 4 (4-band) channels, not {channels!r}")
    try:
        with open_image(source, max_pixels, name=path) as img:
            if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return channel_array(img, path, channels)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: image file not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        reason = "not an image format Pillow reads" if isinstance(source, io.BytesIO) and isinstance(err, UnidentifiedImageError) else err
        raise DatasetError(f"{path}: cannot decode this image ({reason}); re-export or remove the file") from err
    except DatasetError:
        raise
    except ValueError as err:
        raise DatasetError(f"{path}: cannot decode this image ({err}); re-export or remove the file") from err


class ImageTooLargeError(DatasetError):
    """An image of more pixels than the limit (a guard against decompression bombs)."""

    def __init__(self, message: str, pixels: int = 0, limit: int = 0) -> None:  # one argument: re-raisable
        super().__init__(message)
        self.pixels, self.limit = pixels, limit


@contextmanager
def open_image(path: Path | io.BytesIO, max_pixels: int | None = None, *, name: Path | None = None) -> Iterator[Image.Image]:
    """``PIL.Image.open`` with a pixel limit of our own in place of Pillow's (see
    :func:`pixel_limit`), checked from the header before anything is decoded; ``name``: the
    file named in errors (default: ``path``)."""
    limit = pixel_limit(max_pixels)
    with _pillow_limit_lifted(), Image.open(path) as img:
        path = name or path
        width, height = img.size
        if limit is not None and width * height > limit:
            raise ImageTooLargeError(
                f"{path}: {width}x{height} = {width * height:,} pixels is more than the limit of {limit:,} "
                f"(a guard against decompression bombs; default: Pillow's); if you trust this file, raise it: "
                f"atrous predict --max-pixels {width * height}, or data.dataset.max_image_pixels: "
                f"{width * height} in the config (0: no limit)",
                width * height, limit,
            )
        yield img


def read_image(
    path: Path, max_pixels: int | None = None, channels: int = 3, cache: DecodedCache | None = None
) -> tv_tensors.Image:
    """Decode an image file as displayed → ``tv_tensors.Image`` uint8 ``(channels, H, W)``
    (RGB for 3: :func:`read_image_array`); with ``cache``, a file decoded before is read back
    from it (:mod:`.decoded_cache`).

    PIL decodes (torchvision 0.29 deprecates its own decoders in favour of torchcodec).
    """
    array = _cached(cache, path, f"image{channels}", (3,), max_pixels, lambda: read_image_array(path, max_pixels, channels))
    return tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))


def _cached(
    cache: DecodedCache | None, path: Path, kind: str, ndims: tuple[int, ...], max_pixels: int | None,
    decode: Callable[[], np.ndarray],
) -> np.ndarray:
    """``decode()``, or the array ``cache`` holds for ``path`` decoded as ``kind`` (storing it
    on a miss); a cached array of another number of dimensions than ``ndims`` is decoded again,
    one over the pixel limit too (which refuses it)."""
    entry = cache.entry(path, kind) if cache is not None else None
    if entry is None:
        return decode()
    array = cache.load(entry)
    limit = pixel_limit(max_pixels)
    if array is not None and array.ndim in ndims and (limit is None or array.shape[0] * array.shape[1] <= limit):
        return array
    array = decode()
    cache.store(entry, array)
    return array


class _pillow_limit_lifted:
    """Lift Pillow's own pixel limit while an image is opened and decoded (under a lock, and
    restored after): :func:`read_image_array` applies its own, configurable one."""

    def __enter__(self) -> None:
        _pillow_limit_lock.acquire()
        self.saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None

    def __exit__(self, *exc: object) -> None:
        Image.MAX_IMAGE_PIXELS = self.saved
        _pillow_limit_lock.release()


def channel_array(img: Image.Image, path: Path, channels: int) -> np.ndarray:
    """A PIL image → uint8 ``(H, W, channels)`` (see :func:`read_image_array`)."""
    if channels == 4:
        if img.mode not in ("RGBA", "RGBX"):
            raise DatasetError(f"{path}: image mode {img.mode!r} has no 4 bands; the config reads 4-channel images "
                               "(data.dataset.image_channels: 4): save it as a 4-band PNG or TIFF (RGBA)")
        return np.array(img)
    rgb = rgb_array(img, path)
    if channels == 3:
        return rgb
    if img.mode in _GREY_MODES or img.mode.startswith("I;16"):
        return rgb[..., :1]  # the grey values, repeated three times by rgb_array
    return np.array(Image.fromarray(rgb).convert("L"))[..., None]


def rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    """A PIL image of any supported mode → uint8 ``(H, W, 3)``, scaling high bit depths."""
    mode = img.mode
    if mode == "RGB":
        return pixel_array(img)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetError(
                f"{path}: 32-bit integer image with values {values.min()}..{values.max()} (atrous reads 0..65535 "
                f"as 16-bit); save it as an 8-bit or 16-bit image"
            )
        return _grey_to_rgb(((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8))
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            low, high = np.nanmin(values), np.nanmax(values)
            raise DatasetError(
                f"{path}: floating-point image with values {low:g}..{high:g} (atrous reads 0..1); save it as "
                f"an 8-bit or 16-bit image"
            )
        return _grey_to_rgb(np.round(values * 255).astype(np.uint8))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # the palette's colours; PIL warns on a direct conversion
    try:
        return pixel_array(img.convert("RGB"))
    except ValueError as err:
        raise DatasetError(f"{path}: image mode {mode!r} cannot be read as RGB ({err}); save it as 8-bit RGB") from err


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of an image file (1, upright, when absent or unreadable)."""
    try:
        with _pillow_limit_lifted(), Image.open(path) as img:
            return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - only an explanation depends on it
        return 1


def read_label_png(path: Path, max_pixels: int | None = None, cache: DecodedCache | None = None) -> np.ndarray:
    """Read a label PNG as stored: ``(H, W)`` integers (palette index or grey value), or
    ``(H, W, 3)`` uint8 for colour-coded masks. PIL keeps palette indices (torchvision would
    convert palette PNGs to RGB). No EXIF orientation; the pixel limit of images applies;
    ``cache`` as in :func:`read_image`."""
    return _cached(cache, path, "label", (2, 3), max_pixels, lambda: _decode_label(path, max_pixels))


def _decode_label(path: Path, max_pixels: int | None) -> np.ndarray:
    try:
        with open_image(path, max_pixels) as img:
            if img.mode in ("P", "L", "I", "I;16"):
                return pixel_array(img)
            if img.mode in ("RGB", "RGBA"):
                return pixel_array(img.convert("RGB"))
            raise DatasetError(f"{path}: label image mode {img.mode!r} is not supported; save it as an index PNG")
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: label file not found") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: cannot decode this label map ({err}); re-export or remove the file") from err


def pixel_array(img: Image.Image) -> np.ndarray:
    """``np.array(img)``, writable: for 8-bit ``L``, ``P`` and ``RGB`` images PIL's raw bytes,
    viewed and copied once (for a 1024×2048 label map a third of ``np.array``'s time; for RGB the
    same time, most of it PIL packing its 4-byte pixels into ``tobytes``)."""
    bands = {"L": (), "P": (), "RGB": (3,)}.get(img.mode)
    if bands is None:
        return np.array(img)
    return np.frombuffer(img.tobytes(), np.uint8).reshape(img.height, img.width, *bands).copy()


def check_same_size(image: tv_tensors.Image, mask: tv_tensors.Mask, image_path: Path, mask_path: Path) -> None:
    """Refuse a label map whose size differs from its image's (as displayed: after EXIF
    orientation), saying so when the image's orientation tag explains the difference."""
    image_size, mask_size = tuple(image.shape[-2:]), tuple(mask.shape[-2:])
    if image_size == mask_size:
        return
    hint = ""
    orientation = exif_orientation(image_path)
    if orientation in SWAPPING_ORIENTATIONS and mask_size == image_size[::-1]:
        hint = (
            f"; the image is stored {mask_size} but its EXIF orientation tag ({orientation}) turns it by 90° "
            f"and atrous reads images as they are displayed: rotate the label map to match, or re-save the "
            f"image upright without the tag (PIL: ImageOps.exif_transpose(image).save(...))"
        )
    raise DatasetError(
        f"{mask_path}: label map is {mask_size} but its image {image_path} is {image_size} (H, W) as "
        f"displayed; labels must match their image pixel for pixel{hint}"
    )
