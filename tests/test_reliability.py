"""Issue 24, the trainer side: nothing lost, nothing silently wrong. What counts as a run, --overwrite that keeps
the old run until the new one has a checkpoint, no non-finite checkpoints or config values, Ctrl-C, resume rules,
sizes refused before the work starts."""

import json
import math
import os
import shutil
import signal

import pytest
import torch

from pixelmodels.training import NonFiniteLossError, apply_overrides, get_preset, train, trainer
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training.resources import check_device
from pixelmodels.training.rundir import MARKER, is_run_dir

TINY = [
    "model.hidden_channels=4", "model.num_layers=1", "model.first_kernel_size=3", "data.batch_size=8",
    "data.max_train_images=40", "data.max_eval_images=16", "data.eval_batch_size=64", "optim.warmup_steps=0",
    "train.steps=4", "train.eval_every=2", "train.sample_every=0", "train.checkpoint_every=2", "train.log_every=1",
    "train.num_samples=2", "train.num_threads=1",
]  # fmt: skip


def tiny_config(*extra):
    return apply_overrides(get_preset("quickstart"), TINY + list(extra))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return train(tiny_config(), tmp_path_factory.mktemp("rel") / "run", progress=False)


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def poison_step(monkeypatch, step: int):
    """The training loss becomes NaN at ``step`` (1-based)."""
    forward, calls = trainer.LogProbObjective.forward, {"n": 0}

    def poisoned(self, x, cond):
        out = forward(self, x, cond)
        if self.training:
            calls["n"] += 1
            return out * math.nan if calls["n"] == step else out
        return out

    monkeypatch.setattr(trainer.LogProbObjective, "forward", poisoned)


# ----- item 2: only runs are replaced ----------------------------------------------------------------------------
def test_overwrite_refuses_a_folder_that_merely_has_a_config_json(tmp_path):
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "config.json").write_text('{"name": "my project"}')
    (proj / "notes.txt").write_text("mine")
    (proj / "src" / "main.py").write_text("print(1)")
    before = snapshot(proj)
    with pytest.raises(FileExistsError, match="not a pixelmodels run"):
        train(tiny_config(), proj, overwrite=True)
    assert snapshot(proj) == before


def test_runs_are_recognised_by_their_marker_or_their_schema_and_checkpoints(finished_run, tmp_path):
    assert (finished_run / MARKER).is_file() and is_run_dir(finished_run)
    old = tmp_path / "old"  # a run written before the marker existed
    shutil.copytree(finished_run, old)
    (old / MARKER).unlink()
    assert is_run_dir(old)
    shutil.rmtree(old / "checkpoints")  # the schema without checkpoints is not enough
    assert not is_run_dir(old)


