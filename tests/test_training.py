"""Trainer and checkpoints on digits with a tiny PixelCNN: exact resume, non-finite loss, checkpoint files."""

import json
import math

import numpy as np
import pytest
import torch

import pixelmodels
from pixelmodels.evaluate import dataset_nll
from pixelmodels.training import NonFiniteLossError, apply_overrides, get_preset, train
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training.trainer import DataOrder, LogProbObjective, learning_rate
from pixelmodels.viz import save_grid

TINY = [
    "model.hidden_channels=4",
    "model.num_layers=1",
    "model.first_kernel_size=3",
    "data.batch_size=8",
    "data.max_train_images=40",  # 5 batches an epoch: the runs below cross epoch boundaries
    "data.max_eval_images=16",
    "data.eval_batch_size=64",
    "optim.warmup_steps=2",
    "train.steps=8",
    "train.eval_every=3",
    "train.sample_every=0",
    "train.checkpoint_every=100",
    "train.log_every=1",
    "train.num_samples=2",
    "train.num_threads=1",
]


def tiny_config(*extra):
    return apply_overrides(get_preset("quickstart"), TINY + list(extra))


def tensors_of(run_dir, which="last"):
    return ckpt.read_checkpoint(run_dir, which)[1]


def test_resume_gives_identical_weights(tmp_path):
    config = tiny_config("optim.ema_decay=0.9")
    straight = train(config, tmp_path / "straight")
    paused = train(config, tmp_path / "resumed", stop_after=4)
    assert json.loads((paused / "checkpoints" / "last.json").read_text())["step"] == 4
    assert not (paused / "results.json").exists()
    resumed = train(config, paused, resume=True)
    a, b = tensors_of(straight), tensors_of(resumed)
    assert set(a) == set(b)
    for key in a:
        if not key.startswith("rng/"):
            assert torch.equal(a[key], b[key]), key
    assert any(k.startswith("ema/") for k in a) and any(k.startswith("optim/") for k in a)

    # the metrics of the resumed run are the straight run's (valid lines are deterministic; lines after
    # the pause point were not duplicated)
    def valid_lines(run):
        return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in x]

    assert valid_lines(straight) == valid_lines(resumed)


def test_data_order_restores_its_position():
    order = DataOrder(10, 3, seed=1)
    for _ in range(4):  # into the second epoch
        order.next_indices()
    state = order.state_dict()
    expected = [order.next_indices() for _ in range(5)]
    other = DataOrder(10, 3, seed=1)
    other.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(expected, [other.next_indices() for _ in range(5)], strict=True))
    epoch = DataOrder(9, 3, seed=2)
    assert sorted(torch.cat([epoch.next_indices() for _ in range(3)]).tolist()) == list(range(9))


def test_learning_rate_warmup_and_decay():
    optim = get_preset("quickstart").optim
    optim.warmup_steps, optim.lr, optim.min_lr_ratio = 10, 1.0, 0.1
    assert learning_rate(0, optim, 110) == pytest.approx(0.1)
    assert learning_rate(9, optim, 110) == pytest.approx(1.0)
    assert learning_rate(60, optim, 110) == pytest.approx(0.55)  # cosine half-way: (1 + 0.1) / 2
    assert learning_rate(110, optim, 110) == pytest.approx(0.1)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    config = tiny_config("train.checkpoint_every=3")
    forward = LogProbObjective.forward
    calls = {"n": 0}

    def poisoned(self, x, cond):
        calls["n"] += 1
        out = forward(self, x, cond)
        return out * math.nan if calls["n"] == 5 else out

    monkeypatch.setattr(LogProbObjective, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 5.*last good checkpoint"):
        train(config, tmp_path / "run")
    meta, tensors = ckpt.read_checkpoint(tmp_path / "run", "last")  # still readable, from step 3
    assert meta["step"] == 3
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if t.is_floating_point())
    assert "non_finite" in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_huge_learning_rate_is_caught(tmp_path):
    config = tiny_config("optim.lr=1e30", "optim.grad_clip=none", "optim.warmup_steps=0", "train.steps=20")
    with pytest.raises(NonFiniteLossError, match=r"at step \d+"):
        train(config, tmp_path / "run")


