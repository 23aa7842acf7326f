"""User data: a folder of images (``folder``) and arrays in .npz/.npy files (``npz``, memory-mapped).

``folder`` (options ``path``, ``size`` = 32, ``channels`` = 3): every .png/.jpg/.jpeg under ``path`` (absolute,
or relative to the data directory; default: the data directory itself), searched recursively. Each image is
center-cropped to a square, resized to ``size x size`` (Pillow, bicubic) and converted to RGB (channels=3) or
grayscale (channels=1); 256 levels. Split: if ``path`` holds ``train/`` and ``test/`` folders (and optionally
``valid/`` or ``val/``) they are the splits; otherwise each file goes to a split by a hash of its path relative to
its split folder, ``int(sha1(relpath).hexdigest()[:8], 16) % 10``: 8 -> valid, 9 -> test, else train (about
80/10/10, stable when files are added or removed). Without a ``valid/`` folder, the train folder's files with
bucket 8 are valid. Labels: when every image sits in a sub-folder (``cat/1.png``), the sorted sub-folder names are
the classes; otherwise there are no labels.

``npz`` (options ``path``, ``train``, ``valid``, ``test``, ``layout`` = "auto", ``levels`` = 256,
``label_offset`` = 0): arrays of uint8 (or bool) images in .npz or .npy files (absolute, or relative to the data
directory). Layouts: the downsampled-ImageNet files (key ``data`` of shape (N, 3*S*S), each row R plane, G plane,
B plane, and key ``labels``), or a plain (N, H, W), (N, C, H, W) or (N, H, W, C) array under ``images``, ``x``,
``data``, ``arr_0`` or as the only array (labels under ``labels`` or ``y``, minus ``label_offset``: pass 1 for
ImageNet's 1-based labels). Splits: a file given for a split holds that split; when ``train`` is given and
``valid`` is not, valid is the last N//10 images of the train file and train the rest; with one file ``path`` for
everything, test = the last N//10, valid = the N//10 before, train = the rest. Uncompressed .npz members
(``numpy.savez``) and .npy files are memory-mapped (copy-on-write, the file is never changed); compressed
members (``savez_compressed``) cannot be mapped and are read into memory.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from pixelmodels.data.dataset import DatasetSpec, ImageDataset, register_dataset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _resolve(path: str | Path | None, data_dir: Path) -> Path:
    if path is None:
        return data_dir
    path = Path(path).expanduser()
    return path if path.is_absolute() else data_dir / path


# ---------------------------------------------------------------- folder


def hash_bucket(relpath: str) -> int:
    """The folder split's bucket (0-9) of a file, from its '/'-separated path relative to its split folder."""
    return int(hashlib.sha1(relpath.encode("utf-8")).hexdigest()[:8], 16) % 10


def _images_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _folder_listing(root: Path) -> dict[str, list[tuple[Path, str]]]:
    """split -> [(file, path relative to its split folder)] by the rules in the module docstring."""
    if not root.is_dir():
        raise FileNotFoundError(f"folder: no directory {root}; put the images there or pass path=...")
    listing: dict[str, list[tuple[Path, str]]] = {"train": [], "valid": [], "test": []}
    if (root / "train").is_dir() and (root / "test").is_dir():
        valid_dir = next((root / v for v in ("valid", "val") if (root / v).is_dir()), None)
        for split, folder in (("train", root / "train"), ("test", root / "test"), ("valid", valid_dir)):
            if folder is None:
                continue
            for rel in _images_under(folder):
                carved = split == "train" and valid_dir is None and hash_bucket(rel) == 8
                listing["valid" if carved else split].append((folder / rel, rel))
    else:
        for rel in _images_under(root):
            split = {8: "valid", 9: "test"}.get(hash_bucket(rel), "train")
            listing[split].append((root / rel, rel))
    return listing


