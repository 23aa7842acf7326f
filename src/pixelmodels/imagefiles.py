"""Image files <-> integer level tensors, for the command line (compress / decompress, and through
``open_image`` every command that reads an image: complete, nll-map).

8-bit files hold K-level images as ``round(l 255 / (K-1))``; reading refuses values off that grid, since a
lossless codec must give back exactly what it read.

What is read (``open_image``): 8-bit grey, RGB, palette and 1-bit files, fully decoded (a truncated file is an
error, not a half-black image). An alpha channel is dropped when every pixel is opaque; any transparent pixel is
refused (what it should show is the user's call). 16-bit and float images are refused rather than clipped to 8
bits; a model with more than 256 levels reads a ``.npy`` of levels instead. Every refusal is an
``ImageFileError`` (a ``ValueError``) whose message names the file; a missing file is a ``FileNotFoundError``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

#: Pillow modes of more than 8 bits per channel: converting them to "L" clamps, so they are refused.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class ImageFileError(ValueError):
    """An image file that cannot be read exactly: not an image, truncated, 16-bit, transparent, or the wrong size."""


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file; returns a PIL image in mode "L" (grey) or "RGB".

    Raises:
        FileNotFoundError: no file at ``path``.
        ImageFileError: anything else that cannot be read exactly (see the module docstring).
    """
    try:
        img = Image.open(path)
        img.load()  # decode now: a truncated file fails here, not later with a traceback
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise ImageFileError(f"{path} is a directory, not an image file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageFileError(f"cannot read image {path}: {err}") from None
    if img.mode in WIDE_MODES:
        raise ImageFileError(
            f"{path} is a {'16-bit' if '16' in img.mode else '32-bit'} image (mode {img.mode}); pixelmodels reads "
            f"8-bit images only and will not clip it: convert it to 8 bits, or give a .npy of levels"
        )
    if "A" in img.getbands() or "transparency" in img.info:
        with_alpha = img.convert("RGBA" if img.mode in ("RGB", "RGBA", "P", "PA") else "LA")
        if (np.asarray(with_alpha.getchannel("A")) != 255).any():
            raise ImageFileError(f"{path} has transparent pixels; give an opaque grey or RGB image")
        img = with_alpha.convert("RGB" if with_alpha.mode == "RGBA" else "L")
    return img if img.mode in ("L", "RGB") else img.convert("RGB" if len(img.getbands()) >= 3 else "L")


def levels_from_pixels(pixels: np.ndarray, num_levels: int) -> np.ndarray:
    """8-bit pixel values -> levels in [0, K): round(v (K-1) / 255). Refuses values that the inverse map would
    not give back (they are not on the K-level grid), since compressing them would not be lossless."""
    v = pixels.astype(np.int64)
    levels = (2 * v * (num_levels - 1) + 255) // 510
    if not np.array_equal(pixels_from_levels(levels, num_levels), v):
        raise ValueError(
            f"the image has 8-bit values that are not on the model's {num_levels}-level grid "
            f"(0, 255/{num_levels - 1}, ...); compressing it with this model would not be lossless"
        )
    return levels


def pixels_from_levels(levels: np.ndarray, num_levels: int) -> np.ndarray:
    """Levels in [0, K) -> 8-bit pixel values: round(l 255 / (K-1))."""
    return ((2 * levels.astype(np.int64) * 255 + num_levels - 1) // (2 * (num_levels - 1))).astype(np.uint8)


def read_image_files(paths: list[str], image_shape: tuple[int, int, int], num_levels: int) -> torch.Tensor:
    """Read PNG/other image files (8-bit grey or RGB) or one ``.npy`` of levels into (N, C, H, W) int64 levels."""
    c, h, w = image_shape
    if len(paths) == 1 and str(paths[0]).endswith(".npy"):
        arr = np.load(paths[0], allow_pickle=False)
        if arr.ndim == 3 and tuple(arr.shape) != tuple(image_shape) and c == 1:
            arr = arr[:, None]  # (N, H, W) grey
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{paths[0]}: expected an integer array of levels, got dtype {arr.dtype}")
        return torch.from_numpy(arr.astype(np.int64))
    if num_levels > 256:
        raise ImageFileError(f"a {num_levels}-level model needs a .npy of levels: 8-bit image files cannot hold them")
    images = []
    for path in paths:
        arr = np.asarray(open_image(path))  # (H, W) or (H, W, 3)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        if c == 1 and arr.shape[2] == 3:
            if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                raise ImageFileError(f"{path}: is a colour image; the model is for grey images")
            arr = arr[..., :1]
        if c == 3 and arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        if arr.shape[:2] != (h, w):
            raise ImageFileError(f"{path}: is {arr.shape[1]}x{arr.shape[0]} pixels; the model takes {w}x{h}")
        images.append(levels_from_pixels(arr.transpose(2, 0, 1), num_levels))
    return torch.from_numpy(np.stack(images))


def write_image_files(images: torch.Tensor, out: str, num_levels: int) -> list[str]:
    """Write (N, C, H, W) levels to ``out``: a ``.npy`` of levels, or image files (one image: ``out`` itself;
    several: ``stem_0000.png``, ...). Written to temporary files first and renamed, so a failure never leaves a
    half-written output. Returns the paths written."""
    import os
    from pathlib import Path

    from PIL import Image

    out_path = Path(out)
    arr = images.cpu().numpy()
    dtype = np.uint8 if num_levels <= 256 else np.uint16
    if out_path.suffix == ".npy":
        targets = {out_path: lambda f: np.save(f, arr.astype(dtype), allow_pickle=False)}
    else:
        if num_levels > 256:
            raise ValueError(f"{num_levels} levels do not fit an 8-bit image file: write a .npy")
        names = (
            [out_path]
            if len(arr) == 1
            else [out_path.with_name(f"{out_path.stem}_{i:04d}{out_path.suffix}") for i in range(len(arr))]
        )
        fmt = Image.registered_extensions().get(out_path.suffix.lower())
        if fmt is None:
            raise ValueError(f"unknown image file extension {out_path.suffix!r}: use .png or .npy")
        targets = {}
        for name, img in zip(names, arr, strict=True):
            pixels = pixels_from_levels(img, num_levels).transpose(1, 2, 0)  # (H, W, C)
            pil = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
            targets[name] = lambda f, pil=pil: pil.save(f, format=fmt)
    temps = []
    try:
        for name, write in targets.items():
            tmp = name.with_name(f".{name.name}.tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                write(f)
            temps.append((tmp, name))
        for tmp, name in temps:
            os.replace(tmp, name)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
    return [str(name) for name in targets]