def test_load_checkpoint_gives_ema_weights_and_exact_nll(tmp_path):
    run = train(tiny_config("optim.ema_decay=0.5"), tmp_path / "run")
    model = pixelmodels.load_checkpoint(run, which="last")
    raw = pixelmodels.load_checkpoint(run, which="last", weights="raw")
    tensors = tensors_of(run)
    name, param = next(iter(model.state_dict().items()))
    assert torch.equal(param, tensors[f"ema/{name}"]) and torch.equal(raw.state_dict()[name], tensors[f"model/{name}"])
    assert not torch.equal(tensors["ema/input_conv.weight"], tensors["model/input_conv.weight"])
    results = json.loads((run / "results.json").read_text())
    best = pixelmodels.load_checkpoint(run)
    from pixelmodels.data import load_dataset

    test = load_dataset("digits", "test")
    manual = -best.log_prob(test.images.long()).double().mean().item()
    assert results["test"]["nll_nats"] == pytest.approx(manual, rel=1e-6)
    assert results["test"]["bits_per_dim"] == pytest.approx(manual / (64 * math.log(2)), rel=1e-6)
    assert (run / "samples.png").is_file() and (run / "config.json").is_file()


def test_compile_prefix_is_stripped():
    sd = {"_orig_mod.input_conv.weight": torch.zeros(1), "module._orig_mod.b": torch.ones(1), "c": torch.ones(2)}
    assert sorted(ckpt.strip_compile_prefix(sd)) == ["c", "input_conv.weight", "module.b"]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    return train(tiny_config("train.steps=2", "train.eval_every=2"), tmp_path_factory.mktemp("saved") / "run")


def test_checkpoint_files_are_complete(saved_run):
    folder = saved_run / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["best-step0000002.safetensors", "best.json", "last-step0000002.safetensors", "last.json"]
    assert not [p for p in saved_run.rglob(".*tmp*")]  # no temporary files left behind
    meta = json.loads((folder / "last.json").read_text())
    assert meta["config"]["model"]["name"] == "pixelcnn" and meta["state"]["data_order"]["num_items"] == 40


