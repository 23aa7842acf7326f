"""Real photographs: ``photographs`` (Wikimedia Commons, training) and ``kodak`` (the Kodak suite, test only).

Files: ``<data>/wikipedia_photos/*.png`` (49 photos of 0.9-1.3 Mpixel) and ``<data>/kodak/kodim*.png`` (24
images of 768x512 or 512x768); see ``../shared/data/README.md`` for where they come from.

- ``photographs``: split by photograph in sorted file order: the first 40 are train, the next 5 valid, the last
  4 test, so no photograph is in two splits.
- ``kodak``: ``test`` only (any other split is a ValueError naming ``test``). Nothing may train or tune on it.

Options (both sets): ``size`` = 32 cuts non-overlapping ``size x size`` patches on a grid anchored at the
top-left corner (the right and bottom remainders are dropped); patches come in file order, then in raster order
of the grid. ``crop`` = ``"grid"`` (that) or ``"random"``: the train split then also carries a
:class:`RandomCrops`, from which the trainer draws fresh crops every epoch (item ``i`` of epoch ``e`` is a
uniformly placed crop of the same photograph as grid patch ``i``, its position a function of
``(seed, e, i)`` only, so a resumed run sees the same crops). ``images`` keeps the grid patches (the epoch
length, and what code that does not know about random crops sees). The valid and test splits are always the
grid, so their scores stay comparable.

Whole images: :func:`load_images` (any PNG/JPEG paths) and :func:`dataset_images` (a split of these sets) return
lists of uint8 ``(3, H, W)`` tensors. Decoding: greyscale (``L``, ``1``) and palette images without transparency
are converted to RGB; images with an alpha channel (``RGBA``, ``LA``, palette with transparency) are refused,
since dropping alpha would silently change the picture; other modes (16-bit, CMYK, float) are refused.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from pixelmodels.data.dataset import DatasetSpec, ImageDataset, quantize, register_dataset

PHOTOGRAPH_SPLITS = {"train": 40, "valid": 5, "test": 4}  # photographs per split, in sorted file order
PHOTO_DIRS = {"photographs": ("wikipedia_photos", "*.png"), "kodak": ("kodak", "kodim*.png")}
CROPS = ("grid", "random")
_CONVERTED = {"RGB": None, "L": "RGB", "1": "RGB", "P": "RGB"}


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """One image file as a uint8 ``(3, H, W)`` array; a one-line ValueError naming the file when unreadable.

    Decoded files are cached per process (by path, size and modification time, up to ``DECODE_CACHE`` files), so
    the train, valid and test splits or repeated loads decode each photograph once; the array is read-only.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    return _decode(str(path), stat.st_size, stat.st_mtime_ns)


DECODE_CACHE = 80  # every photograph and Kodak image (49 + 24), ~3.5 MB each


