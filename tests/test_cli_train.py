"""The CLI end to end on digits with a tiny model: train -> evaluate -> sample -> complete -> resume, and bad
input giving one line on stderr with a non-zero exit."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pixelmodels import viz
from pixelmodels.cli import main

TINY = [
    "--preset", "quickstart",
    "--set", "model.hidden_channels=4", "--set", "model.num_layers=1", "--set", "model.first_kernel_size=3",
    "--set", "data.batch_size=8", "--set", "data.max_train_images=64", "--set", "data.max_eval_images=16",
    "--set", "optim.warmup_steps=0", "--set", "train.steps=4", "--set", "train.eval_every=2",
    "--set", "train.sample_every=2", "--set", "train.checkpoint_every=2", "--set", "train.num_samples=4",
    "--set", "train.num_threads=1",
]  # fmt: skip


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def paused_run(tmp_path_factory):
    """A tiny run stopped at step 2 of 4 (best and last checkpoints written)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out", str(out), "--stop-after", "2"]) == 0
    return out


def write_digit_png(path, size=(8, 8), mode="L"):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).convert(mode).save(path)
    return path


def test_train_evaluate_sample_complete_resume(paused_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(paused_run, run_dir)
    assert json.loads((run_dir / "checkpoints" / "last.json").read_text())["step"] == 2
    assert (run_dir / "samples" / "step0000002.png").is_file()

    code, out, _ = run(capsys, "evaluate", run_dir, "--split", "valid")
    result = json.loads(out)
    assert code == 0 and result["split"] == "valid" and result["num_images"] == 180 and result["step"] == 2
    assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / (64 * np.log(2)))

    grids = []
    for seed in (1, 1, 2):
        path = tmp_path / f"samples{len(grids)}.png"
        code, out, _ = run(capsys, "sample", run_dir, "-n", 6, "--seed", seed, "--out", path, "--temperature", 0.9)
        assert code == 0 and path.is_file()
        grids.append(np.asarray(Image.open(path)))
    assert np.array_equal(grids[0], grids[1]) and not np.array_equal(grids[0], grids[2])

    image = write_digit_png(tmp_path / "digit.png", mode="RGB")  # converted to the model's one channel
    path = tmp_path / "completions.png"
    code, out, _ = run(capsys, "complete", run_dir, "--image", image, "--keep-top", 0.5, "-n", 3, "--out", path)
    assert code == 0
    # labelled grid: given part (hidden rows tinted), 3 completions, the input; 8x8 images at scale 4, padding 2
    grid = np.asarray(Image.open(path)).astype(int)
    top = viz.TEXT_HEIGHT + 2
    assert grid.shape == (top + 32 + 2, max(5 * 34 + 2, viz.HEADER_MIN_WIDTH), 3)
    cells = [grid[top : top + 32, 2 + 34 * i : 34 + 34 * i] for i in range(5)]
    for cell in cells[:4]:
        assert np.array_equal(cell[:16], cells[4][:16])  # the top 4 rows are the input's
    hidden = cells[0][16:]
    assert (hidden[..., 0] - hidden[..., 2] >= 150).all()  # tinted orange: never read as black
    assert (cells[4][..., 0] == cells[4][..., 2]).all()  # the input itself is grey

    code, out, _ = run(capsys, "train", "--out", run_dir, "--resume")
    assert code == 0 and "test " in out and "bits/dim" in out
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 4 and f"{results['test']['bits_per_dim']:.4f}" in out
    assert (run_dir / "samples.png").is_file()

    code, out, _ = run(capsys, "train", "--out", run_dir, "--resume", "--set", "train.steps=6")
    assert code == 0 and json.loads((run_dir / "results.json").read_text())["steps"] == 6


def test_presets_command_lists_quickstart(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "quickstart" in out and "pixelcnn-cifar10" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--preset", "nope", "--out", "{tmp}/x"], "unknown preset 'nope'"),
        (["train", "--model", "nope", "--out", "{tmp}/x"], "unknown model 'nope'"),
        (["train", "--dataset", "nope", "--out", "{tmp}/x"], "unknown data set 'nope'"),
        (["train", "--preset", "quickstart", "--set", "optim.lrr=1", "--out", "{tmp}/x"], "unknown key 'optim.lrr'"),
        (["train", "--preset", "quickstart", "--set", "optim.lr=abc", "--out", "{tmp}/x"], "must be a number"),
        (["train", "--preset", "quickstart", "--out", "{run}"], "already holds a run"),
        (["train", "--out", "{tmp}/none", "--resume"], "nothing to resume"),
        (["sample", "{run}", "-n", "2", "--class", "3", "--out", "{tmp}/s.png"], "unconditional"),
        (["sample", "{tmp}/missing", "--out", "{tmp}/s.png"], "no run directory or checkpoint"),
        (["evaluate", "{run}", "--split", "everything"], "unknown split"),
        (
            ["complete", "{run}", "--image", "{tmp}/big.png", "--out", "{tmp}/c.png"],
            "is 9x8 pixels; the model takes 8x8",
        ),
        (["complete", "{run}", "--image", "{tmp}/notes.txt", "--out", "{tmp}/c.png"], "cannot read image"),
        (["complete", "{run}", "--image", "{tmp}/big.png", "--keep-top", "2", "--out", "{tmp}/c.png"], "--keep-top"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(argv, message, paused_run, tmp_path, capsys):
    write_digit_png(tmp_path / "big.png", size=(9, 8))
    (tmp_path / "notes.txt").write_text("not an image")
    before = sorted(p.name for p in paused_run.rglob("*"))
    code, out, err = run(capsys, *(a.format(tmp=tmp_path, run=paused_run) for a in argv))
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in paused_run.rglob("*")) == before  # nothing written or removed


def test_corrupt_checkpoint_is_one_line(paused_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(paused_run, run_dir)
    for f in (run_dir / "checkpoints").glob("*.safetensors"):
        f.write_bytes(f.read_bytes()[:100])
    for argv in (["evaluate", run_dir], ["sample", run_dir, "--out", tmp_path / "s.png"]):
        code, _, err = run(capsys, *argv)
        assert code != 0 and len(err.strip().splitlines()) == 1 and "corrupt checkpoint" in err
    code, _, err = run(capsys, "train", "--out", run_dir, "--resume")
    assert code != 0 and "corrupt checkpoint" in err


def test_sample_fixed_point_method_draws_the_naive_images(paused_run, tmp_path, capsys):
    grids = []
    for method in ("naive", "fixed_point"):
        path = tmp_path / f"{method}.png"
        code, _, _ = run(capsys, "sample", paused_run, "-n", 2, "--seed", 4, "--method", method, "--out", path)
        assert code == 0
        grids.append(np.asarray(Image.open(path)))
    assert np.array_equal(grids[0], grids[1])
