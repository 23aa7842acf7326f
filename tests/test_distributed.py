"""DistributedDataParallel on the CPU (gloo, 127.0.0.1) with a tiny PixelCNN on digits.

Two ranks started as forked processes with torchrun's environment variables (fast: torch is already imported)
and, marked slow, once through torchrun itself. Checks: identical weights on both ranks, equal to one process
with the same global batch; the validation figure equals the single-process one; resume with another world
size; a rank that raises or hangs ends the run with a clear error within a bounded time; only rank 0 writes.
"""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddp_worker import run_rank
from pixelmodels.evaluate import dataset_nll
from pixelmodels.training import apply_overrides, get_preset, train
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training.trainer import DataOrder

TESTS = Path(__file__).resolve().parent
TINY = [
    "model.hidden_channels=4",
    "model.num_layers=1",
    "model.first_kernel_size=3",
    "data.batch_size=8",  # the global batch: 2 ranks x 4
    "data.max_train_images=40",  # 5 batches an epoch: the runs cross an epoch boundary
    "data.max_eval_images=15",  # odd: the ranks score 7 and 8 images
    "data.eval_batch_size=4",
    "optim.warmup_steps=2",
    "optim.ema_decay=0.9",
    "train.steps=8",
    "train.eval_every=3",
    "train.sample_every=0",
    "train.checkpoint_every=100",
    "train.log_every=1",
    "train.num_samples=2",
    "train.num_threads=1",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_args(out: Path, *extra: str) -> list[str]:
    args = ["train", "--preset", "quickstart", "--out", str(out)]
    for item in TINY + list(extra):
        args += ["--set", item]
    return args


def start_ranks(tmp_path: Path, argv: list[str], env: dict | None = None, world_size: int = 2):
    """Fork ``world_size`` processes that each run the CLI as one torchrun rank; returns (processes, error files)."""
    ctx, port = multiprocessing.get_context("fork"), free_port()
    errors = [tmp_path / f"rank{r}.err" for r in range(world_size)]
    procs = [
        ctx.Process(target=run_rank, args=(r, world_size, port, argv, env or {}, str(errors[r])))
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    return procs, errors


def stop(procs) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
        p.join(10)


def tensors(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return ckpt.read_checkpoint(run_dir, which)[1]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_close(a: dict, b: dict, prefixes=("model/", "ema/", "optim/"), atol=1e-5) -> None:
    keys = [k for k in a if k.startswith(prefixes)]
    assert keys and set(keys) == {k for k in b if k.startswith(prefixes)}
    for k in keys:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def test_data_order_shards_the_global_batch():
    single = DataOrder(40, 8, seed=3)
    ranks = [DataOrder(40, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(12):  # crosses two epoch boundaries
        whole = single.next_indices()
        parts = [o.next_indices() for o in ranks]
        assert [len(p) for p in parts] == [4, 4]
        assert sorted(torch.cat(parts).tolist()) == sorted(whole.tolist())
        assert all(o.state_dict() == single.state_dict() for o in ranks)  # the state is world-size independent
    with pytest.raises(ValueError, match="divisible"):
        DataOrder(40, 9, seed=0, rank=0, world_size=2)


def test_two_ranks_equal_one_process_and_resume_with_one(tmp_path):
    config = apply_overrides(get_preset("quickstart"), TINY)
    argv = cli_args(tmp_path / "ddp", "train.dist_timeout_s=60") + ["--stop-after", "5"]
    procs, errors = start_ranks(tmp_path, argv, env={"PIXELMODELS_TEST_RANK_DIRS": "1"})
    single_5 = train(config, tmp_path / "single5", stop_after=5)  # in the meantime: one process, batch 8
    for p in procs:
        p.join(120)
    stop(procs)
    assert [p.exitcode for p in procs] == [0, 0], [e.read_text() for e in errors if e.exists()]
    ddp, ddp_rank1 = tmp_path / "ddp", tmp_path / "ddp-rank1"
    rank0, rank1 = tensors(ddp), tensors(ddp_rank1)
    for k in rank0:  # both ranks hold the same weights, optimizer moments and EMA
        if not k.startswith("rng/"):
            assert torch.equal(rank0[k], rank1[k]), k
    assert_close(rank0, tensors(single_5))  # = one process with the same global batch

    # validation at step 3 was scored half by each rank and all-reduced: the single-process figure
    valid = [m for m in metrics(ddp) if m["split"] == "valid"]
    single_valid = [m for m in metrics(single_5) if m["split"] == "valid"]
    assert [m["step"] for m in valid] == [3] and valid[0]["num_images"] == 15
    assert valid[0]["bits_per_dim"] == pytest.approx(single_valid[0]["bits_per_dim"], rel=1e-6)
    assert valid == [m for m in metrics(ddp_rank1) if m["split"] == "valid"]  # every rank got the same figure
    best = ckpt.load_checkpoint(ddp, "best")  # and it is the exact NLL of the saved EMA weights
    from pixelmodels.data import load_dataset

    valid_set = load_dataset("digits", "valid")
    keep = torch.linspace(0, len(valid_set) - 1, 15).round().long()  # the trainer's evenly spaced valid subset
    direct = dataset_nll(best, valid_set.images[keep], None, batch_size=15)
    assert valid[0]["bits_per_dim"] == pytest.approx(direct.bits_per_dim, rel=1e-6)
    train_lines = [m for m in metrics(ddp) if m["split"] == "train"]  # the loss logged is the global batch's
    single_train = [m for m in metrics(single_5) if m["split"] == "train"]
    assert [m["bits_per_dim"] for m in train_lines] == pytest.approx([m["bits_per_dim"] for m in single_train])

    # resume the 2-rank run with one process: the data order is a global position, so it continues exactly
    resumed = train(config, ddp, resume=True)
    straight = train(config, tmp_path / "straight")
    assert_close(tensors(resumed), tensors(straight))


def test_one_process_run_resumed_on_two_ranks(tmp_path):
    config = apply_overrides(get_preset("quickstart"), TINY)
    paused = train(config, tmp_path / "run", stop_after=3)  # one process, 3 steps
    argv = cli_args(paused, "train.dist_timeout_s=60") + ["--resume", "--stop-after", "5"]
    procs, errors = start_ranks(tmp_path, argv, env={"PIXELMODELS_TEST_RANK_DIRS": "1"})
    single_5 = train(config, tmp_path / "single5", stop_after=5)
    for p in procs:
        p.join(120)
    stop(procs)
    assert [p.exitcode for p in procs] == [0, 0], [e.read_text() for e in errors if e.exists()]
    assert json.loads((paused / "checkpoints" / "last.json").read_text())["step"] == 5
    assert_close(tensors(paused), tensors(single_5))
    assert_close(tensors(tmp_path / "run-rank1"), tensors(single_5))


def test_hung_rank_times_out_with_a_clear_error(tmp_path):
    argv = cli_args(tmp_path / "run", "train.dist_timeout_s=5")
    procs, errors = start_ranks(tmp_path, argv, env={"PIXELMODELS_TEST_FAULT": "hang:1:2"})
    start = time.monotonic()
    procs[0].join(90)
    elapsed = time.monotonic() - start
    alive = procs[0].is_alive()
    stop(procs)  # rank 1 sleeps on; torchrun would stop it the same way
    assert not alive and procs[0].exitcode == 1, "rank 0 did not end"
    assert elapsed < 60
    message = errors[0].read_text()
    assert "rank 0 of 2 stopped at step 3" in message and "train.dist_timeout_s=5" in message, message
    lines = [(m["step"], m["split"]) for m in metrics(tmp_path / "run")]
    assert lines == [(1, "train"), (2, "train")]  # written once each: only rank 0 writes


@pytest.mark.slow  # ~30 s here: torchrun's agent and two workers each import torch afresh (8 s at load 20)
def test_torchrun_crashing_rank_ends_the_run(tmp_path):
    """The real launcher: ``python -m torch.distributed.run --nproc_per_node=2 ...``; rank 1 raises at step 2."""
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={free_port()}", str(TESTS / "ddp_worker.py"), *cli_args(out, "train.dist_timeout_s=30"),
    ]  # fmt: skip
    env = {**os.environ, "PIXELMODELS_TEST_FAULT": "raise:1:2", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent / "src"), env.get("PYTHONPATH", "")])
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert "injected failure on rank 1 at step 2" in proc.stderr
    assert elapsed < 150  # three Python processes importing torch on a busy 2-core machine, then the error
    assert [(m["step"], m["split"]) for m in metrics(out)] == [(1, "train"), (2, "train")]


def test_unused_parameters_are_found_before_wrapping():
    """DDP needs ``find_unused_parameters`` for a model with a parameter its forward does not use."""
    from pixelmodels import build
    from pixelmodels.training.trainer import LogProbObjective, unused_parameters

    model = build("pixelcnn", image_shape=(1, 4, 4), num_levels=3, hidden_channels=4, num_layers=1)
    objective = LogProbObjective(model)
    x = torch.randint(0, 3, (2, 1, 4, 4))
    assert unused_parameters(objective, x, None) == []
    model.spare = torch.nn.Linear(2, 2)
    assert unused_parameters(objective, x, None) == ["model.spare.weight", "model.spare.bias"]
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind
