"""CIFAR-10 (Krizhevsky 2009), the official "python version" batches, read with a restricted unpickler.

Files: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and (optional, for class names) ``batches.meta``, in
``<data_dir>/cifar-10-batches-py/`` (or ``<data_dir>/cifar10/cifar-10-batches-py/``, ``<data_dir>/cifar10/``,
``<data_dir>``). Each batch is a pickled dict written by Python 2: ``b"data"`` a uint8 array (10000, 3072) whose
rows are 1024 red, 1024 green then 1024 blue values, each plane row-major 32x32; ``b"labels"`` a list of ints
0-9; ``b"filenames"``; ``b"batch_label"``. Splits: the training images of batches 1-5 in order are cut into
train = all but the last tenth (the first 45000 of the official 50000) and valid = the last tenth (the last 5000,
the end of ``data_batch_5``); test = ``test_batch`` (10000).

Pickle can run arbitrary code, so the batches are never read with ``pickle.load``: :func:`safe_load` resolves
only numpy's array and dtype reconstructors (``numpy.core.multiarray._reconstruct`` as Python 2 wrote it, or
``numpy._core``), refuses every other global, refuses object arrays, and checks that the result holds only
plain containers, bytes, str, numbers and numpy arrays.
"""

from __future__ import annotations

import logging
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from pixelmodels.data.dataset import DatasetSpec, ImageDataset, missing_files_error, register_dataset
from pixelmodels.data.download import fetch

log = logging.getLogger(__name__)

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_VALID_FRACTION = 10  # valid = the last 1/10 of the training images (5000 of 50000)
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

try:  # numpy >= 2 moved numpy.core to numpy._core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"array reconstruction of {subtype!r} refused (only numpy.ndarray)")
    return _np_reconstruct(np.ndarray, shape, dtype)


def _dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    if not isinstance(spec, bytes | str):
        raise pickle.UnpicklingError(f"dtype {spec!r} refused")
    dtype = np.dtype(spec.decode("ascii") if isinstance(spec, bytes) else spec, align=bool(align), copy=bool(copy))
    if dtype.hasobject:
        raise pickle.UnpicklingError("object arrays refused")
    return dtype


def _frombuffer(buffer: object, dtype: np.dtype, shape: tuple, order: str) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("object arrays refused")
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order=order)


def _codecs_encode(text: object, encoding: object = "utf-8") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") in pickle protocols 0-2.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED``; everything else raises ``UnpicklingError``."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} refused") from None


def _check_plain(obj: object, depth: int = 0) -> None:
    if depth > 20:
        raise pickle.UnpicklingError("nesting too deep")
    if isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray or obj.dtype.hasobject:
            raise pickle.UnpicklingError("object arrays refused")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, depth + 1)
            _check_plain(value, depth + 1)
    elif isinstance(obj, list | tuple):
        for item in obj:
            _check_plain(item, depth + 1)
    elif not (obj is None or type(obj) in (bytes, str, int, float, bool)):
        raise pickle.UnpicklingError(f"object of type {type(obj).__name__} refused")


def safe_load(path: str | os.PathLike) -> object:
    """Unpickle ``path`` allowing only plain containers, bytes, str, numbers and numeric numpy arrays.

    Raises:
        ValueError: naming the file, for a refused global (e.g. a crafted pickle calling ``os.system``) or a
            damaged file.
    """
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="bytes").load()
        _check_plain(obj)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise ValueError(f"{path}: refused or unreadable pickle ({err})") from None
    return obj


def _text_keys(batch: object, path: Path) -> dict:
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict, found {type(batch).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    batch = _text_keys(safe_load(path), path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise ValueError(f"{path}: 'data' must be a uint8 array (N, 3072), found {type(data).__name__} {shape}")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{path}: 'labels' must be {len(data)} integers 0-9")
    return data.reshape(-1, 3, 32, 32), labels  # rows are R plane, G plane, B plane, each row-major


def _batch_dir(data_dir: Path, names: list[str]) -> Path | None:
    for folder in (data_dir / CIFAR_DIR, data_dir / "cifar10" / CIFAR_DIR, data_dir / "cifar10", data_dir):
        if all((folder / n).is_file() for n in names):
            return folder
    return None


def _download(data_dir: Path) -> Path:
    """Fetch the official archive (SHA-256 checked) and copy its batch files out; no path comes from the tar."""
    archive = fetch(CIFAR_URL, data_dir / "cifar-10-python.tar.gz", CIFAR_SHA256)
    folder = data_dir / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"{CIFAR_DIR}/{n}" for n in [*TRAIN_BATCHES, "test_batch", "batches.meta"]}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name in wanted:
                target = folder / Path(member.name).name
                tmp = target.with_name(target.name + ".part")
                tmp.write_bytes(tar.extractfile(member).read())
                os.replace(tmp, target)
    return folder


def _class_names(folder: Path) -> list[str]:
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return list(CLASS_NAMES)
    meta = _text_keys(safe_load(meta_path), meta_path)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise ValueError(f"{meta_path}: 'label_names' must be a list of 10 names")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar10(split: str, data_dir: Path, download: bool = False) -> ImageDataset:
    names = ["test_batch"] if split == "test" else TRAIN_BATCHES
    folder = _batch_dir(data_dir, names)
    if folder is None:
        if not download:
            raise missing_files_error("cifar10", names, data_dir / CIFAR_DIR, CIFAR_URL)
        folder = _download(data_dir)
    parts = [read_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])  # (N, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])  # (N,)
    if split != "test":
        cut = len(images) - len(images) // CIFAR_VALID_FRACTION
        part = slice(0, cut) if split == "train" else slice(cut, None)
        images, labels = images[part], labels[part]
    x = torch.from_numpy(np.ascontiguousarray(images))
    return ImageDataset(
        x, torch.from_numpy(labels), 256, name="cifar10", split=split, num_classes=10, class_names=_class_names(folder)
    )


def _presence(data_dir: Path, _opts: dict) -> tuple[list[str], Path, bool]:
    names = [*TRAIN_BATCHES, "test_batch", "batches.meta"]
    return names, data_dir / CIFAR_DIR, _batch_dir(data_dir, names[:-1]) is not None


register_dataset(
    DatasetSpec(
        name="cifar10",
        description="CIFAR-10 32x32 RGB, official python batches (restricted unpickler)",
        loader=load_cifar10,
        image_shape=(3, 32, 32),
        num_levels=256,
        num_classes=10,
        splits={"train": 45000, "valid": 5000, "test": 10000},
        options={"download": False},
        files=_presence,
        url=CIFAR_URL,
    )
)