@functools.lru_cache(maxsize=DECODE_CACHE)
def _decode(name: str, _size: int, _mtime_ns: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = Path(name)
    try:
        with Image.open(path) as img:
            img.load()  # Image.open is lazy: a truncated file only fails here
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                raise ValueError(f"{path}: has an alpha channel (mode {img.mode!r}); convert it to RGB first")
            if img.mode not in _CONVERTED:
                raise ValueError(f"{path}: unsupported image mode {img.mode!r}; expected 8-bit RGB or greyscale")
            if _CONVERTED[img.mode]:
                img = img.convert("RGB")
            array = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    array = np.ascontiguousarray(array.transpose(2, 0, 1))
    array.flags.writeable = False  # shared by every caller through the cache
    return array


def load_images(paths: list[str | os.PathLike]) -> list[torch.Tensor]:
    """Whole images of any size as uint8 ``(3, H, W)`` tensors, in the order given (conversions: module doc)."""
    return [torch.from_numpy(read_rgb(p).copy()) for p in paths]


def photo_files(name: str, data_dir: Path) -> list[Path]:
    """The sorted files of ``photographs`` or ``kodak``; FileNotFoundError (one line) when absent."""
    folder, pattern = PHOTO_DIRS[name]
    directory = Path(data_dir) / folder
    if not directory.is_dir():
        raise FileNotFoundError(f"{name}: no directory {directory}; put the {pattern} files there (see docs/data.md)")
    files = sorted(directory.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{name}: no {pattern} files in {directory} (see docs/data.md)")
    return files


def split_files(name: str, split: str, data_dir: Path) -> list[Path]:
    files = photo_files(name, data_dir)
    if name == "kodak":
        if split != "test":
            raise ValueError(f"kodak has only the 'test' split (it is test data), got {split!r}")
        return files
    need = sum(PHOTOGRAPH_SPLITS.values())
    if len(files) != need:
        raise ValueError(f"photographs: expected {need} PNG files in {files[0].parent}, found {len(files)}")
    start = 0
    for part, count in PHOTOGRAPH_SPLITS.items():
        if part == split:
            return files[start : start + count]
        start += count
    raise ValueError(f"unknown split {split!r} for photographs")


def dataset_images(
    name: str, split: str = "test", data_dir: str | os.PathLike | None = None, num_levels: int | None = None
) -> list[torch.Tensor]:
    """Whole images of a split of ``photographs`` or ``kodak``: uint8 ``(3, H, W)`` tensors in file order,
    quantized to ``num_levels`` when given (``x * K // 256``)."""
    from pixelmodels.data.dataset import resolve_data_dir

    if name not in PHOTO_DIRS:
        raise ValueError(f"whole images come from {', '.join(PHOTO_DIRS)}, not {name!r}")
    images = load_images(split_files(name, split, resolve_data_dir(data_dir)))
    return images if num_levels is None else [quantize(x[None], 256, num_levels)[0] for x in images]


def grid_origins(shapes: list[tuple[int, int]], size: int) -> np.ndarray:
    """``(N, 3)`` rows of (photo, top, left) for every grid patch: file order, then raster order."""
    rows = []
    for p, (h, w) in enumerate(shapes):
        tops, lefts = np.meshgrid(np.arange(h // size) * size, np.arange(w // size) * size, indexing="ij")
        rows.append(np.stack([np.full(tops.size, p), tops.ravel(), lefts.ravel()], 1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)


def cut(photos: list[np.ndarray], origins: np.ndarray, size: int) -> np.ndarray:
    """The ``size x size`` patches at ``origins`` (photo, top, left): ``(N, 3, size, size)`` uint8."""
    out = np.empty((len(origins), 3, size, size), np.uint8)
    for i, (p, top, left) in enumerate(origins):
        out[i] = photos[p][:, top : top + size, left : left + size]
    return out


class RandomCrops:
    """Fresh random crops per epoch from decoded photographs (kept in memory as uint8 ``(3, H, W)`` arrays).

    Item ``i`` is a crop of photo ``photo_of[i]``; in epoch ``e`` of a run seeded ``s`` its top-left corner is
    drawn uniformly from ``numpy.random.default_rng([s, e])`` (one draw per item, in item order), so
    ``batch(idx, epoch, seed)`` depends only on ``(seed, epoch, idx)``.
    """

    def __init__(self, photos: list[np.ndarray], photo_of: np.ndarray, size: int, num_levels: int = 256):
        self.photos, self.photo_of, self.size, self.num_levels = photos, photo_of, size, num_levels
        self._room = np.array([[p.shape[1] - size + 1, p.shape[2] - size + 1] for p in photos])  # (P, 2)
        self._key: tuple[int, int] | None = None
        self._origins = np.zeros((0, 3), np.int64)

    def __len__(self) -> int:
        return len(self.photo_of)

    def origins(self, epoch: int, seed: int) -> np.ndarray:
        """``(N, 3)`` rows of (photo, top, left) for every item of ``epoch``."""
        if self._key != (seed, epoch):
            rng = np.random.default_rng([seed, epoch])
            room = self._room[self.photo_of]  # (N, 2)
            corner = (rng.random((len(self), 2)) * room).astype(np.int64)  # uniform in [0, room)
            self._origins, self._key = np.concatenate([self.photo_of[:, None], corner], 1), (seed, epoch)
        return self._origins

    def batch(self, idx: torch.Tensor, epoch: int, seed: int) -> torch.Tensor:
        """The crops of items ``idx`` in ``epoch``: uint8 ``(len(idx), 3, size, size)``."""
        return torch.from_numpy(cut(self.photos, self.origins(epoch, seed)[idx.numpy()], self.size))

    def quantized(self, num_levels: int) -> RandomCrops:
        if num_levels == self.num_levels:
            return self
        levels = torch.arange(self.num_levels, dtype=torch.uint8)[None]  # (1, L)
        table = quantize(levels, self.num_levels, num_levels)[0].numpy()  # (L,) value -> quantized value
        photos = [table[p] for p in self.photos]
        return RandomCrops(photos, self.photo_of, self.size, num_levels)


def _check_options(name: str, size: int, crop: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name}: size must be a positive integer, got {size!r}")
    if crop not in CROPS:
        raise ValueError(f"{name}: crop must be one of {', '.join(CROPS)}, got {crop!r}")


def _loader(name: str):
    def load(split: str, data_dir: Path, size: int = 32, crop: str = "grid") -> ImageDataset:
        _check_options(name, size, crop)
        files = split_files(name, split, data_dir)
        photos = [read_rgb(f) for f in files]  # decoded once; crops are cut from these arrays
        small = [str(f) for f, p in zip(files, photos, strict=True) if min(p.shape[1:]) < size]
        if small:
            raise ValueError(f"{name}: {small[0]} is smaller than size={size}")
        origins = grid_origins([p.shape[1:] for p in photos], size)
        patches = torch.from_numpy(cut(photos, origins, size))  # (N, 3, size, size)
        crops = RandomCrops(photos, origins[:, 0].copy(), size) if crop == "random" and split == "train" else None
        return ImageDataset(patches, None, 256, name=name, split=split, random_crops=crops)

    return load


def _presence(name: str):
    def presence(data_dir: Path, _opts: dict) -> tuple[list[str], Path, bool]:
        folder, pattern = PHOTO_DIRS[name]
        directory = data_dir / folder
        return [pattern], directory, directory.is_dir() and any(directory.glob(pattern))

    return presence


register_dataset(
    DatasetSpec(
        name="photographs",
        description="49 Wikimedia Commons photographs, split 40/5/4 by photo; grid or random size x size crops",
        loader=_loader("photographs"),
        image_shape=lambda opts: (3, opts["size"], opts["size"]),
        num_levels=256,
        num_classes=None,
        splits=lambda opts: {"train": None, "valid": None, "test": None},
        options={"size": 32, "crop": "grid"},
        files=_presence("photographs"),
    )
)
register_dataset(
    DatasetSpec(
        name="kodak",
        description="the 24 Kodak test images (768x512), test split only; size x size grid patches",
        loader=_loader("kodak"),
        image_shape=lambda opts: (3, opts["size"], opts["size"]),
        num_levels=256,
        num_classes=None,
        splits=lambda opts: {"train": 0, "valid": 0, "test": 24 * (768 // opts["size"]) * (512 // opts["size"])},
        options={"size": 32},
        files=_presence("kodak"),
    )
)
