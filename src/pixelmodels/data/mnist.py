"""MNIST (LeCun et al.; the four IDX files) and binarized MNIST (Larochelle & Murray 2011, fixed binarization).

- ``mnist``: ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz`` (gzipped or not) in ``<data_dir>/mnist/`` (or ``<data_dir>/MNIST/raw/`` or
  ``<data_dir>``). 256 levels, labels 0-9. Splits: train = the first 50000 training images, valid = the last
  10000 training images, test = the 10000 t10k images.
- ``binarized_mnist``: ``binarized_mnist_{train,valid,test}.amat`` (or ``.amat.gz``) in
  ``<data_dir>/binarized_mnist/`` (or ``<data_dir>``): one image a line, 784 values 0/1. The standard split
  50000 / 10000 / 10000, as shipped. 2 levels, no labels.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from pixelmodels.data.dataset import DatasetSpec, ImageDataset, missing_files_error, register_dataset, to_tensor
from pixelmodels.data.download import ChecksumError, fetch

log = logging.getLogger(__name__)

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_SHA256 = {  # of the original .gz files, as published
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_SUBDIRS = ("mnist", "MNIST/raw")
MNIST_VALID = 10000  # the last 10000 training images

BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_SHA256 = {  # of the uncompressed .amat files
    "binarized_mnist_train.amat": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "binarized_mnist_valid.amat": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "binarized_mnist_test.amat": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
BINARIZED_SIZES = {"train": 50000, "valid": 10000, "test": 10000}
IMAGE_DIMS = 784


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when it ends in ``.gz``; a damaged file gives one ValueError."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a valid gzip file, or truncated ({err})") from None


def parse_idx(data: bytes, path: Path, magic: int, dims: tuple[int, ...]) -> np.ndarray:
    """Parse an unsigned-byte IDX file (big-endian magic, then one uint32 per dimension, then the bytes)."""
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise ValueError(f"{path}: IDX magic number {found} where {magic} was expected; not the right MNIST file")
    ndim = len(dims) + 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if tuple(shape[1:]) != dims:
        raise ValueError(f"{path}: IDX shape {shape}, expected (N, {', '.join(map(str, dims))})")
    if len(data) - header != math.prod(shape):
        raise ValueError(
            f"{path}: {len(data) - header} data bytes but the header announces {shape} "
            f"({math.prod(shape)} bytes); the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _mnist_files(split: str) -> list[str]:
    prefix = "t10k" if split == "test" else "train"
    return [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]


def _locate(data_dir: Path, subdirs: tuple[str, ...], names: list[str]) -> list[Path] | None:
    """Paths of ``names`` (each also accepted without its ``.gz``) in the first directory holding them all."""
    for folder in [data_dir / s for s in subdirs] + [data_dir]:
        found = []
        for name in names:
            options = [folder / name, folder / name.removesuffix(".gz"), folder / f"{name}.gz"]
            found.append(next((p for p in options if p.is_file()), None))
        if all(found):
            return found
    return None


def _download(names: list[str], folder: Path, mirrors: tuple[str, ...], sums: dict[str, str]) -> list[Path]:
    paths = []
    for name in names:
        for i, mirror in enumerate(mirrors):
            try:
                paths.append(fetch(mirror + name, folder / name, sums[name]))
                break
            except (OSError, ChecksumError) as err:  # unreachable or corrupted mirror: try the next one
                if i == len(mirrors) - 1:
                    raise
                log.warning("%s; trying the next mirror", err)
    return paths


def load_mnist(split: str, data_dir: Path, download: bool = False) -> ImageDataset:
    names = _mnist_files(split)
    paths = _locate(data_dir, MNIST_SUBDIRS, names)
    if paths is None:
        if not download:
            raise missing_files_error("mnist", names, data_dir / "mnist", MNIST_MIRRORS[0])
        paths = _download(names, data_dir / "mnist", MNIST_MIRRORS, MNIST_SHA256)
    images = parse_idx(read_bytes(paths[0]), paths[0], 2051, (28, 28))  # (N, 28, 28)
    labels = parse_idx(read_bytes(paths[1]), paths[1], 2049, ())  # (N,)
    expected = 10000 if split == "test" else 60000
    if len(images) != expected or len(labels) != expected:
        raise ValueError(f"{paths[0]}: {len(images)} images and {len(labels)} labels, expected {expected} of each")
    if labels.max() > 9:
        raise ValueError(f"{paths[1]}: label {labels.max()} outside 0-9")
    if split != "test":
        cut = len(images) - MNIST_VALID
        part = slice(0, cut) if split == "train" else slice(cut, None)
        images, labels = images[part], labels[part]
    x = to_tensor(images).unsqueeze(1)  # (N, 1, 28, 28)
    y = to_tensor(labels).long()  # (N,)
    return ImageDataset(x, y, 256, name="mnist", split=split, num_classes=10, class_names=[str(d) for d in range(10)])


def parse_amat(data: bytes, path: Path) -> np.ndarray:
    """Binarized MNIST ``.amat`` text: one image a line, 784 values 0/1 separated by white space."""
    packed = data.translate(None, b" \t\r")
    if not packed.endswith(b"\n"):
        packed += b"\n"
    chars = np.frombuffer(packed, dtype=np.uint8)
    if chars.size % (IMAGE_DIMS + 1) == 0:  # fast path: single-character values
        rows = chars.reshape(-1, IMAGE_DIMS + 1)  # (N, 785): 784 digits and a newline
        pixels = rows[:, :IMAGE_DIMS]
        if (rows[:, IMAGE_DIMS] == ord("\n")).all() and ((pixels == ord("0")) | (pixels == ord("1"))).all():
            return pixels - ord("0")  # (N, 784)
    images = []  # slow path: tokens such as "1.0", or a damaged line to report
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = np.array(line.split(), dtype=np.float64)
        except ValueError:
            raise ValueError(f"{path}: line {number} holds a value that is not a number") from None
        if values.size != IMAGE_DIMS or not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"{path}: line {number} has {values.size} values (expected {IMAGE_DIMS} values 0/1)")
        images.append(values.astype(np.uint8))
    return np.stack(images) if images else np.zeros((0, IMAGE_DIMS), dtype=np.uint8)


def load_binarized_mnist(split: str, data_dir: Path, download: bool = False) -> ImageDataset:
    name = f"binarized_mnist_{split}.amat"
    paths = _locate(data_dir, ("binarized_mnist",), [name])
    if paths is None:
        if not download:
            raise missing_files_error(
                "binarized_mnist", [name + " (or .amat.gz)"], data_dir / "binarized_mnist", BINARIZED_URL + name
            )
        paths = _download([name], data_dir / "binarized_mnist", (BINARIZED_URL,), BINARIZED_SHA256)
    pixels = parse_amat(read_bytes(paths[0]), paths[0])  # (N, 784)
    if len(pixels) != BINARIZED_SIZES[split]:
        raise ValueError(f"{paths[0]}: {len(pixels)} images, expected {BINARIZED_SIZES[split]}")
    x = torch.from_numpy(np.ascontiguousarray(pixels)).view(-1, 1, 28, 28)  # (N, 1, 28, 28)
    return ImageDataset(x, None, 2, name="binarized_mnist", split=split)


def _mnist_presence(data_dir: Path, _opts: dict) -> tuple[list[str], Path, bool]:
    names = list(MNIST_SHA256)
    return names, data_dir / "mnist", _locate(data_dir, MNIST_SUBDIRS, names) is not None


def _binarized_presence(data_dir: Path, _opts: dict) -> tuple[list[str], Path, bool]:
    names = [f"{n}.gz" for n in BINARIZED_SHA256]
    return names, data_dir / "binarized_mnist", _locate(data_dir, ("binarized_mnist",), names) is not None


register_dataset(
    DatasetSpec(
        name="mnist",
        description="MNIST handwritten digits, 8-bit grayscale (IDX files)",
        loader=load_mnist,
        image_shape=(1, 28, 28),
        num_levels=256,
        num_classes=10,
        splits={"train": 50000, "valid": 10000, "test": 10000},
        options={"download": False},
        files=_mnist_presence,
        url=MNIST_MIRRORS[0],
    )
)

register_dataset(
    DatasetSpec(
        name="binarized_mnist",
        description="Binarized MNIST, Larochelle & Murray's fixed binarization (the PixelRNN paper's nats table)",
        loader=load_binarized_mnist,
        image_shape=(1, 28, 28),
        num_levels=2,
        num_classes=None,
        splits=dict(BINARIZED_SIZES),
        options={"download": False},
        files=_binarized_presence,
        url=BINARIZED_URL,
    )
)
