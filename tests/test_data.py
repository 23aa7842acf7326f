"""Data sets: the registry, digits and photos (shipped with scikit-learn), the real MNIST / binarized MNIST
copies in ../shared/data, CIFAR-10 batches in the exact official layout, folders and npz files made here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelmodels.data import SPLITS, ImageDataset, available_datasets, dataset_info, load_dataset, quantize


def _check_dataset(ds: ImageDataset, n: int, shape: tuple[int, int, int], levels: int) -> None:
    assert len(ds) == n and ds.images.shape == (n, *shape) and ds.image_shape == shape
    assert ds.images.dtype == torch.uint8 and ds.num_levels == levels
    assert int(ds.images.max()) < levels
    image, label = ds[n - 1]
    assert image.shape == shape and image.dtype == torch.uint8 and isinstance(label, int)


# ---------------------------------------------------------------- registry, splits, quantization


def test_registry_lists_every_data_set():
    assert {"digits", "photos"} <= set(available_datasets())
    for name in available_datasets():
        info = dataset_info(name)
        assert set(info["splits"]) == set(SPLITS)
        assert info["num_levels"] >= 2 and "directory" in info


def test_unknown_name_split_option_raise_value_error():
    with pytest.raises(ValueError, match="available: .*digits"):
        load_dataset("nope", "train")
    with pytest.raises(ValueError, match="valid: train, valid, test"):
        load_dataset("digits", "training")
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("digits", "train", size=3)


def test_quantize_formula_and_bounds():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    q = quantize(x, 256, 2)
    assert q.dtype == torch.uint8 and q.sum() == 128 and q.flatten()[128] == 1 and q.flatten()[127] == 0
    q4 = quantize(x, 256, 4).flatten()
    assert torch.equal(q4, (torch.arange(256) * 4 // 256).to(torch.uint8))
    with pytest.raises(ValueError, match="exceeds"):
        quantize(x, 17, 32)


# ---------------------------------------------------------------- digits


def test_digits_splits_sizes_and_disjointness():
    from sklearn.datasets import load_digits

    full = load_digits()
    sizes = {"train": 1257, "valid": 180, "test": 360}
    parts = {s: load_dataset("digits", s) for s in SPLITS}
    for s, ds in parts.items():
        _check_dataset(ds, sizes[s], (1, 8, 8), 17)
        assert ds.num_classes == 10 and ds.labels.min() >= 0 and ds.labels.max() <= 9
    every = load_dataset("digits", "train+valid+test")
    assert len(every) == len(full.images) == 1797
    # The three splits together are the source images, each exactly once (compare as sorted rows).
    source = torch.from_numpy(full.images.astype(np.uint8).reshape(1797, 64))
    ours = every.images.reshape(1797, 64)
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert key(ours) == key(source)
    assert torch.bincount(every.labels, minlength=10).tolist() == np.bincount(full.target).tolist()
    assert int(every.images.max()) == 16
    # deterministic: a second load gives the same images
    assert torch.equal(load_dataset("digits", "test").images, parts["test"].images)


def test_digits_quantized():
    ds = load_dataset("digits", "train", num_levels=2)
    raw = load_dataset("digits", "train")
    assert ds.num_levels == 2 and torch.equal(ds.images, (raw.images.int() * 2 // 17).to(torch.uint8))
    with pytest.raises(ValueError, match="exceeds"):
        load_dataset("digits", "train", num_levels=18)


def test_dataloader_collates_images_and_labels():
    loader = torch.utils.data.DataLoader(load_dataset("digits", "valid"), batch_size=32)
    x, y = next(iter(loader))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.uint8 and y.shape == (32,)


# ---------------------------------------------------------------- photos


@pytest.mark.parametrize("size", [32, 16])
def test_photos_patches_split_by_region(size):
    from sklearn.datasets import load_sample_images

    info = dataset_info("photos", size=size)
    parts = {s: load_dataset("photos", s, size=size) for s in SPLITS}
    for s, ds in parts.items():
        _check_dataset(ds, info["splits"][s], (3, size, size), 256)
        assert set(ds.labels.tolist()) == {0, 1}
    # Every patch is a block of its photo at a grid position, and every grid block is used by one split at most.
    photos = load_sample_images().images
    blocks = {}
    for label, photo in enumerate(photos):
        rows, cols = photo.shape[0] // size, photo.shape[1] // size
        top, left = (photo.shape[0] - rows * size) // 2, (photo.shape[1] - cols * size) // 2
        for r in range(rows):
            for c in range(cols):
                block = photo[top + r * size : top + (r + 1) * size, left + c * size : left + (c + 1) * size]
                blocks.setdefault((label, block.tobytes()), []).append((r, c))
    used = 0
    for ds in parts.values():
        for image, label in zip(ds.images.numpy(), ds.labels.tolist(), strict=True):
            positions = blocks.get((label, image.transpose(1, 2, 0).tobytes()))
            assert positions, "patch is not a grid block of its photo"
            positions.pop()  # a block (or an identical twin) can be claimed once only
            used += 1
    assert used == sum(info["splits"].values()) == 2 * (427 // size) * (640 // size)


def test_photos_bad_size():
    with pytest.raises(ValueError, match="size must be an integer in"):
        load_dataset("photos", "train", size=1000)
    with pytest.raises(ValueError, match="size must be an integer in"):
        dataset_info("photos", size=2.5)


# ---------------------------------------------------------------- MNIST and binarized MNIST (real files)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # ../shared/data/README.md
# published MNIST test-set class counts (LeCun et al.)
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
BINARIZED_PIXEL_SUMS = {"train": 5118041, "valid": 1028036, "test": 1038896}  # ../shared/data/README.md


def test_mnist_real_files(shared_data_dir):
    import hashlib
    import struct

    sizes = {"train": 50000, "valid": 10000, "test": 10000}
    parts = {s: load_dataset("mnist", s, data_dir=shared_data_dir) for s in SPLITS}
    for s, ds in parts.items():
        _check_dataset(ds, sizes[s], (1, 28, 28), 256)
        assert int(ds.images.min()) == 0 and int(ds.images.max()) == 255 and ds.num_classes == 10
    full = load_dataset("mnist", "train+valid", data_dir=shared_data_dir)
    assert torch.bincount(full.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(parts["test"].labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    # valid is the last 10000 training images: train+valid rebuilds the uncompressed original file exactly
    header = struct.pack(">4I", 2051, 60000, 28, 28)
    digest = hashlib.md5(header + full.images.numpy().tobytes()).hexdigest()
    assert digest == "6bbc9ace898e44ae57da46a324031adb"  # MD5 of train-images-idx3-ubyte, as published
    assert torch.equal(full.images[50000:], parts["valid"].images)
    binary = load_dataset("mnist", "test", data_dir=shared_data_dir, num_levels=2)
    assert torch.equal(binary.images, (parts["test"].images >= 128).to(torch.uint8))


def test_binarized_mnist_real_files(shared_data_dir):
    for split, total in BINARIZED_PIXEL_SUMS.items():
        ds = load_dataset("binarized_mnist", split, data_dir=shared_data_dir)
        _check_dataset(ds, {"train": 50000}.get(split, 10000), (1, 28, 28), 2)
        assert ds.labels is None and ds.num_classes is None and ds[0][1] == -1
        assert int(ds.images.sum()) == total and int(ds.images.min()) == 0


def test_shared_files_match_the_published_checksums(shared_data_dir):
    """The download constants are right: the shared copies that are the originals byte for byte match them."""
    import gzip
    import hashlib

    from pixelmodels.data import mnist
    from pixelmodels.data.download import sha256_file

    for name in ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        assert sha256_file(shared_data_dir / "mnist" / name) == mnist.MNIST_SHA256[name]
    for name, expected in mnist.BINARIZED_SHA256.items():
        raw = gzip.decompress((shared_data_dir / "binarized_mnist" / f"{name}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == expected


def test_dataset_info_reports_presence(shared_data_dir, tmp_path):
    assert dataset_info("mnist", shared_data_dir)["files_present"] is True
    assert dataset_info("binarized_mnist", shared_data_dir)["files_present"] is True
    info = dataset_info("mnist", tmp_path)
    assert info["files_present"] is False and info["directory"] == str(tmp_path / "mnist")
    assert info["splits"] == {"train": 50000, "valid": 10000, "test": 10000}


def test_data_dir_from_environment(shared_data_dir, monkeypatch):
    monkeypatch.setenv("PIXELMODELS_DATA", str(shared_data_dir))
    assert len(load_dataset("binarized_mnist", "valid")) == 10000
    monkeypatch.delenv("PIXELMODELS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-cache")
    from pixelmodels.data import resolve_data_dir

    assert str(resolve_data_dir()) == "/nonexistent-cache/pixelmodels"


@pytest.mark.parametrize("name", ["mnist", "binarized_mnist", "cifar10"])
def test_missing_files_name_files_directory_and_url(name, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(name, "test", data_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "http" in msg and "download=True" in msg
    assert {
        "mnist": "t10k-images-idx3-ubyte.gz",
        "binarized_mnist": "binarized_mnist_test.amat",
        "cifar10": "test_batch",
    }[name] in msg


def _write_idx(path, magic, array, announced=None):
    import gzip
    import struct

    shape = announced or array.shape
    data = struct.pack(f">{1 + len(shape)}I", magic, *shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.suffix == ".gz" else data)


def _fake_mnist_test(folder, images=None, labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10000, 28, 28)) if images is None else images
    labels = rng.integers(0, 10, 10000) if labels is None else labels
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", 2051, images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", 2049, labels)
    return images, labels


def test_mnist_layout_written_here_round_trips(tmp_path):
    images, labels = _fake_mnist_test(tmp_path / "mnist")
    ds = load_dataset("mnist", "test", data_dir=tmp_path)
    assert np.array_equal(ds.images[:, 0].numpy(), images) and np.array_equal(ds.labels.numpy(), labels)
    # the files may also be uncompressed, directly in the data directory
    flat = tmp_path / "flat"
    flat.mkdir()
    _write_idx(flat / "t10k-images-idx3-ubyte", 2051, images)
    _write_idx(flat / "t10k-labels-idx1-ubyte", 2049, labels)
    assert torch.equal(load_dataset("mnist", "test", data_dir=flat).images, ds.images)


def test_corrupt_mnist_files_give_one_clear_error(tmp_path):
    folder = tmp_path / "mnist"
    images, labels = _fake_mnist_test(folder)
    path = folder / "t10k-images-idx3-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated gzip
    with pytest.raises(ValueError, match=f"{path}.*gzip"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    _write_idx(path, 2049, images)  # the labels' magic on the images file
    with pytest.raises(ValueError, match=f"{path}.*magic number 2049"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    _write_idx(path, 2051, images[:9000], announced=(10000, 28, 28))  # header promises more than the file holds
    with pytest.raises(ValueError, match=f"{path}.*truncated or corrupt"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    _write_idx(path, 2051, images.reshape(10000, 784, 1)[:, :, 0].reshape(10000, 28, 28)[:, :14])  # 14x28
    with pytest.raises(ValueError, match=f"{path}.*shape"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    _fake_mnist_test(folder, images=images[:5000], labels=labels[:5000])
    with pytest.raises(ValueError, match="5000 images"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_corrupt_amat_gives_one_clear_error(tmp_path):
    import gzip

    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 2, (10000, 784))
    lines = [" ".join(row) for row in np.where(pixels == 1, "1", "0").tolist()]
    path = folder / "binarized_mnist_test.amat"
    path.write_text("\n".join(lines) + "\n")
    ds = load_dataset("binarized_mnist", "test", data_dir=tmp_path)
    assert np.array_equal(ds.images.reshape(10000, 784).numpy(), pixels)
    # values written as floats take the slow path and give the same images
    (folder / "binarized_mnist_test.amat").write_text("\n".join(" ".join(f"{v}.0" for v in r) for r in pixels[:3]))
    with pytest.raises(ValueError, match="3 images, expected 10000"):
        load_dataset("binarized_mnist", "test", data_dir=tmp_path)
    bad = lines.copy()
    bad[41] = bad[41][:-2]  # 783 values on line 42
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=f"{path}: line 42 has 783 values"):
        load_dataset("binarized_mnist", "test", data_dir=tmp_path)
    bad[41] = lines[41].replace("1", "7", 1)
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match="line 42"):
        load_dataset("binarized_mnist", "test", data_dir=tmp_path)
    path.unlink()
    gz = folder / "binarized_mnist_test.amat.gz"
    gz.write_bytes(gzip.compress(("\n".join(lines[:100]) + "\n").encode(), compresslevel=1)[:5000])
    with pytest.raises(ValueError, match=f"{gz}.*gzip"):
        load_dataset("binarized_mnist", "test", data_dir=tmp_path)


# ---------------------------------------------------------------- CIFAR-10 in the official layout


def _py2_str(b: bytes) -> bytes:  # a Python 2 str: SHORT_BINSTRING / BINSTRING
    import struct

    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b


def _py2_int(n: int) -> bytes:  # BININT1 / BININT2 / BININT
    import struct

    if 0 <= n < 256:
        return b"K" + bytes([n])
    return b"M" + struct.pack("<H", n) if 0 <= n < 65536 else b"J" + struct.pack("<i", n)


def _py2_list(items: list[bytes]) -> bytes:
    return b"](" + b"".join(items) + b"e"  # EMPTY_LIST MARK ... APPENDS


def _py2_uint8_array(a: np.ndarray) -> bytes:
    """A numpy uint8 array as Python 2 numpy pickled it: numpy.core.multiarray._reconstruct + BUILD state."""
    out = b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n" + _py2_int(0) + b"\x85" + _py2_str(b"b") + b"tR"
    out += b"(" + _py2_int(1) + b"(" + b"".join(_py2_int(d) for d in a.shape) + b"t"
    out += b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
    out += b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + b"tb"
    return out + b"\x89" + _py2_str(a.tobytes()) + b"tb"


def _py2_dict(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x80\x02}(" + b"".join(_py2_str(k) + v for k, v in items) + b"u."  # PROTO 2, dict, SETITEMS, STOP


def _cifar_batch(rows: np.ndarray, labels: list[int], batch_label: bytes) -> bytes:
    names = [_py2_str(f"img_{i}.png".encode()) for i in range(len(rows))]
    return _py2_dict(
        [
            (b"data", _py2_uint8_array(rows)),
            (b"labels", _py2_list([_py2_int(v) for v in labels])),
            (b"batch_label", _py2_str(batch_label)),
            (b"filenames", _py2_list(names)),
        ]
    )


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write_cifar(folder, per_batch=20, test=10, seed=0):
    """Official layout, small batches: returns the images (N, 3, 32, 32) and labels each file should give."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    expected = {}
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", test)]:
        rows = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        images = np.empty((n, 3, 32, 32), dtype=np.uint8)
        for c in range(3):  # the documented layout, written out: value (c, y, x) sits at c*1024 + y*32 + x
            for y in range(32):
                images[:, c, y, :] = rows[:, c * 1024 + y * 32 : c * 1024 + y * 32 + 32]
        (folder / name).write_bytes(_cifar_batch(rows, labels, f"{name} of the test".encode()))
        expected[name] = (images, np.array(labels))
    meta = _py2_dict(
        [
            (b"num_cases_per_batch", _py2_int(per_batch)),
            (b"label_names", _py2_list([_py2_str(n.encode()) for n in CIFAR_NAMES])),
            (b"num_vis", _py2_int(3072)),
        ]
    )
    (folder / "batches.meta").write_bytes(meta)
    return expected


