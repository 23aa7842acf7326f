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
