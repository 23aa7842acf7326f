"""The compress / decompress commands: round trips of PNG files of any size, model lookup (shipped, exported,
run with pinned weights) and every refusal (nothing written or overwritten)."""

import numpy as np
import pytest
import torch
from PIL import Image

import pixelmodels
from pixelmodels import codec, pretrained
from pixelmodels.cli import main


def tiny(shape, levels, seed=0):
    torch.manual_seed(seed)
    return pixelmodels.build("pixelcnn", image_shape=shape, num_levels=levels, hidden_channels=6, num_layers=2)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """An empty shipped-model folder standing in for the package's; returns a function that ships a model."""
    root = tmp_path / "shipped"
    root.mkdir()
    monkeypatch.setattr(pretrained, "ROOT", root)
    return lambda model, name: pretrained.save(model, root / name, description="test")


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_default_model_round_trip_of_any_size_grey_and_rgb(tmp_path, shipped, capsys):
    shipped(tiny((3, 4, 4), 256), "photo-gated")
    for name, pixels in {"c.png": rgb(7, 5), "g.png": rgb(6, 9)[..., 0]}.items():
        Image.fromarray(pixels).save(tmp_path / name)
        pmz, back = tmp_path / f"{name}.pmz", tmp_path / f"back-{name}"
        assert main(["compress", str(tmp_path / name), str(pmz)]) == 0
        assert "bits per sub-pixel" in capsys.readouterr().out
        assert codec.read_header(pmz.read_bytes()).model_name == "photo-gated"
        assert main(["decompress", str(pmz), str(back)]) == 0  # the model found by fingerprint
        restored = Image.open(back)
        assert restored.mode == Image.open(tmp_path / name).mode and np.array_equal(np.asarray(restored), pixels)


def test_no_shipped_model_is_a_clear_error(tmp_path, shipped, capsys):
    Image.fromarray(rgb(4, 4)).save(tmp_path / "a.png")
    assert main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.pmz")]) == 2
    assert "ships no photograph model" in capsys.readouterr().err and not (tmp_path / "a.pmz").exists()