def test_cifar10_python2_batches_load_with_known_pixels(tmp_path):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    expected = _write_cifar(folder)
    # our Python 2 writer is a valid pickle: plain pickle (safe here, our own bytes) reads the same dict
    plain = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")
    assert set(plain) == {b"data", b"labels", b"batch_label", b"filenames"} and plain[b"data"].shape == (20, 3072)
    train_all = np.concatenate([expected[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels_all = np.concatenate([expected[f"data_batch_{i}"][1] for i in range(1, 6)])
    parts = {s: load_dataset("cifar10", s, data_dir=tmp_path) for s in SPLITS}
    _check_dataset(parts["train"], 90, (3, 32, 32), 256)  # the last tenth of the 100 training images is valid
    _check_dataset(parts["valid"], 10, (3, 32, 32), 256)
    _check_dataset(parts["test"], 10, (3, 32, 32), 256)
    assert np.array_equal(parts["train"].images.numpy(), train_all[:90])
    assert np.array_equal(parts["valid"].images.numpy(), train_all[90:])
    assert np.array_equal(parts["train"].labels.numpy(), labels_all[:90])
    assert np.array_equal(parts["test"].images.numpy(), expected["test_batch"][0])
    assert np.array_equal(parts["test"].labels.numpy(), expected["test_batch"][1])
    assert parts["test"].class_names == CIFAR_NAMES and parts["test"].num_classes == 10
    # single known pixels: red (y=0, x=1), green (y=1, x=0), blue (y=31, x=30) of the first image
    rows = plain[b"data"]
    x = parts["train"].images[0]
    assert (x[0, 0, 1], x[1, 1, 0], x[2, 31, 30]) == (rows[0, 1], rows[0, 1024 + 32], rows[0, 2048 + 31 * 32 + 30])


def test_cifar10_batches_written_by_python3_also_load(tmp_path):
    import pickle

    rng = np.random.default_rng(3)
    rows = rng.integers(0, 256, (4, 3072)).astype(np.uint8)
    for protocol in (2, 4, 5):
        folder = tmp_path / f"p{protocol}"
        folder.mkdir()
        batch = {b"data": rows, b"labels": [1, 2, 3, 4], b"batch_label": b"x", b"filenames": [b"a"] * 4}
        (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
        ds = load_dataset("cifar10", "test", data_dir=folder)
        assert np.array_equal(ds.images.numpy().reshape(4, 3072), rows) and ds.labels.tolist() == [1, 2, 3, 4]


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious_payloads(marker):
    import builtins
    import os
    import pickle
    from collections import OrderedDict

    return {
        "os.system": pickle.dumps({b"data": _Evil(os.system, f"touch {marker}")}, protocol=2),
        "eval": pickle.dumps(_Evil(builtins.eval, f"open({str(marker)!r}, 'w')"), protocol=4),
        "object array": pickle.dumps({b"data": np.array([1, "a"], dtype=object), b"labels": [0, 0]}),
        "other class": pickle.dumps(OrderedDict(data=1)),
        # numpy's reconstructor asked to build something other than an ndarray
        "reconstruct": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n(cnumpy\ndtype\nK\x00\x85U\x01btR.",
    }


@pytest.mark.parametrize("payload", ["os.system", "eval", "object array", "other class", "reconstruct"])
def test_malicious_pickle_is_refused(payload, tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "test_batch").write_bytes(_malicious_payloads(marker)[payload])
    with pytest.raises(ValueError, match="test_batch: refused or unreadable pickle") as err:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()
    if payload == "os.system":
        assert "refused" in str(err.value) and "system" in str(err.value)


def test_cifar10_wrong_content_gives_clear_error(tmp_path):
    (tmp_path / "test_batch").write_bytes(_py2_dict([(b"data", _py2_uint8_array(np.zeros((2, 100), np.uint8)))]))
    with pytest.raises(ValueError, match=r"test_batch: 'data' must be a uint8 array \(N, 3072\)"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    good = _cifar_batch(np.zeros((2, 3072), np.uint8), [0, 1], b"t")
    (tmp_path / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="test_batch: refused or unreadable"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


# ---------------------------------------------------------------- folder of images


def _stripes(width: int, height: int):
    """Red left quarter, green middle half, blue right quarter: a center crop of a wide image is all green."""
    from PIL import Image

    a = np.zeros((height, width, 3), dtype=np.uint8)
    a[:, : width // 4, 0] = 255
    a[:, width // 4 : width - width // 4, 1] = 200
    a[:, width - width // 4 :, 2] = 255
    return Image.fromarray(a)


def _make_folder(root, n_per_class=15):
    from PIL import Image

    for cls, value in (("cats", 40), ("dogs", 220)):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            suffix = ".png" if i % 2 else ".JPG"
            Image.fromarray(np.full((10 + i, 12 + 2 * i, 3), value, np.uint8)).save(root / cls / f"{i}{suffix}")
    (root / "notes.txt").write_text("not an image")


def test_folder_splits_labels_and_center_crop(tmp_path):
    from pixelmodels.data.files import hash_bucket

    root = tmp_path / "imgs"
    _make_folder(root)
    parts = {s: load_dataset("folder", s, data_dir=tmp_path, path="imgs", size=8) for s in SPLITS}
    assert sum(len(p) for p in parts.values()) == 30
    for ds in parts.values():
        assert ds.image_shape == (3, 8, 8) and ds.num_levels == 256 and ds.class_names == ["cats", "dogs"]
        # solid images stay solid after crop + resize (JPEG within a few levels); the label follows the folder
        value = torch.where(ds.labels == 0, 40, 220).view(-1, 1, 1, 1)
        assert (ds.images.int() - value).abs().max() <= 3
    expected = {
        s: sorted(
            f"{c}/{i}"
            for c in ("cats", "dogs")
            for i in range(15)
            if {8: "valid", 9: "test"}.get(hash_bucket(f"{c}/{i}{'.png' if i % 2 else '.JPG'}"), "train") == s
        )
        for s in SPLITS
    }
    assert {s: len(p) for s, p in parts.items()} == {s: len(v) for s, v in expected.items()}
    gray = load_dataset("folder", "train", data_dir=root, size=4, channels=1)
    assert gray.image_shape == (1, 4, 4)
    _stripes(40, 20).save(root / "cats" / "wide.png")
    wide = load_dataset("folder", "train+valid+test", data_dir=root, size=6)
    green = [img for img in wide.images if img[1].float().mean() > 150 and img[0].max() < 30]
    assert len(green) == 1 and (green[0][1] == 200).all() and green[0][2].max() < 30  # center crop kept the middle


def test_folder_split_is_stable_when_files_are_added(tmp_path):
    from PIL import Image

    _make_folder(tmp_path)
    before = load_dataset("folder", "test", data_dir=tmp_path, size=4)
    Image.fromarray(np.full((9, 9, 3), 7, np.uint8)).save(tmp_path / "cats" / "zz_new.png")
    after = load_dataset("folder", "test", data_dir=tmp_path, size=4)
    new = [img for img in after.images if (img == 7).all()]
    assert len(after) == len(before) + len(new)
    assert {tuple(i.flatten().tolist()) for i in before.images} <= {tuple(i.flatten().tolist()) for i in after.images}


def test_folder_with_split_subfolders_and_errors(tmp_path):
    from PIL import Image

    for split, n in (("train", 20), ("test", 3)):
        (tmp_path / split).mkdir()
        for i in range(n):
            Image.fromarray(np.full((5, 5), i, np.uint8)).save(tmp_path / split / f"{i}.png")
    test = load_dataset("folder", "test", data_dir=tmp_path, size=5, channels=1)
    assert len(test) == 3 and test.labels is None and sorted(test.images[:, 0, 0, 0].tolist()) == [0, 1, 2]
    assert test[0][1] == -1
    train, valid = (load_dataset("folder", s, data_dir=tmp_path, size=5, channels=1) for s in ("train", "valid"))
    assert len(train) + len(valid) == 20
    (tmp_path / "test" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        load_dataset("folder", "test", data_dir=tmp_path, size=5)
    with pytest.raises(FileNotFoundError, match="no directory"):
        load_dataset("folder", "test", data_dir=tmp_path / "absent")
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load_dataset("folder", "test", data_dir=tmp_path, channels=2)


# ---------------------------------------------------------------- npz / npy


def test_npz_downsampled_imagenet_layout_is_memory_mapped(tmp_path):
    from pixelmodels.data.files import _read_arrays

    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (50, 3072)).astype(np.uint8)
    labels = rng.integers(1, 1001, 50)  # 1-based, as in the downsampled ImageNet files
    np.savez(tmp_path / "train_data_batch_1.npz", data=rows, labels=labels, mean=rows.mean(0))
    np.savez_compressed(tmp_path / "val_data.npz", data=rows[:10], labels=labels[:10])
    opts = dict(train="train_data_batch_1.npz", test="val_data.npz", label_offset=1)
    train, valid, test = (load_dataset("npz", s, data_dir=tmp_path, **opts) for s in SPLITS)
    assert (len(train), len(valid), len(test)) == (45, 5, 10)  # valid = the last tenth of the train file
    assert train.image_shape == (3, 32, 32) and train.num_levels == 256
    assert (train.images[3, 0, 0, 1], train.images[3, 1, 2, 0], train.images[3, 2, 31, 31]) == (
        rows[3, 1],
        rows[3, 1024 + 64],
        rows[3, 3071],
    )
    assert np.array_equal(valid.images.numpy().reshape(5, 3072), rows[45:])
    assert np.array_equal(train.labels.numpy(), labels[:45] - 1) and train.num_classes == int(labels.max())
    mapped, _ = _read_arrays(tmp_path / "train_data_batch_1.npz")
    assert isinstance(mapped, np.memmap)  # savez stores members uncompressed: mapped, not read
    compressed, _ = _read_arrays(tmp_path / "val_data.npz")
    assert not isinstance(compressed, np.memmap) and np.array_equal(test.images.numpy().reshape(10, 3072), rows[:10])
    mapped[0, 0] = rows[0, 0] ^ 0xFF  # copy-on-write: writing to the map never changes the file
    assert np.load(tmp_path / "train_data_batch_1.npz")["data"][0, 0] == rows[0, 0]


def test_npz_plain_arrays_and_layouts(tmp_path):
    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, (30, 6, 5, 3)).astype(np.uint8)
    np.save(tmp_path / "nhwc.npy", nhwc)
    every = load_dataset("npz", "train+valid+test", data_dir=tmp_path, path="nhwc.npy")
    assert every.image_shape == (3, 6, 5) and np.array_equal(every.images.numpy(), nhwc.transpose(0, 3, 1, 2))
    sizes = [len(load_dataset("npz", s, data_dir=tmp_path, path="nhwc.npy")) for s in SPLITS]
    assert sizes == [24, 3, 3] and every.labels is None
    nchw = rng.integers(0, 2, (20, 1, 4, 4)).astype(np.uint8)
    np.savez(tmp_path / "binary.npz", images=nchw, labels=np.arange(20) % 3)
    ds = load_dataset("npz", "test", data_dir=tmp_path, path=str(tmp_path / "binary.npz"), levels=2)
    assert ds.num_levels == 2 and np.array_equal(ds.images.numpy(), nchw[18:]) and ds.labels.tolist() == [0, 1]
    gray = rng.integers(0, 256, (10, 7, 7)).astype(np.uint8)
    np.savez(tmp_path / "gray.npz", gray)
    assert load_dataset("npz", "train", data_dir=tmp_path, path="gray.npz").image_shape == (1, 7, 7)
    q = load_dataset("npz", "train", data_dir=tmp_path, path="gray.npz", num_levels=4)
    assert int(q.images.max()) <= 3 and torch.equal(q.images[:, 0], torch.from_numpy(gray[:8] // 64))


def test_npz_errors_name_the_file(tmp_path):
    np.save(tmp_path / "float.npy", np.zeros((4, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="float.npy: images must be uint8"):
        load_dataset("npz", "train", data_dir=tmp_path, path="float.npy")
    np.savez(tmp_path / "x.npz", images=np.zeros((10, 3, 4, 4), np.uint8))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "x.npz").read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.npz: not a readable"):
        load_dataset("npz", "train", data_dir=tmp_path, path="cut.npz")
    np.save(tmp_path / "odd.npy", np.zeros((10, 5, 5, 5), np.uint8))
    with pytest.raises(ValueError, match="odd.npy: cannot tell channels"):
        load_dataset("npz", "train", data_dir=tmp_path, path="odd.npy")
    assert load_dataset("npz", "train", data_dir=tmp_path, path="odd.npy", layout="nchw").image_shape == (5, 5, 5)
    with pytest.raises(ValueError, match="value 9 outside the 2 levels"):
        np.save(tmp_path / "nine.npy", np.full((10, 1, 2, 2), 9, np.uint8))
        load_dataset("npz", "train", data_dir=tmp_path, path="nine.npy", levels=2)
    np.save(tmp_path / "few.npy", np.zeros((5, 1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="few.npy: split 'test' is empty"):
        load_dataset("npz", "test", data_dir=tmp_path, path="few.npy")
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_dataset("npz", "train", data_dir=tmp_path, path="absent.npz")
    with pytest.raises(ValueError, match="no file for split 'test'"):
        load_dataset("npz", "test", data_dir=tmp_path, train="x.npz")


# ---------------------------------------------------------------- CLI


def test_cli_datasets_lists_presence(shared_data_dir, tmp_path, capsys):
    from pixelmodels.cli import main

    assert main(["datasets", "--data-dir", str(shared_data_dir)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(lines) == set(available_datasets())
    assert "1x28x28" in lines["mnist"] and "50000/10000/10000" in lines["mnist"] and " yes " in lines["mnist"]
    assert " yes " in lines["binarized_mnist"] and " 2 " in lines["binarized_mnist"]
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert " no " in next(line for line in out.splitlines() if line.startswith("mnist"))
    assert str(tmp_path / "mnist") in out