def test_corrupt_and_mismatched_checkpoints_are_value_errors(saved_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(saved_run, run)
    tensors_file = run / "checkpoints" / "best-step0000002.safetensors"
    data = bytearray(tensors_file.read_bytes())
    data[-3] ^= 0xFF
    tensors_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        pixelmodels.load_checkpoint(run)
    (run / "checkpoints" / "last.json").write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        pixelmodels.load_checkpoint(run, which="last")
    with pytest.raises(FileNotFoundError):
        pixelmodels.load_checkpoint(tmp_path / "nothing")
    # tensors that do not fit the model config stored beside them
    meta, tensors = ckpt.read_checkpoint(saved_run, "last")
    meta["model"]["hidden_channels"] = 6
    with pytest.raises(ValueError, match="does not match the model"):
        ckpt.model_from_checkpoint(meta, tensors, "ema", "test")


def test_existing_run_dir_is_refused_unless_resume_or_overwrite(saved_run, tmp_path):
    config = tiny_config("train.steps=2")
    with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
        train(config, saved_run)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a pixelmodels run"):
        train(config, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="cannot change optim.lr"):
        train(apply_overrides(config, ["optim.lr=0.1"]), saved_run, resume=True)


def test_overwrite_replaces_the_run(tmp_path):
    config = tiny_config("train.steps=2", "train.eval_every=2")
    run = train(config, tmp_path / "run")
    (run / "stale.txt").write_text("old")
    train(config, run, overwrite=True)
    assert not (run / "stale.txt").exists() and (run / "results.json").exists()


def test_dataset_nll_matches_log_prob():
    model = pixelmodels.build("pixelcnn", image_shape=(1, 4, 4), num_levels=3, hidden_channels=3, num_layers=1)
    x = torch.randint(0, 3, (10, 1, 4, 4))
    result = dataset_nll(model, x, batch_size=3)
    expected = -model.log_prob(x).double().mean().item()
    assert result.nll_nats == pytest.approx(expected, rel=1e-6) and result.num_images == 10
    assert result.bits_per_dim == pytest.approx(expected / (16 * math.log(2)), rel=1e-6)


def test_save_grid_layout(tmp_path):
    from PIL import Image

    images = torch.randint(0, 17, (5, 1, 8, 8))
    path = save_grid(images, tmp_path / "g.png", num_levels=17, nrow=3, scale=2)
    with Image.open(path) as img:
        assert img.size == (3 * 17 + 1, 2 * 17 + 1) and img.mode == "L"
        pixels = torch.from_numpy(np.array(img)).long()
    assert torch.equal(pixels[1:17:2, 1:17:2], (images[0, 0].double() * 255 / 16).round().long())


@pytest.mark.parametrize("name", [n for n in __import__("pixelmodels").training.PRESETS if n != "quickstart"])
def test_paper_presets_take_a_step(name, tmp_path, shared_data_dir):
    """Each paper preset, unchanged but for the step count, trains one step where its data is present."""
    from pixelmodels.data import dataset_info

    config = apply_overrides(get_preset(name), [f"data.data_dir={shared_data_dir}", "train.device=cpu"])
    if config.data.dataset == "npz":
        pytest.skip("ImageNet .npz files are not on this machine (tests/test_paper_presets.py checks the model)")
    if dataset_info(config.data.dataset, data_dir=shared_data_dir, **config.data.options)["files_present"] is False:
        pytest.skip(f"{config.data.dataset} files not in {shared_data_dir}")
    run = train(config, tmp_path / "run", stop_after=1)
    meta, _ = ckpt.read_checkpoint(run, "last")
    assert meta["step"] == 1 and meta["model"].get("num_layers") == config.model.hparams.get("num_layers")


def test_tensorboard_events_when_installed(tmp_path, monkeypatch):
    """tensorboard is not installed here: a stand-in SummaryWriter checks what the trainer sends it."""
    import sys
    import types

    calls = []

    class SummaryWriter:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    train(tiny_config("train.steps=2", "train.eval_every=2"), tmp_path / "run")
    assert calls[0] == ("init", str(tmp_path / "run" / "tensorboard")) and calls[-1] == ("close",)
    assert (
        ("train/bits_per_dim", 2) in calls and ("valid/bits_per_dim", 2) in calls and ("test/bits_per_dim", 2) in calls
    )


def test_a_crash_while_saving_keeps_the_previous_checkpoint(saved_run, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(saved_run, run)
    model = pixelmodels.load_checkpoint(run, which="last", weights="raw")

    def crash(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "atomic_write_text", crash)  # the JSON (commit point) never lands
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(run / "checkpoints", "last", step=3, model=model, ema_model=None, run_config={})
    meta, _ = ckpt.read_checkpoint(run, "last")
    assert meta["step"] == 2


@pytest.mark.slow
def test_cifar10_preset_takes_a_step_on_written_batches(tmp_path):
    """CIFAR-10 is not on this machine: the paper-size PixelCNN preset takes one step on tiny batches in the
    official format (written by the data tests' helper). ~25 s on 2 busy CPU cores, hence slow."""
    from test_data import _write_cifar

    _write_cifar(tmp_path / "data" / "cifar-10-batches-py")
    config = apply_overrides(get_preset("pixelcnn-cifar10"), [f"data.data_dir={tmp_path / 'data'}", "train.device=cpu"])
    run = train(config, tmp_path / "run", stop_after=1)
    meta, tensors = ckpt.read_checkpoint(run, "last")
    assert meta["step"] == 1 and meta["model"]["output_channels"] == 1024
    assert tensors["model/output.3.weight"].shape[0] == 3 * 256  # a 256-way softmax per sub-pixel


def test_objective_trains_on_the_estimate_and_evaluates_exactly():
    """Models with ``estimate_log_prob`` (SPN: random target slices, memory set by the slice) train on it; in
    eval mode the objective is the exact log_prob."""
    import pixelmodels
    from pixelmodels.training.trainer import LogProbObjective

    model = pixelmodels.build("spn", image_shape=(1, 4, 4), num_levels=4, scale=2, hidden_channels=6, num_layers=1,
                              context_channels=6, context_layers=1, first_kernel_size=3)  # fmt: skip
    calls = []
    estimate = model.estimate_log_prob
    model.estimate_log_prob = lambda x, cond=None: calls.append(len(x)) or estimate(x, cond)
    objective = LogProbObjective(model)
    x = torch.randint(4, (3, 1, 4, 4))
    objective.train()
    objective(x, None)
    assert calls == [3]
    objective.eval()
    torch.testing.assert_close(objective(x, None), model.log_prob(x))
    assert calls == [3]