def _read_image(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    return array.reshape(size, size, channels).transpose(2, 0, 1)  # (C, size, size)


def load_folder(split: str, data_dir: Path, path: str | None = None, size: int = 32, channels: int = 3) -> ImageDataset:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"folder: size must be a positive integer, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"folder: channels must be 1 or 3, got {channels!r}")
    root = _resolve(path, data_dir)
    listing = _folder_listing(root)
    files = listing[split]
    if not files:
        total = sum(len(v) for v in listing.values())
        raise ValueError(
            f"folder: no images for split {split!r} in {root} ({total} images in all; see docs/data.md "
            "for the split rule)"
        )
    everything = [rel for entries in listing.values() for _, rel in entries]
    labelled = all("/" in rel for rel in everything)
    class_names = sorted({rel.split("/", 1)[0] for rel in everything}) if labelled else None
    images = np.stack([_read_image(p, size, channels) for p, _ in files])  # (N, C, size, size)
    labels = None
    if class_names is not None:
        index = {name: i for i, name in enumerate(class_names)}
        labels = torch.tensor([index[rel.split("/", 1)[0]] for _, rel in files], dtype=torch.long)
    return ImageDataset(
        torch.from_numpy(images),
        labels,
        256,
        name="folder",
        split=split,
        num_classes=len(class_names) if class_names else None,
        class_names=class_names,
    )


def _folder_presence(data_dir: Path, opts: dict) -> tuple[list[str], Path, bool]:
    root = _resolve(opts.get("path"), data_dir)
    present = root.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*"))  # stops at one
    return ["*.png / *.jpg / *.jpeg"], root, present


def _folder_sizes(opts: dict) -> dict[str, int | None]:
    return {"train": None, "valid": None, "test": None}


register_dataset(
    DatasetSpec(
        name="folder",
        description="any folder of PNG/JPEG images, center-cropped and resized (e.g. CelebA-HQ)",
        loader=load_folder,
        image_shape=lambda opts: (opts["channels"], opts["size"], opts["size"]),
        num_levels=256,
        num_classes=None,
        splits=_folder_sizes,
        options={"path": None, "size": 32, "channels": 3},
        files=_folder_presence,
    )
)


# ---------------------------------------------------------------- npz


def _npz_member_memmap(path: Path, member: str) -> np.ndarray | None:
    """Map an uncompressed member of an .npz without reading it; None when the member is compressed."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip local file header: its name and extra-field lengths locate the data
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: corrupt zip local header for {member}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: {member} holds Python objects; only numeric image arrays are read")
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran else "C")


IMAGE_KEYS = ("images", "x", "data", "arr_0")
LABEL_KEYS = ("labels", "y")


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images array as stored, labels or None) from an .npz or .npy file, memory-mapped where possible."""
    if not path.is_file():
        raise FileNotFoundError(f"npz: missing {path.name}; put it in {path.parent}")
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="c", allow_pickle=False), None
        with zipfile.ZipFile(path) as zf:
            members = [n.removesuffix(".npy") for n in zf.namelist() if n.endswith(".npy")]
        key = next((k for k in IMAGE_KEYS if k in members), members[0] if len(members) == 1 else None)
        if key is None:
            raise ValueError(f"{path}: no image array; expected one of {IMAGE_KEYS}, found {members}")
        images = _npz_member_memmap(path, key + ".npy")
        with np.load(path, allow_pickle=False) as npz:
            if images is None:
                log.info("%s: %s is compressed, reading it into memory", path, key)
                images = npz[key]
            label_key = next((k for k in LABEL_KEYS if k in members), None)
            labels = None if label_key is None else np.asarray(npz[label_key])
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        raise ValueError(f"{path}: not a readable .npz/.npy file ({err})") from None
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: not a readable .npz/.npy file ({err})") from None
    return images, labels


