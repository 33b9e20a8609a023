"""Folders of images, one subfolder per class (the subfolder names are the class names).

The layout is documented in :mod:`workbench.data.user`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.raw import RawData, check_size, encode_labels, regular_file_stat
from workbench.errors import DataError

#: Extensions read as images.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _size(resize: Sequence[int] | int | None, where: Path) -> tuple[int, int] | None:
    if resize is None:
        return None
    if isinstance(resize, (int, np.integer)) and not isinstance(resize, bool):
        resize = [int(resize), int(resize)]
    if (
        not isinstance(resize, (list, tuple))
        or len(resize) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= 4096 for v in resize)
    ):
        raise DataError(f"{where}: resize must be [height, width] in pixels (1..4096), got {resize!r}")
    return int(resize[0]), int(resize[1])


def read_images(
    path: str | os.PathLike[str],
    *,
    resize: Sequence[int] | int | None = None,
    classes: Sequence[str] | None = None,
) -> RawData:
    """Read a folder with one subfolder of images per class.

    Args:
        path: The folder.
        resize: `H x W` to resize every image to (an int for square images); without it all
            images must share one size.
        classes: Recorded class names (subfolders not listed are an error).

    Raises:
        DataError: An empty folder or class folder, a stray or unreadable file, mismatched sizes, ...
    """
    from PIL import Image, UnidentifiedImageError

    max_pixels = Image.MAX_IMAGE_PIXELS or 2**62  # PIL's decompression-bomb limit
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder with one subfolder of images per class")
    size = _size(resize, root)
    try:
        entries = sorted(e for e in root.iterdir() if not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{root}: cannot list the folder ({exc.strerror or exc})") from None
    stray = [e for e in entries if not e.is_dir()]
    if stray:
        raise DataError(f"{stray[0]}: unexpected file in the image folder; expected only subfolders, one per class")
    if not entries:
        raise DataError(f"{root}: holds no class subfolders; expected one subfolder of images per class")
    images: list[tuple[Path, Any]] = []
    labels: list[str] = []
    decoded = 0  # bytes of the decoded images held so far
    for folder in entries:
        files = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
        if not files:
            raise DataError(f"{folder}: class folder holds no images")
        for f in files:
            if f.is_dir():
                raise DataError(f"{f}: unexpected folder inside class folder {folder.name!r}; expected image files")
            if f.suffix.lower() not in IMAGE_EXTS:
                raise DataError(
                    f"{f}: not an image file (expected {', '.join(IMAGE_EXTS)}) in class folder {folder.name!r}"
                )
            regular_file_stat(f, "image file")  # a FIFO or a device would block or never end
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
                    with Image.open(f) as im:  # reads the header only
                        w, h = im.size
                        if w * h > max_pixels:
                            raise Image.DecompressionBombError(f"is {w}x{h} pixels ({w * h / 1e6:.0f} million)")
                        decoded += w * h * 3 * 4  # held as float32 RGB, at most
                        check_size(decoded, str(root), "the images read so far (decoded)")
                        im.load()
                        img = im.copy()
            except Image.DecompressionBombError as exc:
                m = re.search(r"\((\d+) pixels\)", str(exc))  # PIL's own check: more than twice its limit
                found = str(exc) if str(exc).startswith("is ") else "declares too many pixels"
                found = f"declares {int(m.group(1)) / 1e6:.0f} million pixels" if m else found
                raise DataError(
                    f"{f}: {found}, more than the limit of {max_pixels / 1e6:.0f} million pixels per image"
                ) from None
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                reason = "permission denied" if isinstance(exc, PermissionError) else "corrupt or not an image"
                raise DataError(f"{f}: cannot read the image ({reason}: {exc})") from None
            images.append((f, img))
            labels.append(folder.name)
    gray = all(img.mode in _GRAY_MODES for _, img in images)
    mode = "L" if gray else "RGB"
    first_path, first = images[0]
    target = size or (first.height, first.width)
    arrays = []
    for f, img in images:
        if size is None and (img.height, img.width) != target:
            raise DataError(
                f"{f}: is {img.width}x{img.height} pixels but {first_path.relative_to(root)} is "
                f"{first.width}x{first.height}; all images must share one size (or set resize = [H, W] "
                "in the task's [dataset], e.g. with `nasw task init --resize 32x32`)"
            )
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            a = np.asarray(img, dtype=np.float64)
            hi = 65535.0 if img.mode.startswith("I") and a.max() > 255 else 255.0
            img = Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8))
        img = img.convert(mode)
        if size is not None and (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(img, dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else np.transpose(a, (2, 0, 1)))
    y, names = encode_labels(labels, str(root), classes)
    return RawData(
        kind="images",
        path=str(root),
        x=np.stack(arrays),
        y=y,
        classes=names,
        details={"mode": "grayscale" if gray else "RGB", "size": list(target), "resized": size is not None},
    )
