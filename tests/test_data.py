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
