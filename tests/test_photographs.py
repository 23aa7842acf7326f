"""The photograph data sets (``photographs``, ``kodak``: real files in ../shared/data, skipped when absent, plus
small PNGs written here), random crops, whole-image evaluation (banded = one pass) and ``pixelmodels download``."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelmodels
from pixelmodels.cli import main
from pixelmodels.data import dataset_images, download_dataset, load_dataset, load_images
from pixelmodels.data.photographs import PHOTOGRAPH_SPLITS, grid_origins
from pixelmodels.evaluate import image_log_prob, images_nll, model_at_size


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """A data directory laid out like the shared one: 49 small photographs (varied sizes) and 3 Kodak-named
    images, with known pixels (written as PNG here)."""
    rng = np.random.default_rng(0)
    for i in range(49):
        folder = tmp_path / "wikipedia_photos"
        folder.mkdir(exist_ok=True)
        Image.fromarray(_photo(rng, 8 + i % 3, 9 + i % 2)).save(folder / f"{i + 1:03d}.png")
    (tmp_path / "kodak").mkdir()
    for i in range(3):
        Image.fromarray(_photo(rng, 8, 12)).save(tmp_path / "kodak" / f"kodim{i + 1:02d}.png")
    return tmp_path


@pytest.fixture
def photos_present(shared_data_dir) -> Path:
    if not (shared_data_dir / "wikipedia_photos").is_dir() or not (shared_data_dir / "kodak").is_dir():
        pytest.skip(f"wikipedia_photos/ or kodak/ not in {shared_data_dir}")
    return shared_data_dir


# ---------------------------------------------------------------- the data sets on the shared files


def test_shared_photographs_and_kodak_load(photos_present):
    sizes = {}
    for split in ("train", "valid", "test"):
        ds = load_dataset("photographs", split, data_dir=photos_present)
        assert ds.image_shape == (3, 32, 32) and ds.images.dtype == torch.uint8 and ds.num_levels == 256
        sizes[split] = len(ds)
    assert 35_000 < sizes["train"] < 50_000 and sizes["valid"] > 0 and sizes["test"] > 0  # ~1 Mpixel photos
    kodak = load_dataset("kodak", "test", data_dir=photos_present)
    assert len(kodak) == 24 * 24 * 16  # 9216: every 768x512 image gives a 24 x 16 grid
    whole = dataset_images("kodak", "test", photos_present)
    assert len(whole) == 24 and all(x.shape[0] == 3 and sorted(x.shape[1:]) == [512, 768] for x in whole)
    assert torch.equal(kodak.images[0], whole[0][:, :32, :32]) and torch.equal(kodak.images[1], whole[0][:, :32, 32:64])
    assert int(load_dataset("kodak", "test", data_dir=photos_present, num_levels=4).images.max()) == 3


def test_shared_photographs_split_by_photo(photos_present):
    files = sorted((photos_present / "wikipedia_photos").glob("*.png"))
    assert len(files) == 49
    per_split = {s: dataset_images("photographs", s, photos_present) for s in ("train", "valid", "test")}
    assert {s: len(v) for s, v in per_split.items()} == PHOTOGRAPH_SPLITS == {"train": 40, "valid": 5, "test": 4}
    digests = [{hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in v} for v in per_split.values()]
    assert sum(len(d) for d in digests) == 49 and len(set.union(*digests)) == 49  # no photo in two splits


def test_cli_lists_and_evaluates_shared_sets(photos_present, capsys):
    assert main(["datasets", "--data-dir", str(photos_present)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert " yes " in lines["photographs"] and " yes " in lines["kodak"] and "0/0/9216" in lines["kodak"]


# ---------------------------------------------------------------- layout, crops and errors on files written here


def test_split_sizes_grid_order_and_quantization(photo_dir):
    files = sorted((photo_dir / "wikipedia_photos").glob("*.png"))
    photos = [np.asarray(Image.open(f)).transpose(2, 0, 1) for f in files]
    start = 0
    for split, count in PHOTOGRAPH_SPLITS.items():
        mine = photos[start : start + count]
        start += count
        ds = load_dataset("photographs", split, data_dir=photo_dir, size=4)
        expected = [p[:, r : r + 4, c : c + 4] for p in mine for r in range(0, p.shape[1] - 3, 4)
                    for c in range(0, p.shape[2] - 3, 4)]  # fmt: skip
        assert torch.equal(ds.images, torch.from_numpy(np.stack(expected)))  # file order, then raster order
    q = load_dataset("photographs", "test", data_dir=photo_dir, size=4, num_levels=5)
    assert torch.equal(
        q.images, load_dataset("photographs", "test", data_dir=photo_dir, size=4).images.long() * 5 // 256
    )
    kodak = load_dataset("kodak", "test", data_dir=photo_dir, size=4)
    assert len(kodak) == 3 * 2 * 3
    origins = grid_origins([(9, 13)], 4)  # remainders dropped: rows 0, 4 and columns 0, 4, 8
    assert origins.tolist() == [[0, r, c] for r in (0, 4) for c in (0, 4, 8)]


def test_random_crops_depend_on_seed_epoch_and_index_only(photo_dir):
    ds = load_dataset("photographs", "train", data_dir=photo_dir, size=4, crop="random")
    crops = ds.random_crops
    assert crops is not None and len(crops) == len(ds)
    idx = torch.tensor([5, 0, 17, 5])
    a = crops.batch(idx, epoch=3, seed=7)
    again = load_dataset("photographs", "train", data_dir=photo_dir, size=4, crop="random").random_crops
    assert torch.equal(again.batch(torch.tensor([0, 5]), 1, 7), crops.batch(torch.tensor([0, 5]), 1, 7))
    assert torch.equal(again.batch(idx, 3, 7), a) and torch.equal(a[0], a[3])  # same (seed, epoch, index)
    assert not torch.equal(crops.batch(idx, 4, 7), a) and not torch.equal(crops.batch(idx, 3, 8), a)
    photos = [np.asarray(Image.open(f)).transpose(2, 0, 1) for f in sorted(photo_dir.glob("wikipedia_photos/*"))]
    for i, crop in zip(idx.tolist(), a, strict=True):  # each crop is a real window of grid patch i's photo
        p, top, left = crops.origins(3, 7)[i]
        assert p == grid_origins([x.shape[1:] for x in photos[:40]], 4)[i, 0]
        assert torch.equal(crop, torch.from_numpy(photos[p][:, top : top + 4, left : left + 4].copy()))
    q = load_dataset("photographs", "train", data_dir=photo_dir, size=4, crop="random", num_levels=2)
    assert torch.equal(q.random_crops.batch(idx, 3, 7), a // 128)
    assert load_dataset("photographs", "valid", data_dir=photo_dir, size=4, crop="random").random_crops is None


def test_trainer_draws_random_crops_and_resumes_exactly(photo_dir, tmp_path):
    from pixelmodels.training import apply_overrides, get_preset, train
    from pixelmodels.training import checkpoint as ckpt
    from pixelmodels.training.trainer import BatchLoader, DataOrder

    ds = load_dataset("photographs", "train", data_dir=photo_dir, size=4, crop="random")
    order = DataOrder(len(ds), 8, seed=3)
    loader = BatchLoader(order, ds.random_crops, None, torch.device("cpu"), prefetch=0)
    first = [loader.next()[0] for _ in range(len(ds) // 8 + 1)]  # into epoch 1
    assert torch.equal(first[0], ds.random_crops.batch(DataOrder(len(ds), 8, seed=3).next_indices(), 0, 3).long())
    overrides = [f"data.data_dir={photo_dir}", "data.options.size=4", "data.batch_size=4", "train.steps=4",
                 "train.eval_every=2", "train.checkpoint_every=2", "train.sample_every=0", "train.num_samples=2",
                 "data.max_test_images=8", "model.hidden_channels=4", "model.num_layers=1"]  # fmt: skip
    config = apply_overrides(get_preset("gated_pixelcnn-photographs"), overrides)
    straight = train(config, tmp_path / "straight")
    train(config, tmp_path / "paused", stop_after=2)
    resumed = train(config, tmp_path / "paused", resume=True)
    _, a = ckpt.read_checkpoint(straight, "last")
    _, b = ckpt.read_checkpoint(resumed, "last")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_files_give_one_line_errors_naming_the_file(photo_dir, tmp_path):
    kodak = photo_dir / "kodak"
    good = (kodak / "kodim01.png").read_bytes()
    (kodak / "kodim02.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=r"kodim02\.png: not a readable image") as err:
        load_dataset("kodak", "test", data_dir=photo_dir, size=4)
    assert "\n" not in str(err.value)
    (kodak / "kodim02.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"kodim02\.png: not a readable image"):
        load_images([kodak / "kodim02.png"])
    Image.fromarray(np.zeros((6, 6, 4), np.uint8)).save(kodak / "kodim02.png")  # RGBA: refused
    with pytest.raises(ValueError, match=r"kodim02\.png: has an alpha channel"):
        dataset_images("kodak", "test", photo_dir)
    Image.fromarray(np.full((6, 7), 200, np.uint8)).save(kodak / "kodim02.png")  # greyscale: converted to RGB
    grey = dataset_images("kodak", "test", photo_dir)[1]
    assert grey.shape == (3, 6, 7) and int(grey.min()) == int(grey.max()) == 200
    with pytest.raises(ValueError, match="smaller than size=8"):
        load_dataset("kodak", "test", data_dir=photo_dir, size=8)
    with pytest.raises(FileNotFoundError, match=r"kodak: no directory .*kodak"):
        load_dataset("kodak", "test", data_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing.png: no such file"):
        load_images([tmp_path / "missing.png"])


def test_option_and_split_errors(photo_dir):
    for split in ("train", "valid", "train+test"):
        with pytest.raises(ValueError, match="kodak has only the 'test' split"):
            load_dataset("kodak", split, data_dir=photo_dir)
    with pytest.raises(ValueError, match="crop must be one of grid, random"):
        load_dataset("photographs", "train", data_dir=photo_dir, crop="center")
    with pytest.raises(ValueError, match="size must be a positive integer"):
        load_dataset("photographs", "train", data_dir=photo_dir, size=0)
    with pytest.raises(ValueError, match="crop='random' needs a single split"):
        load_dataset("photographs", "train+valid", data_dir=photo_dir, size=4, crop="random")
    (photo_dir / "wikipedia_photos" / "049.png").unlink()
    with pytest.raises(ValueError, match="expected 49 PNG files .* found 48"):
        load_dataset("photographs", "test", data_dir=photo_dir)


# ---------------------------------------------------------------- whole-image evaluation


def _twin(model, h: int, w: int):
    """The reference: the same model class built for h x w, with the same weights, in eval mode."""
    config = dict(model.config)
    name = config.pop("name")
    config.pop("image_shape")
    twin = pixelmodels.build(name, image_shape=(3, h, w), **config)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


@pytest.mark.parametrize(
    "name, hparams",
    [
        ("pixelcnn", {"hidden_channels": 6, "num_layers": 2}),
        ("gated_pixelcnn", {"hidden_channels": 6, "num_layers": 2, "head": "dmol"}),
        ("row_lstm", {"hidden_channels": 6, "num_layers": 1}),
        ("diagonal_bilstm", {"hidden_channels": 6, "num_layers": 1}),
        ("pixelcnn_pp", {"hidden_channels": 6, "num_layers": 1, "num_resolutions": 2}),
    ],
)
def test_whole_image_equals_the_model_built_for_that_size(name, hparams, monkeypatch):
    model = pixelmodels.build(name, image_shape=(3, 4, 4), num_levels=8, **hparams).eval()
    image = torch.randint(0, 8, (3, 14, 10))
    twin = _twin(model, 14, 10)
    with torch.no_grad():
        expected = twin.log_prob(image[None]).double().item()  # summed in float32: ~1e-5 nats of rounding
        per_pixel = twin.head.log_prob(twin.network(twin.scale_input(image[None])).float(), image[None])
    assert image_log_prob(model, image) == pytest.approx(expected, abs=1e-4)
    banded = image_log_prob(model, image, band_rows=3)  # bands for finite-context models; one pass otherwise
    assert banded == pytest.approx(expected, abs=1e-4)
    rows = pixelmodels.evaluate.context_rows(model)
    if rows:  # the band must read r rows above: one row fewer changes the result (the test can fail)
        exact = per_pixel.double().sum().item()  # summed in float64, as image_log_prob does
        assert banded == pytest.approx(exact, abs=1e-5)
        monkeypatch.setattr(type(model), "context_rows", rows - 1, raising=False)
        assert abs(image_log_prob(model, image, band_rows=3) - exact) > 3e-5


def test_spn_whole_images_of_another_size_are_refused_with_the_reason():
    """The attention SPN learns one embedding per slice position, so its weights fix the slice size."""
    model = pixelmodels.build("spn", image_shape=(3, 4, 4), num_levels=8, hidden_channels=9, num_layers=1).eval()
    with pytest.raises(ValueError, match="cannot evaluate 14x10 images: its weights depend on the image size"):
        image_log_prob(model, torch.randint(0, 8, (3, 14, 10)))
    assert image_log_prob(model, torch.randint(0, 8, (3, 4, 4))) < 0  # its own size still works


def test_images_nll_totals_and_refusals():
    model = pixelmodels.build("pixelcnn", image_shape=(3, 4, 4), num_levels=8, hidden_channels=6, num_layers=1).eval()
    images = [torch.randint(0, 8, (3, 5, 7)), torch.randint(0, 8, (3, 9, 4))]
    result = images_nll(model, images)
    bits = [-image_log_prob(model, x) / math.log(2) for x in images]
    assert result.total_bits == pytest.approx(sum(bits)) and result.num_dims == 105 + 108
    assert result.bits_per_dim == pytest.approx(sum(bits) / 213) and result.num_images == 2
    spn = pixelmodels.build("spn", image_shape=(3, 4, 4), num_levels=8, scale=2, hidden_channels=9)
    with pytest.raises(ValueError, match="cannot evaluate 5x7 images: .*not divisible by the subscale factor 2"):
        images_nll(spn, images[:1])
    with pytest.raises(ValueError, match=r"image values must be in \[0, 8\)"):
        images_nll(model, [torch.full((3, 4, 4), 9)])
    assert model_at_size(model, 4, 4) is model


def test_cli_evaluate_whole_images_and_other_data_set(photo_dir, tmp_path, capsys):
    from pixelmodels.training import apply_overrides, get_preset, train

    overrides = [f"data.data_dir={photo_dir}", "data.options.size=4", "data.batch_size=4", "train.steps=2",
                 "train.eval_every=2", "train.sample_every=0", "train.num_samples=2", "data.max_test_images=8",
                 "model.hidden_channels=4", "model.num_layers=1"]  # fmt: skip
    run = train(apply_overrides(get_preset("gated_pixelcnn-photographs"), overrides), tmp_path / "run")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--images", "kodak", "--band-rows", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = pixelmodels.load_checkpoint(run)
    expected = images_nll(model, dataset_images("kodak", "test", photo_dir))
    assert out["num_images"] == 3 and out["bits_per_dim"] == pytest.approx(expected.bits_per_dim, rel=1e-5)
    files = sorted(str(p) for p in (photo_dir / "kodak").glob("*.png"))[:2]
    assert main(["evaluate", str(run), "--images", *files]) == 0
    assert json.loads(capsys.readouterr().out)["num_dims"] == 2 * 3 * 8 * 12
    assert main(["evaluate", str(run), "--dataset", "kodak"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 3 * 2 * 3
    assert main(["evaluate", str(run), "--dataset", "kodak", "--split", "valid"]) == 2
    assert "kodak has only the 'test' split" in capsys.readouterr().err


# ---------------------------------------------------------------- downloads


def test_download_command(tmp_path, capsys, monkeypatch):
    assert main(["download", "digits"]) == 0 and "nothing to download" in capsys.readouterr().out
    assert main(["download", "photographs", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no official download" in err and str(tmp_path / "wikipedia_photos") in err and "\n" not in err.strip()
    assert main(["download", "kodak", "--data-dir", str(tmp_path)]) == 2
    assert str(tmp_path / "kodak") in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="pixelmodels download mnist"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def _serve_mnist(server, shared_data_dir, monkeypatch) -> None:
    """The shared MNIST files on the local server. The shared train-images file has a rebuilt gzip wrapper (same
    content, see its README), so its SHA-256 stands in for the official one."""
    from pixelmodels.data import mnist

    url, root = server
    for name in mnist.MNIST_SHA256:
        (root / name).write_bytes((shared_data_dir / "mnist" / name).read_bytes())
    rebuilt = hashlib.sha256((root / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    monkeypatch.setitem(mnist.MNIST_SHA256, "train-images-idx3-ubyte.gz", rebuilt)
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (url,))


def test_download_mnist_through_the_cli_and_a_corrupted_file(server, tmp_path, shared_data_dir, monkeypatch, capsys):
    from pixelmodels.data import mnist

    _serve_mnist(server, shared_data_dir, monkeypatch)
    url = server[0]
    data_dir = tmp_path / "data"
    assert main(["download", "mnist", "--data-dir", str(data_dir)]) == 0
    assert "50000/10000/10000" in capsys.readouterr().out
    assert sorted(p.name for p in (data_dir / "mnist").iterdir()) == sorted(mnist.MNIST_SHA256)
    root = server[1]
    bad = bytearray((root / "t10k-labels-idx1-ubyte.gz").read_bytes())
    bad[100] ^= 0xFF
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(bad))
    other = tmp_path / "other"
    assert main(["download", "mnist", "--data-dir", str(other)]) == 2
    assert "does not match the expected" in capsys.readouterr().err
    assert not (other / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (url + "nothing/",))
    assert main(["download", "mnist", "--data-dir", str(tmp_path / "third")]) == 2
    assert "could not download" in capsys.readouterr().err


def test_train_download_fetches_first(server, tmp_path, shared_data_dir, monkeypatch, capsys):
    _serve_mnist(server, shared_data_dir, monkeypatch)
    data_dir = tmp_path / "data"
    args = ["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
            "--set", "train.steps=1", "--set", "data.max_train_images=64", "--set", "data.max_eval_images=8",
            "--set", "data.max_test_images=8", "--set", "model.hidden_channels=4", "--set", "model.num_layers=1",
            "--set", "train.sample_every=0", "--set", "train.num_samples=1", "--set", "data.batch_size=8"]  # fmt: skip
    assert main(args) == 2 and "pixelmodels download mnist" in capsys.readouterr().err
    assert main([*args, "--download"]) == 0
    assert (data_dir / "mnist" / "train-images-idx3-ubyte.gz").is_file() and (
        tmp_path / "run" / "results.json"
    ).is_file()


def test_download_dataset_api_refuses_user_sets(tmp_path):
    with pytest.raises(ValueError, match="npz has no official download"):
        download_dataset("npz", tmp_path)
