"""The data set object, the registry of named data sets, data-directory resolution and quantization.

Every loader returns an :class:`ImageDataset`: integer images ``(N, C, H, W)`` kept as ``uint8`` (never float),
values in ``[0, num_levels)``, with labels where the source has them. See docs/data.md for every data set.
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
DATA_ENV = "PIXELMODELS_DATA"
QUANTIZE_CHUNK = 4096  # images per step of quantize()


class ImageDataset(Dataset):
    """Integer images with optional labels.

    Attributes:
        images: uint8 tensor ``(N, C, H, W)``, values in ``[0, num_levels)``; may be backed by a memory map.
        labels: int64 tensor ``(N,)`` or ``None`` when the data set has no labels.
        num_levels: K, the number of pixel values.
        image_shape: ``(C, H, W)``.
        num_classes: number of classes, or ``None`` without labels.
        class_names: names of the classes where the source gives them, else ``None``.
        name, split: where the data came from.
        random_crops: ``None``, or a :class:`~pixelmodels.data.photographs.RandomCrops` whose ``batch(idx, epoch,
            seed)`` the trainer uses instead of ``images[idx]`` (``images`` then holds the grid patches).

    ``dataset[i]`` is ``(image, label)``: a uint8 ``(C, H, W)`` tensor and an ``int``; the label is ``-1`` when the
    data set has no labels (a ``DataLoader`` can then still collate batches).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        num_levels: int,
        *,
        name: str,
        split: str,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        random_crops=None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"{name}/{split}: images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
            )
        if labels is not None and (labels.dim() != 1 or len(labels) != len(images)):
            raise ValueError(f"{name}/{split}: {len(images)} images but labels of shape {tuple(labels.shape)}")
        if not 2 <= num_levels <= 256:
            raise ValueError(f"{name}/{split}: num_levels must be in [2, 256], got {num_levels}")
        self.images = images  # (N, C, H, W) uint8
        self.labels = None if labels is None else labels.long()  # (N,)
        self.num_levels = int(num_levels)
        self.image_shape: tuple[int, int, int] = tuple(images.shape[1:])
        self.num_classes = num_classes if labels is not None else None
        self.class_names = class_names
        self.name = name
        self.split = split
        self.random_crops = random_crops  # photographs with crop="random": fresh training crops per epoch

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = -1 if self.labels is None else int(self.labels[index])
        return self.images[index], label

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, num_levels={self.num_levels}, num_classes={self.num_classes})"
        )