def test_an_exported_model_folder_and_a_file_that_names_its_model(tmp_path, shipped, capsys):
    folder = pretrained.save(tiny((1, 4, 4), 2), tmp_path / "my-model")
    Image.fromarray(np.array([[0, 255, 255], [255, 0, 0]], np.uint8)).save(tmp_path / "b.png")
    assert main(["compress", "--model", str(folder), str(tmp_path / "b.png"), str(tmp_path / "b.pmz")]) == 0
    assert main(["decompress", str(tmp_path / "b.pmz"), str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err
    assert "not a shipped model" in err and codec.read_header((tmp_path / "b.pmz").read_bytes()).fingerprint in err
    assert main(["decompress", "--model", str(folder), str(tmp_path / "b.pmz"), str(tmp_path / "r.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_outputs_are_refused_before_any_work(tmp_path, shipped, capsys):
    shipped(tiny((3, 4, 4), 256), "photo-gated")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(rgb(4, 4)).save(a)
    Image.fromarray(rgb(4, 4, seed=1)).save(b)
    before = b.read_bytes()
    cases = {
        (str(a), str(b)): "is an existing image",  # the forgotten output: an existing image
        (str(a), str(tmp_path / "new.bin")): "does not end in .pmz",
        (str(a), str(tmp_path)): "is a directory",
        (str(a), str(tmp_path / "missing" / "x.pmz")): "not writable",
    }
    for argv, message in cases.items():
        assert main(["compress", *argv]) == 2
        assert message in capsys.readouterr().err, argv
    assert b.read_bytes() == before
    assert main(["compress", str(a), str(tmp_path / "new.bin"), "--force"]) == 0  # --force allows another name
    assert main(["compress", str(a), str(tmp_path / "a.pmz")]) == 0
    refusals = {"o.jpg": "lossless", "o.gif": "lossless", "o.bmp": "lossless", "b.png": "is an existing image"}
    for out, message in refusals.items():
        force = ["--force"] if out != "b.png" else []
        assert main(["decompress", str(tmp_path / "a.pmz"), str(tmp_path / out), *force]) == 2
        assert message in capsys.readouterr().err, out
        assert not (tmp_path / out).exists() or (tmp_path / out).read_bytes() == before
    assert main(["decompress", str(tmp_path / "a.pmz"), str(b), "--force"]) == 0
    assert np.array_equal(np.asarray(Image.open(b)), np.asarray(Image.open(a)))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_inputs_that_cannot_be_coded_exactly_are_refused(tmp_path, shipped, capsys):
    shipped(tiny((3, 4, 4), 256), "photo-gated")
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(tmp_path / "deep.png")  # 16-bit grey
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rgb(64, 64)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:200])  # a truncated PNG
    for name, message in {"deep.png": "16-bit", "alpha.png": "transparent", "cut.png": "truncated"}.items():
        assert main(["compress", str(tmp_path / name), str(tmp_path / "x.pmz")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.pmz").exists()


def test_pinned_weights_survive_further_training(tmp_path, capsys):
    """A file made from a run decodes after --resume trains on (the run's best/last checkpoints change)."""
    from pixelmodels.training import apply_overrides, get_preset, train

    overrides = ["model.hidden_channels=4", "model.num_layers=1", "model.first_kernel_size=3", "data.batch_size=8"]
    overrides += ["data.max_train_images=16", "data.max_eval_images=8", "train.eval_every=1", "train.sample_every=0"]
    overrides += ["train.num_threads=1", "train.log_every=1"]
    config = apply_overrides(get_preset("quickstart"), overrides + ["train.steps=1"])
    run = train(config, tmp_path / "run")
    levels = np.random.default_rng(0).integers(0, 17, (1, 11, 13))  # digits: 17 levels; any size
    np.save(tmp_path / "x.npy", levels)
    assert main(["compress", "--model", str(run), str(tmp_path / "x.npy"), str(tmp_path / "x.pmz")]) == 0
    fp = codec.read_header((tmp_path / "x.pmz").read_bytes()).fingerprint
    assert (run / "pinned" / f"{fp}.safetensors").is_file()
    train(apply_overrides(config, ["train.steps=3"]), run, resume=True)
    for which in ("best", "last"):  # the weights of the file are in no checkpoint any more
        assert codec.fingerprint(pixelmodels.load_checkpoint(run, which)) != fp
    assert main(["decompress", "--model", str(run), str(tmp_path / "x.pmz"), str(tmp_path / "y.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy")[0], levels)


def test_several_images_of_different_sizes_in_one_file(tmp_path, shipped):
    shipped(tiny((3, 4, 4), 256), "photo-gated")
    pictures = [rgb(5, 9), rgb(3, 3, seed=1)[..., 1], rgb(8, 4, seed=2)]
    for i, pixels in enumerate(pictures):
        Image.fromarray(pixels).save(tmp_path / f"p{i}.png")
    inputs = [str(tmp_path / f"p{i}.png") for i in range(3)]
    assert main(["compress", *inputs, str(tmp_path / "all.pmz")]) == 0
    assert main(["decompress", str(tmp_path / "all.pmz"), str(tmp_path / "r.png")]) == 0
    for i, pixels in enumerate(pictures):
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"r_{i:04d}.png")), pixels)


def test_a_shipped_folder_without_manifest_is_found_by_fingerprint(tmp_path, shipped):
    quantized = pytest.importorskip("pixelmodels.quantized")
    torch.manual_seed(0)
    float_model = pixelmodels.build("gated_pixelcnn", image_shape=(1, 4, 4), num_levels=2, hidden_channels=4,
                                    num_layers=1).eval()  # fmt: skip
    model = quantized.quantize(float_model, torch.randint(0, 2, (4, 1, 4, 4)))
    model.save(pretrained.ROOT / "bare-integer")  # IntegerModel.save only, no pretrained.json
    data = codec.compress(model, torch.randint(0, 2, (1, 5, 6)))
    assert pretrained.find(codec.read_header(data).fingerprint) == "bare-integer"