def _as_nchw(images: np.ndarray, path: Path, layout: str) -> torch.Tensor:
    if images.dtype == np.bool_:
        images = images.view(np.uint8)
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer) or images.min() < 0 or images.max() > 255:
            raise ValueError(f"{path}: images must be uint8 (or integers in 0..255), found {images.dtype}")
        images = images.astype(np.uint8)
    if images.ndim == 2:  # downsampled ImageNet: (N, C*S*S) rows of channel planes
        side = next((s for c in (3, 1) if (s := round((images.shape[1] / c) ** 0.5)) ** 2 * c == images.shape[1]), None)
        if side is None:
            raise ValueError(f"{path}: rows of {images.shape[1]} values are neither 3*S*S nor S*S")
        images = images.reshape(len(images), -1, side, side)
    elif images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise ValueError(f"{path}: image array of shape {images.shape}; expected 2 to 4 dimensions")
    x = torch.from_numpy(images)  # no copy: shares the memory map
    if layout == "auto":
        if images.ndim == 4 and images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
            layout = "nhwc"
        elif images.shape[1] in (1, 3, 4):
            layout = "nchw"
        else:
            raise ValueError(f"{path}: cannot tell channels from shape {images.shape}; pass layout='nchw' or 'nhwc'")
    if layout == "nhwc":
        x = x.permute(0, 3, 1, 2)  # (N, C, H, W) view
    elif layout != "nchw":
        raise ValueError(f"npz: layout must be 'auto', 'nchw' or 'nhwc', got {layout!r}")
    return x


def load_npz(
    split: str,
    data_dir: Path,
    path: str | None = None,
    train: str | None = None,
    valid: str | None = None,
    test: str | None = None,
    layout: str = "auto",
    levels: int = 256,
    label_offset: int = 0,
) -> ImageDataset:
    files = {"train": train, "valid": valid, "test": test}
    part = slice(None)
    if files[split] is not None and not (split == "train" and valid is None):
        source = files[split]
    elif split in ("train", "valid") and train is not None:
        source = train  # valid carved from the end of the train file
        part = "carve_valid"
    elif path is not None and not any(files.values()):
        source, part = path, "carve_all"
    else:
        given = [k for k, v in {"path": path, **files}.items() if v is not None] or ["none"]
        raise ValueError(
            f"npz: no file for split {split!r} (given: {', '.join(given)}); pass path=FILE for one "
            "file holding everything, or train=/valid=/test= files"
        )
    file = _resolve(source, data_dir)
    images, labels = _read_arrays(file)
    x = _as_nchw(images, file, layout)  # (N, C, H, W)
    if labels is not None:
        labels = torch.from_numpy(np.asarray(labels).astype(np.int64).reshape(-1)) - label_offset
        if len(labels) != len(x):
            raise ValueError(f"{file}: {len(x)} images but {len(labels)} labels")
    n, tenth = len(x), len(x) // 10
    if part == "carve_valid":
        part = slice(n - tenth, n) if split == "valid" else slice(0, n - tenth)
    elif part == "carve_all":
        part = {
            "train": slice(0, n - 2 * tenth),
            "valid": slice(n - 2 * tenth, n - tenth),
            "test": slice(n - tenth, n),
        }[split]
    x = x[part]
    labels = None if labels is None else labels[part]
    if len(x) == 0:
        raise ValueError(f"{file}: split {split!r} is empty ({n} images in the file; see docs/data.md for the split)")
    if levels < 256 and len(x) and int(x.max()) >= levels:
        raise ValueError(f"{file}: value {int(x.max())} outside the {levels} levels given by levels=")
    num_classes = None
    if labels is not None and len(labels):
        if labels.min() < 0:
            raise ValueError(f"{file}: negative label {int(labels.min())} (label_offset={label_offset})")
        num_classes = int(labels.max()) + 1
    return ImageDataset(x, labels, levels, name="npz", split=split, num_classes=num_classes)


def _npz_presence(data_dir: Path, opts: dict) -> tuple[list[str], Path, bool | None]:
    given = [opts[k] for k in ("path", "train", "valid", "test") if opts.get(k)]
    if not given:
        return [], data_dir, None
    paths = [_resolve(g, data_dir) for g in given]
    return [p.name for p in paths], paths[0].parent, all(p.is_file() for p in paths)


register_dataset(
    DatasetSpec(
        name="npz",
        description="uint8 image arrays in .npz/.npy files, memory-mapped (e.g. downsampled ImageNet 32/64)",
        loader=load_npz,
        image_shape=None,
        num_levels=256,
        num_classes=None,
        splits=_folder_sizes,
        options={
            "path": None,
            "train": None,
            "valid": None,
            "test": None,
            "layout": "auto",
            "levels": 256,
            "label_offset": 0,
        },
        files=_npz_presence,
    )
)