def test_overwrite_refuses_the_current_directory(finished_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    monkeypatch.chdir(run / "checkpoints")
    with pytest.raises(FileExistsError, match="current directory"):
        train(tiny_config(), run, overwrite=True)
    assert (run / "checkpoints" / "last.json").is_file()


def test_overwrite_through_a_symlink_is_refused(finished_run, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(finished_run)
    with pytest.raises(FileExistsError, match="symbolic link"):
        train(tiny_config(), link, overwrite=True)
    assert (finished_run / "results.json").is_file()


# ----- item 3: the old run survives a new one that fails early -----------------------------------------------------
def test_a_nan_at_step_2_of_an_overwrite_leaves_the_old_run_intact(finished_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = snapshot(run)
    poison_step(monkeypatch, 2)
    with pytest.raises(NonFiniteLossError, match="the run it replaced is back"):
        train(tiny_config("train.steps=6"), run, overwrite=True)
    assert snapshot(run) == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no leftover folder beside it


def test_overwrite_replaces_the_run_once_the_new_one_has_a_checkpoint(finished_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "stale.txt").write_text("old")
    poison_step(monkeypatch, 3)  # after the first checkpoint (step 2): the new run stands, the old one is gone
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train(tiny_config(), run, overwrite=True)
    assert not (run / "stale.txt").exists() and ckpt.read_checkpoint(run, "last")[0]["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


# ----- item 4: non-finite values are never saved -----------------------------------------------------------------
def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    update, calls = trainer.update_ema, {"n": 0}

    def poisoned_update(ema_model, model, decay, step):
        update(ema_model, model, decay, step)
        calls["n"] += 1
        if calls["n"] == 2:  # the weights after step 2's update: the loss is still finite until step 3
            next(model.parameters()).data.fill_(math.inf)

    monkeypatch.setattr(trainer, "update_ema", poisoned_update)
    with pytest.raises(NonFiniteLossError, match="not saved at step 2.*last good checkpoint"):
        train(tiny_config("train.checkpoint_every=1", "train.eval_every=100"), tmp_path / "run")
    meta, tensors = ckpt.read_checkpoint(tmp_path / "run", "last")
    assert meta["step"] == 1
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


@pytest.mark.parametrize(
    "override", ["optim.lr=inf", "optim.beta1=nan", "optim.grad_clip=-inf", "train.dist_timeout_s=inf"]
)
def test_non_finite_config_values_are_refused(override):
    with pytest.raises(ValueError, match="must be a finite number"):
        tiny_config(override)


# ----- Ctrl-C ------------------------------------------------------------------------------------------------
def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes_exactly(tmp_path, monkeypatch):
    reference = train(tiny_config("train.steps=5"), tmp_path / "reference", progress=False)
    update, calls = trainer.update_ema, {"n": 0}

    def interrupted_update(ema_model, model, decay, step):
        update(ema_model, model, decay, step)
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends, in the middle of step 3

    monkeypatch.setattr(trainer, "update_ema", interrupted_update)
    run = tmp_path / "run"
    with pytest.raises(trainer.TrainingInterrupted, match="interrupted at step 3 of 5.*--resume"):
        train(tiny_config("train.steps=5", "train.checkpoint_every=100"), run)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert ckpt.read_checkpoint(run, "last")[0]["step"] == 3
    monkeypatch.setattr(trainer, "update_ema", update)
    train(tiny_config("train.steps=5", "train.checkpoint_every=100"), run, resume=True, progress=False)
    got, want = ckpt.read_checkpoint(run, "last")[1], ckpt.read_checkpoint(reference, "last")[1]
    assert all(torch.equal(got[k], want[k]) for k in want if k.startswith("model/"))


# ----- resume rules ------------------------------------------------------------------------------------------
def test_resume_with_fewer_steps_is_refused_and_leaves_the_config(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = snapshot(run)
    with pytest.raises(ValueError, match="fewer than the 4 steps"):
        train(tiny_config("train.steps=2"), run, resume=True)
    assert snapshot(run) == before


def test_resuming_a_finished_run_adds_no_test_line(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)

    def test_lines():
        return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "test"]

    assert len(test_lines()) == 1
    train(tiny_config(), run, resume=True, progress=False)
    assert len(test_lines()) == 1
    train(tiny_config("train.steps=6"), run, resume=True, progress=False)  # longer: scored again, once
    assert len(test_lines()) == 1 and json.loads((run / "results.json").read_text())["steps"] == 6


def test_a_checkpoint_without_its_training_state_cannot_be_resumed(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    last = run / "checkpoints" / "last.json"
    meta = json.loads(last.read_text())
    del meta["optimizer"]
    last.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cannot be resumed: missing \\['optimizer'\\]"):
        train(tiny_config("train.steps=6"), run, resume=True)


@pytest.mark.parametrize("kwargs, extra", [({}, ["train.steps=0"]), ({"stop_after": 0}, [])])
def test_zero_steps_leave_no_folder(tmp_path, kwargs, extra):
    with pytest.raises(ValueError, match="must be"):
        train(tiny_config(*extra), tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def test_best_is_never_silently_the_last_checkpoint(tmp_path):
    run = train(tiny_config("train.eval_every=100"), tmp_path / "run", stop_after=2)  # no validation yet
    with pytest.raises(FileNotFoundError, match="no best checkpoint.*--checkpoint last"):
        ckpt.load_checkpoint(run, "best")
    assert ckpt.load_checkpoint(run, "last") is not None


def test_the_data_directory_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXELMODELS_DATA", "rel/data")
    run = train(tiny_config(), "run", stop_after=1)
    stored = json.loads((run / "config.json").read_text())["data"]["data_dir"]
    assert stored == str(tmp_path / "rel" / "data") and os.path.isabs(stored)


# ----- sizes and devices checked before the work ---------------------------------------------------------------
def test_a_model_too_big_for_memory_is_refused_before_it_is_built(tmp_path, monkeypatch):
    def no_building(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(trainer, "build", no_building)  # the estimate builds on the meta device, elsewhere
    with pytest.raises(ValueError, match=r"has [0-9,]+ parameters: training needs at least .* GiB free"):
        train(tiny_config("model.hidden_channels=100000000"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, message", [("tpu", "unknown device"), ("cuda:0", "cuda"), ("gpu", "unknown device")])
def test_bad_devices_are_value_errors(name, message):
    if name.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=message):
        check_device(name)


def test_the_memory_estimate_leaves_the_random_state_alone():
    from pixelmodels.training.resources import count_parameters

    torch.manual_seed(0)
    before = torch.get_rng_state().clone()
    assert count_parameters("pixelcnn", (1, 8, 8), 17, {"hidden_channels": 4, "num_layers": 1}) > 0
    assert torch.equal(torch.get_rng_state(), before)  # seeded runs initialise the same weights as before
