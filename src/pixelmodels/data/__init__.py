"""Data sets by name (DESIGN.md section 4): integer images ``(N, C, H, W)`` kept as uint8, values in [0, K).

    >>> from pixelmodels.data import load_dataset
    >>> train = load_dataset("digits", "train")          # 1257 images (1, 8, 8), 17 levels, labels 0-9
    >>> image, label = train[0]
    >>> binary = load_dataset("mnist", "test", num_levels=2)   # x * 2 // 256

See docs/data.md for every data set, its splits and where its files go.
"""

from pixelmodels.data import builtin, cifar, files, mnist, photographs  # noqa: F401  (importing registers the data sets)
from pixelmodels.data.dataset import (
    SPLITS,
    ImageDataset,
    available_datasets,
    dataset_info,
    download_dataset,
    load_dataset,
    quantize,
    resolve_data_dir,
)
from pixelmodels.data.photographs import RandomCrops, dataset_images, load_images

__all__ = [
    "SPLITS",
    "RandomCrops",
    "dataset_images",
    "load_images",
    "ImageDataset",
    "available_datasets",
    "dataset_info",
    "download_dataset",
    "load_dataset",
    "quantize",
    "resolve_data_dir",
]
