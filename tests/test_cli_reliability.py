"""Issue 24, the command-line side: one-line errors (exit 2) instead of tracebacks or silently wrong results,
checked numeric flags, checks made before the work, one vocabulary across commands."""

import errno
import hashlib
import json
import shutil
import signal

import numpy as np
import pytest
import safetensors.torch
from PIL import Image

import pixelmodels
from pixelmodels import viz
from pixelmodels.cli import main
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training import trainer
from test_cli_train import TINY as CLI_TINY

# the end-to-end tests' tiny run, scored at once (2 steps) on a 16-image test subset
TINY = [*CLI_TINY, "--set", "train.steps=2", "--set", "data.max_test_images=16"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("clirel") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def own_run(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.fixture
def no_sampling(monkeypatch):
    """Fails the test if a model samples: output checks must come before the work."""

    def refuse(*args, **kwargs):
        raise AssertionError("sampled before checking the output path")

    monkeypatch.setattr(AutoregressiveModel, "sample", refuse)


def digit_png(path, mode="L", size=(8, 8), bits=8):
    rng = np.random.default_rng(0)
    if bits == 16:
        Image.fromarray(rng.integers(0, 65536, (size[1], size[0])).astype(np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).convert(mode).save(path)
    return path


# ----- item 9: every numeric flag is checked ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "{run}", "--batch-size", "-4"], "--batch-size: must be >= 1, got -4"),
        (["evaluate", "{run}", "--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
        (["sample", "{run}", "-n", "0", "--out", "{tmp}/s.png"], "-n: must be >= 1"),
        (["sample", "{run}", "-n", "-3", "--out", "{tmp}/s.png"], "-n: must be >= 1"),
        (["sample", "{run}", "-n", "100000000", "--out", "{tmp}/s.png"], "at most 1024 images"),
        (["sample", "{run}", "--seed", "-1", "--out", "{tmp}/s.png"], "--seed: must be in [0,"),
        (["sample", "{run}", "--temperature", "0", "--out", "{tmp}/s.png"], "--temperature: must be a finite"),
        (["sample", "{run}", "--temperature", "nan", "--out", "{tmp}/s.png"], "--temperature: must be a finite"),
        (["sample", "{run}", "--nrow", "0", "--out", "{tmp}/s.png"], "--nrow: must be >= 1"),
        (["sample", "{run}", "--class", "-1", "--out", "{tmp}/s.png"], "--class: must be >= 0"),
        (["complete", "{run}", "--image", "{tmp}/d.png", "--keep-top", "1", "--out", "{tmp}/c.png"], "--keep-top"),
        (["complete", "{run}", "--image", "{tmp}/d.png", "-n", "0", "--out", "{tmp}/c.png"], "-n: must be >= 1"),
        (["nll-map", "{run}", "--split", "test", "-n", "0", "--out", "{tmp}/m.png"], "-n: must be >= 1"),
        (["report", "{run}", "--samples", "100000"], "at most 1024 images"),
        (["report", "{run}", "--samples", "0"], "--samples: must be >= 1"),
        (["inspect", "--model", "pixelcnn", "--levels", "1"], "--levels: must be >= 2"),
        (["inspect", "--model", "pixelcnn", "--channel", "-1"], "--channel: must be >= 0"),
        (["inspect", "{run}", "--channel", "5"], "--channel 5: the model's images have channels 0..0"),
        (["inspect", "{run}", "--position", "9,9"], "--position 9,9 is outside the 8x8 image"),
        (["inspect", "--model", "pixelcnn", "--image-shape", "0,4,4"], "--image-shape must be 3 comma-separated"),
        (["train", *TINY, "--out", "{tmp}/new", "--stop-after", "0"], "--stop-after: must be >= 1"),
        (["train", *TINY, "--out", "{tmp}/new", "--set", "train.steps=0"], "train.steps must be >= 1"),
        (["train", *TINY, "--out", "{tmp}/new", "--set", "optim.lr=inf"], "optim.lr must be a finite number"),
        (["evaluate", "{run}", "--device", "tpu"], "unknown device 'tpu'"),
        (["sample", "{run}", "--device", "cuda:7", "--out", "{tmp}/s.png"], "device 'cuda:7'"),
    ],
)
def test_bad_numbers_and_devices_are_one_line_errors_and_write_nothing(argv, message, run_dir, tmp_path, capsys):
    digit_png(tmp_path / "d.png")
    before = sorted(p.name for p in tmp_path.iterdir())
    run_before = {p.name: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    code, out, err = run(capsys, *(a.format(tmp=tmp_path, run=run_dir) for a in argv))
    assert_one_line_error(code, err, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stub folder, no output
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == run_before


# ----- item 4: evaluate never prints NaN --------------------------------------------------------------------------
def test_evaluate_refuses_a_non_finite_result(own_run, capsys):
    json_path = own_run / "checkpoints" / "best.json"
    meta = json.loads(json_path.read_text())
    tensors = safetensors.torch.load_file(own_run / "checkpoints" / meta["tensors"])
    for key in tensors:
        if key.startswith("ema/") and tensors[key].is_floating_point():
            tensors[key].fill_(float("nan"))
    data = safetensors.torch.save(tensors)
    (own_run / "checkpoints" / meta["tensors"]).write_bytes(data)
    json_path.write_text(json.dumps({**meta, "sha256": hashlib.sha256(data).hexdigest()}))
    code, out, err = run(capsys, "evaluate", own_run)
    assert_one_line_error(code, err, "non-finite NLL")
    assert "NaN" not in out and out == ""


# ----- one-line errors instead of tracebacks ----------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_keeps_the_checkpoint(own_run, monkeypatch, capsys):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    code, _, err = run(capsys, "train", "--out", own_run, "--resume", "--set", "train.steps=4")
    assert_one_line_error(code, err, "No space left on device: ")
    assert ckpt.read_checkpoint(own_run, "last")[0]["step"] == 2


def test_a_read_only_run_directory_is_one_line(own_run, monkeypatch, capsys):
    def read_only(path, text):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(ckpt, "atomic_write_text", read_only)  # as root, chmod would not stop the writes
    code, _, err = run(capsys, "train", "--out", own_run, "--resume", "--set", "train.steps=4")
    assert_one_line_error(code, err, "Permission denied: ")


@pytest.mark.parametrize("command", ["sample", "nll-map", "inspect"])
def test_outputs_are_checked_before_the_work(command, run_dir, tmp_path, capsys, no_sampling):
    extra = ["--split", "test"] if command == "nll-map" else []
    for out, message in [(tmp_path, "is a directory"), (tmp_path / "x.jpg", "must end in .png")]:
        code, _, err = run(capsys, command, run_dir, *extra, "--out", out)
        assert_one_line_error(code, err, message)


@pytest.mark.parametrize("command", ["complete", "nll-map"])
def test_unreadable_images_are_one_line_errors(command, run_dir, tmp_path, capsys):
    good = digit_png(tmp_path / "good.png")
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:60])
    digit_png(tmp_path / "deep.png", bits=16)  # Pillow's I;16 -> L conversion would clip it
    rgba = Image.open(good).convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(tmp_path / "transparent.png")
    flag = "--image"
    for name, message in [("truncated", "cannot read image"), ("deep", "16-bit"), ("transparent", "transparent")]:
        code, _, err = run(capsys, command, run_dir, flag, tmp_path / f"{name}.png", "--out", tmp_path / "o.png")
        assert_one_line_error(code, err, message)
    assert not (tmp_path / "o.png").exists()


def test_an_opaque_rgba_image_is_read_like_its_grey_version(run_dir, tmp_path):
    good = digit_png(tmp_path / "good.png")
    Image.open(good).convert("RGBA").save(tmp_path / "opaque.png")
    model = pixelmodels.load_checkpoint(run_dir)
    from pixelmodels.cli import read_image

    a = read_image(good, model.image_shape, model.num_levels)
    b = read_image(tmp_path / "opaque.png", model.image_shape, model.num_levels)
    assert (a == b).all()


def test_ctrl_c_in_train_saves_and_exits_130(tmp_path, monkeypatch, capsys):
    update, calls = trainer.update_ema, {"n": 0}

    def interrupted_update(*args):
        update(*args)
        calls["n"] += 1
        if calls["n"] == 1:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(trainer, "update_ema", interrupted_update)
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", *TINY, "--out", out, "--set", "train.steps=3")
    assert code == 130 and "interrupted at step 1 of 3" in err and f"pixelmodels train --out {out} --resume" in err
    assert ckpt.read_checkpoint(out, "last")[0]["step"] == 1


# ----- smaller defects ------------------------------------------------------------------------------------------
def test_best_missing_is_an_error_not_a_mislabelled_last(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--set", "train.eval_every=100", "--stop-after", "1"]) == 0
    code, _, err = run(capsys, "evaluate", out, "--split", "valid")
    assert_one_line_error(code, err, "no best checkpoint")
    code, printed, _ = run(capsys, "evaluate", out, "--split", "valid", "--checkpoint", "last")
    assert code == 0 and json.loads(printed)["checkpoint"] == "last"


def test_report_with_an_unknown_split_fails(run_dir, capsys):
    code, _, err = run(capsys, "report", run_dir, "--split", "foo")
    assert_one_line_error(code, err, "unknown split 'foo'")


def test_resume_works_from_last_json_without_config_json(own_run, capsys):
    (own_run / "config.json").unlink()
    code, out, err = run(capsys, "train", "--out", own_run, "--resume", "--set", "train.steps=3")
    assert code == 0, err
    assert json.loads((own_run / "results.json").read_text())["steps"] == 3


def test_overwrite_through_a_symlink_or_of_a_project_is_one_line(run_dir, tmp_path, monkeypatch, capsys):
    link = tmp_path / "link"
    link.symlink_to(run_dir)
    code, _, err = run(capsys, "train", *TINY, "--out", link, "--overwrite")
    assert_one_line_error(code, err, "symbolic link")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "config.json").write_text("{}")
    (proj / "notes.txt").write_text("mine")
    monkeypatch.chdir(proj)
    code, _, err = run(capsys, "train", *TINY, "--out", ".", "--overwrite")
    assert_one_line_error(code, err, "not a pixelmodels run")
    assert sorted(p.name for p in proj.iterdir()) == ["config.json", "notes.txt"]


# ----- one vocabulary ---------------------------------------------------------------------------------------------
def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"pixelmodels {pixelmodels.__version__}"


def test_checkpoint_flag_everywhere_and_which_still_accepted(run_dir, tmp_path, capsys):
    for argv in (
        ["inspect", run_dir, "--checkpoint", "last"],
        ["inspect", run_dir, "--which", "last"],
        ["nll-map", run_dir, "--split", "test", "-n", "1", "--checkpoint", "last", "--out", tmp_path / "m.png"],
        ["nll-map", run_dir, "--split", "test", "-n", "1", "--data-dir", tmp_path, "--out", tmp_path / "m.png"],
        ["report", run_dir, "--checkpoint", "last", "--data-dir", tmp_path, "--out", tmp_path / "r.md"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 0, (argv, err)
    assert "--which" not in main_help(capsys, "inspect")


def main_help(capsys, command):
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_sampling_flags_speak_cli_not_python(run_dir, tmp_path, capsys):
    for command, extra in [("sample", []), ("nll-map", ["--split", "test"])]:
        code, _, err = run(capsys, command, run_dir, *extra, "--class", "3", "--out", tmp_path / "s.png")
        assert_one_line_error(code, err, "--class 3")
        assert "cond=" not in err


def test_complete_grid_tints_the_hidden_part(run_dir, tmp_path, capsys):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(black)
    code, _, err = run(capsys, "complete", run_dir, "--image", black, "-n", 1, "--out", tmp_path / "c.png")
    assert code == 0, err
    grid = np.asarray(Image.open(tmp_path / "c.png")).astype(int)
    top, scale = viz.TEXT_HEIGHT + 2, 4
    given = grid[top : top + 8 * scale, 2 : 2 + 8 * scale]  # the first cell: what the model was given
    assert (given[: 4 * scale] == 0).all()  # the given rows: black, as in the image
    assert (given[4 * scale :] == viz.HIDDEN_TINT).all()  # the hidden rows: tinted, not black