def quantize(images: torch.Tensor, source_levels: int, num_levels: int) -> torch.Tensor:
    """Map values in ``[0, source_levels)`` to ``[0, num_levels)`` by ``x * num_levels // source_levels``.

    Each output level covers an equal share of the source levels (for 256 -> 2: 0..127 -> 0, 128..255 -> 1).
    Raises ValueError when ``num_levels > source_levels`` (that would invent values that never occur).
    """
    try:
        num_levels = operator.index(num_levels)  # ints, numpy integers; not floats
    except TypeError:
        raise ValueError(f"num_levels must be an integer, got {num_levels!r}") from None
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}")
    if num_levels > source_levels:
        raise ValueError(f"num_levels={num_levels} exceeds the data set's {source_levels} levels")
    if num_levels == source_levels:
        return images
    if len(images) and int(images.max()) >= source_levels:
        raise ValueError(f"value {int(images.max())} outside the source's {source_levels} levels")
    table = (torch.arange(source_levels) * num_levels // source_levels).to(torch.uint8)  # (L,)
    out = torch.empty(images.shape, dtype=torch.uint8)  # (N, C, H, W)
    for start in range(0, len(images), QUANTIZE_CHUNK):  # chunks bound the int64 index memory for big maps
        out[start : start + QUANTIZE_CHUNK] = table[images[start : start + QUANTIZE_CHUNK].long()]
    return out


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$PIXELMODELS_DATA``, else ``~/.cache/pixelmodels``
    (``$XDG_CACHE_HOME/pixelmodels`` when that is set)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "pixelmodels"


def missing_files_error(name: str, files: list[str], directory: Path, url: str | None = None) -> FileNotFoundError:
    """The one-line error for absent data files: which files, where to put them, where to get them."""
    msg = f"{name}: missing {', '.join(files)}; put them in {directory}"
    if url:
        msg += f" (download from {url}: `pixelmodels download {name}`, or download=True in Python)"
    return FileNotFoundError(msg)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch view of a uint8/int numpy array (no copy when possible)."""
    if not array.flags.writeable:  # torch refuses read-only buffers without a warning; copy-on-write maps are fine
        array = np.array(array)
    return torch.from_numpy(array)


@dataclass
class DatasetSpec:
    """One registered data set. ``loader(split, data_dir, **options) -> ImageDataset`` on the source levels."""

    name: str
    description: str
    loader: Callable[..., ImageDataset]
    image_shape: tuple[int, int, int] | Callable[[dict], tuple[int, int, int] | None] | None  # None: from the files
    num_levels: int
    num_classes: int | None
    splits: dict[str, int | None] | Callable[[dict], dict[str, int | None]]  # split -> size (None: from the files)
    options: dict[str, object] = field(default_factory=dict)  # option -> default
    files: Callable[[Path, dict], tuple[list[str], Path, bool]] | None = None  # -> (files, directory, present)
    url: str | None = None


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _DATASETS:
        raise ValueError(f"data set {spec.name!r} registered twice")
    _DATASETS[spec.name] = spec
    return spec


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_DATASETS)


def get_spec(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(available_datasets())}")
    return _DATASETS[name]


def check_options(spec: DatasetSpec, options: dict) -> dict:
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(sorted(spec.options)) or "none"
        raise ValueError(f"unknown option(s) {unknown} for data set {spec.name!r}; valid: {valid}")
    return {**spec.options, **options}


def parse_split(split: str) -> list[str]:
    """``"train"`` -> ``["train"]``; ``"train+valid"`` -> both, concatenated in that order."""
    parts = split.split("+") if isinstance(split, str) else [split]
    for part in parts:
        if part not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)} (or several joined by '+')")
    if len(set(parts)) != len(parts):
        raise ValueError(f"split {split!r} names a part twice")
    return parts


def load_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    num_levels: int | None = None,
    **options,
) -> ImageDataset:
    """Load a named data set split as integer images.

    Args:
        name: one of :func:`available_datasets`.
        split: ``"train"``, ``"valid"`` or ``"test"``; several joined by ``"+"`` (e.g. ``"train+valid"``) are
            concatenated.
        data_dir: where the files are; default ``$PIXELMODELS_DATA``, else ``~/.cache/pixelmodels``.
        num_levels: quantize to K levels by ``x * K // L`` (L = the source's levels); K must be <= L.
        **options: per data set (``size`` for photos/folder, ``download`` for mnist/binarized_mnist/cifar10, ...;
            see docs/data.md). Unknown options raise ValueError.

    Raises:
        ValueError: unknown name, split or option; corrupt files (the message names the file).
        FileNotFoundError: files absent (the message names them and the directory to put them in).
    """
    spec = get_spec(name)
    parts = parse_split(split)
    opts = check_options(spec, options)
    root = resolve_data_dir(data_dir)
    pieces = [spec.loader(part, root, **opts) for part in parts]
    ds = pieces[0]
    if len(pieces) > 1 and any(p.random_crops is not None for p in pieces):
        raise ValueError(f"{name}: crop='random' needs a single split, got {split!r}")
    if len(pieces) > 1:
        labels = None if any(p.labels is None for p in pieces) else torch.cat([p.labels for p in pieces])
        ds = ImageDataset(
            torch.cat([p.images for p in pieces]),
            labels,
            ds.num_levels,
            name=name,
            split=split,
            num_classes=ds.num_classes,
            class_names=ds.class_names,
        )
    if num_levels is not None:
        ds = ImageDataset(
            quantize(ds.images, ds.num_levels, num_levels),
            ds.labels,
            num_levels,
            name=name,
            split=split,
            num_classes=ds.num_classes,
            class_names=ds.class_names,
            random_crops=None if ds.random_crops is None else ds.random_crops.quantized(num_levels),
        )
    log.info("loaded %r", ds)
    return ds


def dataset_info(name: str, data_dir: str | os.PathLike | None = None, **options) -> dict:
    """What is known about a data set without loading it: shape, levels, classes, split sizes, and whether
    its files are present (``files_present``) in the directory where they are expected (``directory``)."""
    spec = get_spec(name)
    opts = check_options(spec, options)
    root = resolve_data_dir(data_dir)
    files, directory, present = spec.files(root, opts) if spec.files else ([], root, None)
    shape = spec.image_shape(opts) if callable(spec.image_shape) else spec.image_shape
    splits = spec.splits(opts) if callable(spec.splits) else dict(spec.splits)
    return {
        "name": name,
        "description": spec.description,
        "image_shape": shape,
        "num_levels": spec.num_levels,
        "num_classes": spec.num_classes,
        "splits": splits,
        "options": opts,
        "files": files,
        "directory": str(directory),
        "files_present": present,
        "url": spec.url,
    }


def download_dataset(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """Fetch a data set's files from its official URL into the data directory, checking their SHA-256 (files
    already there with the right checksum are kept), then load every split once to check it; returns a one-line
    summary. Sets without a download (files you provide, or shipped with scikit-learn) raise a ValueError that
    says where their files go, except the scikit-learn ones, which need nothing."""
    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    if "download" not in spec.options:
        files, directory, present = spec.files(root, dict(spec.options)) if spec.files else ([], root, None)
        if name in ("digits", "photos"):
            return f"{name}: ships with scikit-learn; nothing to download"
        where = f"put {', '.join(files)} in {directory}" if files else "pass its files as options"
        state = " (present)" if present else ""
        raise ValueError(f"{name} has no official download; {where}{state} (see docs/data.md)")
    sizes = {}
    for split in SPLITS:
        try:
            sizes[split] = len(spec.loader(split, root, **{**spec.options, "download": True}))
        except OSError as err:  # the network: one line naming the URL (FileNotFoundError is an OSError too)
            raise ValueError(str(err).splitlines()[0]) from None
    counts = "/".join(str(n) for n in sizes.values())
    return f"{name}: files verified in {get_spec(name).files(root, {})[1]}; train/valid/test = {counts}"
