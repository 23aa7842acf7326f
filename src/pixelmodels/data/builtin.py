"""Data sets shipped inside scikit-learn, so they work offline: ``digits`` and ``photos``.

- ``digits``: ``sklearn.datasets.load_digits``, 1797 images of 8x8 with 17 levels (0..16), labels 0-9.
  Split by a fixed permutation ``numpy.random.RandomState(0).permutation(1797)`` (the legacy generator, whose
  stream numpy keeps fixed): its first 360 indices are test, the next 180 valid, the other 1257 train; each
  split keeps the source order (indices sorted).
- ``photos``: RGB patches cut on a fixed grid from the two photographs of ``load_sample_images``
  (china.jpg, flower.jpg, 427x640 each). Non-overlapping ``size x size`` patches, the grid centered in the
  photo; patches in grid columns ``c % 10 == 8`` are valid, ``c % 10 == 9`` test, the rest train, so every
  pixel belongs to one split only. Labels: 0 = china, 1 = flower. A sanity set for RGB models, not a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pixelmodels.data.dataset import SPLITS, DatasetSpec, ImageDataset, register_dataset

DIGITS_SIZES = {"train": 1257, "valid": 180, "test": 360}
DIGITS_LEVELS = 17


def _digits_indices(n: int, split: str) -> np.ndarray:
    perm = np.random.RandomState(0).permutation(n)
    test, valid = DIGITS_SIZES["test"], DIGITS_SIZES["valid"]
    chosen = {"test": perm[:test], "valid": perm[test : test + valid], "train": perm[test + valid :]}[split]
    return np.sort(chosen)


def load_digits(split: str, data_dir: Path) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)  # (1797, 8, 8), values 0..16 stored as float64 by sklearn
    index = _digits_indices(len(images), split)
    x = torch.from_numpy(images[index]).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(bunch.target[index].astype(np.int64))  # (N,)
    return ImageDataset(
        x, y, DIGITS_LEVELS, name="digits", split=split, num_classes=10, class_names=[str(d) for d in range(10)]
    )


def _sklearn_files(_root: Path, _opts: dict) -> tuple[list[str], Path, bool]:
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates scikit-learn without importing it (2 s)
    return [], Path(spec.origin).parent / "datasets", True


register_dataset(
    DatasetSpec(
        name="digits",
        description="8x8 handwritten digits shipped with scikit-learn (offline; the quickstart's default)",
        loader=load_digits,
        image_shape=(1, 8, 8),
        num_levels=DIGITS_LEVELS,
        num_classes=10,
        splits=DIGITS_SIZES,
        files=_sklearn_files,
    )
)

PHOTO_NAMES = ("china", "flower")


def _photo_grid(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    rows, cols = height // size, width // size
    return rows, cols, (height - rows * size) // 2, (width - cols * size) // 2


def _column_split(col: int) -> str:
    return {8: "valid", 9: "test"}.get(col % 10, "train")


def photo_patches(photos: list[np.ndarray], size: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Cut the ``split`` patches from ``photos`` ((H, W, 3) uint8 each): ``(N, 3, size, size)`` and labels."""
    patches, labels = [], []
    for label, photo in enumerate(photos):
        rows, cols, top, left = _photo_grid(photo.shape[0], photo.shape[1], size)
        for r in range(rows):
            for c in range(cols):
                if _column_split(c) == split:
                    y, x = top + r * size, left + c * size
                    patches.append(photo[y : y + size, x : x + size].transpose(2, 0, 1))  # (3, size, size)
                    labels.append(label)
    return np.stack(patches), np.asarray(labels, dtype=np.int64)


def _check_size(size: object) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or not 2 <= size <= 427:
        raise ValueError(f"photos: size must be an integer in [2, 427], got {size!r}")
    return size


def load_photos(split: str, data_dir: Path, size: int = 32) -> ImageDataset:
    from sklearn.datasets import load_sample_images

    size = _check_size(size)
    photos = load_sample_images().images  # two (427, 640, 3) uint8
    x, y = photo_patches(photos, size, split)
    return ImageDataset(
        torch.from_numpy(np.ascontiguousarray(x)),
        torch.from_numpy(y),
        256,
        name="photos",
        split=split,
        num_classes=2,
        class_names=list(PHOTO_NAMES),
    )


def _photo_sizes(opts: dict) -> dict[str, int]:
    size = _check_size(opts["size"])
    rows, cols, _, _ = _photo_grid(427, 640, size)
    per_col = {s: sum(_column_split(c) == s for c in range(cols)) for s in SPLITS}
    return {s: 2 * rows * per_col[s] for s in SPLITS}


register_dataset(
    DatasetSpec(
        name="photos",
        description="RGB patches of scikit-learn's two sample photos, split by image region (offline RGB sanity set)",
        loader=load_photos,
        image_shape=lambda opts: (3, _check_size(opts["size"]), opts["size"]),
        num_levels=256,
        num_classes=2,
        splits=_photo_sizes,
        options={"size": 32},
        files=_sklearn_files,
    )
)
