"""The training loop: ``train(config, out_dir) -> run directory``.

Usage (shell)::

    pixelmodels train --preset quickstart --out runs/quickstart             # ~2 min on 2 CPU cores
    pixelmodels train --model pixelcnn --dataset binarized_mnist --set optim.lr=3e-4 --out runs/bmnist
    pixelmodels train --out runs/quickstart --resume --set train.steps=3000  # continue, exactly
    pixelmodels train --preset pixelcnn-cifar10 --set train.precision=bf16 --set train.compile=true --out runs/c10

Usage (Python)::

    import pixelmodels
    from pixelmodels.training import get_preset, apply_overrides
    run_dir = pixelmodels.train(apply_overrides(get_preset("quickstart"), ["train.steps=500"]), "runs/q")
    model = pixelmodels.load_checkpoint(run_dir)                            # best EMA weights

The run directory holds ``pixelmodels-run.json`` (the marker ``--overwrite`` looks for), ``config.json`` (the
resolved config), ``checkpoints/{last,best}.*`` (safetensors + JSON, EMA weights included), ``metrics.jsonl``,
``samples/`` grids during training, ``samples.png`` and ``results.json`` (test NLL of the best checkpoint) at
the end, and TensorBoard events when it is installed.

Distributed (``torchrun --nproc_per_node=N -m pixelmodels train ...``, docs/scaling.md): the model is
wrapped in DistributedDataParallel in one place (``wrap_model``), each rank takes its share of every global
batch from ``DataOrder``, validation NLL is summed over ranks (``distributed_nll``), and every file write goes
through ``RunWriter``, which writes only on rank 0 (``is_main_process``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import queue
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from pixelmodels.evaluate import NLLResult, dataset_nll
from pixelmodels.registry import build
from pixelmodels.training import checkpoint as ckpt
from pixelmodels.training.config import OptimConfig, RunConfig
from pixelmodels.training.distributed import (
    DistContext,
    distributed_nll,
    init_distributed,
    is_main_process,
    local_batch_size,
    mean_over_ranks,
    shard_of_batch,
    shutdown_distributed,
)
from pixelmodels.training.resources import check_device, check_model_fits
from pixelmodels.training.rundir import (
    ReplacedRun,
    StopRequest,
    check_resume,
    check_run_dir,
    store_absolute_data_dir,
    write_marker,
)
from pixelmodels.viz import save_grid

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss, the gradients or the weights became NaN or infinite; the run stopped and its last good checkpoint
    is untouched (non-finite weights are never saved)."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training: the loop stopped after a whole step and saved the 'last' checkpoint."""

    def __init__(self, run_dir: Path, step: int, steps: int):
        self.run_dir, self.step, self.steps = run_dir, step, steps
        super().__init__(
            f"interrupted at step {step} of {steps}; checkpoint saved, continue with: "
            f"pixelmodels train --out {run_dir} --resume"
        )


# ----- the pieces that make it distributed ----------------------------------------------------------------
class DataOrder:
    """Seeded permutation per epoch, cut into full global batches; ``(epoch, position)`` restores the place.

    With ``world_size`` > 1, ``next_indices`` returns this rank's ``batch_size / world_size`` indices of the
    global batch (``shard_of_batch``). Every rank draws the same permutation (seeded by seed and epoch, as
    DistributedSampler's ``set_epoch``), and the state is the *global* position, so a run can be resumed with
    a different number of processes.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if num_items < batch_size:
            raise ValueError(f"data.batch_size ({batch_size}) is larger than the training set ({num_items} images)")
        local_batch_size(batch_size, world_size)  # checks divisibility
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_items, generator=g)

    def next_indices(self) -> torch.Tensor:
        if self.position + self.batch_size > self.num_items:  # drop the incomplete last batch of an epoch
            self.epoch, self.position = self.epoch + 1, 0
            self._perm = self._permutation()
        idx = self._perm[self.position : self.position + self.batch_size]  # the global batch
        self.position += self.batch_size
        return shard_of_batch(idx, self.rank, self.world_size)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "num_items": self.num_items}

    def load_state_dict(self, state: dict) -> None:
        if state["num_items"] != self.num_items:
            raise ValueError(f"the training set has {self.num_items} images, the checkpoint saw {state['num_items']}")
        self.epoch, self.position = state["epoch"], state["position"]
        self._perm = self._permutation()


class LogProbObjective(nn.Module):
    """``forward(x, cond) -> log p(x)`` in float32 nats: the module that gets compiled and DDP-wrapped.

    With ``amp_dtype`` the network runs under autocast; the head's log-likelihood is always computed in
    float32 outside autocast (a model that overrides ``log_prob`` gets its result cast to float32).
    """

    def __init__(self, model: nn.Module, amp_dtype: torch.dtype | None = None):
        super().__init__()
        self.model, self.amp_dtype = model, amp_dtype

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        # Models that train on part of the image (SPN: random target slices, so memory follows the slice) offer
        # an unbiased ``estimate_log_prob``; evaluation always uses the exact ``log_prob``.
        estimate = getattr(self.model, "estimate_log_prob", None) if self.training else None
        log_prob = estimate or self.model.log_prob
        if self.amp_dtype is None:
            return log_prob(x, cond).float()  # (B,)
        device_type = x.device.type
        from pixelmodels.models.base import AutoregressiveModel

        with torch.autocast(device_type, dtype=self.amp_dtype):
            if estimate is not None or type(self.model).log_prob is not AutoregressiveModel.log_prob:
                return log_prob(x, cond).float()  # (B,)
            params = self.model(x, cond)  # (B, P, H, W) in amp_dtype where autocast chose it
        with torch.autocast(device_type, enabled=False):
            return self.model.head.log_prob(params.float(), x).sum(dim=(1, 2, 3))  # (B,) float32


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` on ``device``: bf16 on GPU or CPU, fp16 on GPU only."""
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        logger.warning("train.precision=fp16 needs a GPU; training in fp32 on %s (bf16 works on CPU)", device)
        return None
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision=bf16: this GPU does not support bfloat16; use fp16")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def unused_parameters(objective: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> list[str]:
    """Names of trainable parameters that get no gradient from one forward/backward on ``x`` (e.g. a layer a
    model builds but does not use with these hyper-parameters). Leaves gradients and the RNG as they were."""
    params = [(n, p) for n, p in objective.named_parameters() if p.requires_grad]
    saved = [p.grad for _, p in params]
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        for _, p in params:
            p.grad = None
        objective(x, cond).sum().backward()
        unused = [n for n, p in params if p.grad is None]
    for (_, p), g in zip(params, saved, strict=True):
        p.grad = g
    return unused


def wrap_model(
    model: nn.Module, config: RunConfig, ctx: DistContext | None = None, example: tuple | None = None
) -> nn.Module:
    """The one place the model is wrapped for training: the float32 log-likelihood objective, under
    autocast when ``train.precision`` asks, compiled when ``train.compile``, in DistributedDataParallel
    when the run has several processes.

    ``train.compile`` compiles the model's ``network`` only: the contract's input checks (which read tensor
    values) stay eager instead of breaking the graph, and parameter names keep no ``_orig_mod.`` prefix.
    """
    device = next(model.parameters()).device
    if config.train.compile:
        model.network = torch.compile(model.network)
    objective = LogProbObjective(model, amp_dtype(config.train.precision, device))
    if ctx is not None and ctx.enabled:
        unused = unused_parameters(objective, *example) if example is not None else []
        if unused:  # DDP then has to look for them after every backward (a graph traversal per step)
            logger.info("parameters without gradient, DDP find_unused_parameters=True: %s", ", ".join(unused))
        objective = DistributedDataParallel(
            objective, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=bool(unused)
        )
    return objective


class BatchLoader:
    """Gathers batches (uint8, on the CPU) from ``DataOrder`` ahead of the training loop in a thread.

    ``prefetch`` batches are prepared in advance (0: gathered in the loop itself). On CUDA the batch is put
    in pinned memory and copied with ``non_blocking=True``. ``state_dict`` is the data order *of the batches
    handed out*, not of the ones prefetched, so checkpoints resume exactly.
    """

    def __init__(self, order: DataOrder, images, labels, device: torch.device, prefetch: int):
        self.order, self.images, self.labels, self.device = order, images, labels, device
        self.pin = device.type == "cuda"
        self._state = order.state_dict()
        self._queue: queue.Queue | None = None
        if prefetch > 0:
            self._queue, self._stop = queue.Queue(maxsize=prefetch), threading.Event()
            self._thread = threading.Thread(target=self._work, daemon=True, name="pixelmodels-prefetch")
            self._thread.start()

    def _gather(self) -> tuple:
        idx = self.order.next_indices()
        x = self.images[idx]  # (b, C, H, W) uint8
        y = None if self.labels is None else self.labels[idx]
        if self.pin:
            x, y = x.pin_memory(), None if y is None else y.pin_memory()
        return x, y, self.order.state_dict()

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._gather()
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # handed to the loop, raised there
            self._queue.put(err)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        item = self._gather() if self._queue is None else self._queue.get()
        if isinstance(item, BaseException):
            raise item
        x, y, self._state = item
        x = x.to(self.device, non_blocking=self.pin).long()  # (b, C, H, W)
        return x, None if y is None else y.to(self.device, non_blocking=self.pin)

    def state_dict(self) -> dict:
        return dict(self._state)

    def close(self) -> None:
        if self._queue is not None:
            self._stop.set()
            self._thread.join()


class RunWriter:
    """Every file the trainer writes goes through here; does nothing on processes other than the main one."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.run_dir, self.enabled = run_dir, enabled
        self.tensorboard = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                pass

    def config(self, config: RunConfig) -> None:
        if self.enabled:
            write_marker(self.run_dir)
            ckpt.atomic_write_text(self.run_dir / "config.json", config.to_json() + "\n")

    def metrics(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(f"{record.get('split', 'train')}/{key}", value, record["step"])

    def truncate_metrics(self, step: int) -> None:
        """On resume, drop metric lines written after the checkpoint and the test line (they will be written
        again; the test split is scored once, at the end)."""
        path = self.run_dir / "metrics.jsonl"
        if self.enabled and path.exists():
            records = [(line, json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
            lines = [line for line, r in records if r.get("step", 0) <= step and r.get("split") != "test"]
            ckpt.atomic_write_text(path, "".join(line + "\n" for line in lines))

    def checkpoint(self, which: ckpt.Which, **kwargs) -> None:
        if self.enabled:
            ckpt.save_checkpoint(self.run_dir / "checkpoints", which, **kwargs)

    def grid(self, images: torch.Tensor, name: str, num_levels: int) -> None:
        if self.enabled:
            save_grid(images, self.run_dir / name, num_levels)

    def results(self, results: dict) -> None:
        if self.enabled:
            ckpt.atomic_write_text(self.run_dir / "results.json", json.dumps(results, indent=2) + "\n")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


# ----- small helpers --------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``train.device`` -> a torch device that exists here (``auto``: cuda when available, else cpu)."""
    return check_device(name)


def learning_rate(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant / cosine / linear decay to ``min_lr_ratio * lr``."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    progress = min(1.0, (step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps))
    decay = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * progress)), "linear": 1.0 - progress}
    return optim.lr * (optim.min_lr_ratio + (1 - optim.min_lr_ratio) * decay[optim.schedule])


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=optim.lr, betas=(optim.beta1, optim.beta2), weight_decay=optim.weight_decay)


@torch.no_grad()
def update_ema(ema_model: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Polyak average; the decay ramps up as (1 + t) / (10 + t) so early steps do not dominate short runs."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema_model.parameters()), list(model.parameters()), 1.0 - d)
    for e, b in zip(ema_model.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def _sample_cond(model: nn.Module, n: int, device: torch.device) -> torch.Tensor | None:
    return None if model.num_classes is None else torch.arange(n, device=device) % model.num_classes


# ----- the loop -------------------------------------------------------------------------------------------
def train(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Train ``config`` into ``out_dir`` (default ``runs/<preset or model-dataset>``); returns the run directory.

    Args:
        config: the full run config (``get_preset``, ``apply_overrides``).
        out_dir: the run directory; an existing run there needs ``resume`` or ``overwrite``.
        resume: continue from ``checkpoints/last`` exactly (model, optimizer, EMA, step, RNG, data order).
        overwrite: replace the run already in ``out_dir`` (only a pixelmodels run, ``rundir.is_run_dir``); it is
            moved aside and deleted once the new run has written its first checkpoint, restored if it fails first.
        stop_after: stop (with a checkpoint) once this global step is reached; continue later with resume.
        progress: tqdm bar; default: when stderr is a terminal.

    Raises:
        NonFiniteLossError: the loss, gradient norm or weights became NaN/inf; the message names the step.
        TrainingInterrupted: Ctrl-C (SIGINT); the 'last' checkpoint was saved first.
        ValueError, FileExistsError, FileNotFoundError: bad config, data set or run directory.
    """
    threads = torch.get_num_threads()
    replaced = ReplacedRun()
    own_group = not (dist.is_available() and dist.is_initialized())
    try:
        if config.train.num_threads is not None:
            torch.set_num_threads(config.train.num_threads)
        return _train(config, out_dir, resume, overwrite, stop_after, progress, replaced)
    except BaseException:
        replaced.restore()  # a replaced run comes back when the new one failed before its first checkpoint
        raise
    finally:
        torch.set_num_threads(threads)  # leave the caller's process as it was
        if own_group:
            shutdown_distributed()


def _train(config, out_dir, resume, overwrite, stop_after, progress, replaced: ReplacedRun) -> Path:
    from pixelmodels.data import load_dataset

    config.validate()
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"--stop-after must be a step >= 1, got {stop_after}")
    store_absolute_data_dir(config)
    ctx = init_distributed(resolve_device(config.train.device), config.train.dist_timeout_s)
    local_batch_size(config.data.batch_size, ctx.world_size)  # a clear error before any work
    run_dir = Path(out_dir or Path("runs") / (config.preset or f"{config.model.name}-{config.data.dataset}"))
    replace_old_run = check_run_dir(run_dir, resume, overwrite)
    resume_meta, resume_tensors = ckpt.read_checkpoint(run_dir, "last") if resume else (None, None)
    if resume_meta is not None:
        check_resume(run_dir, resume_meta, config)
        if resume_meta["step"] >= config.train.steps and (run_dir / "results.json").is_file():
            logger.info("%s has trained its %d steps and been scored; nothing to do", run_dir, resume_meta["step"])
            return run_dir
    progress = (sys.stderr.isatty() if progress is None else progress) and ctx.is_main
    cfg_t, cfg_d = config.train, config.data
    device = ctx.device
    seed = cfg_t.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    data_kwargs = dict(data_dir=cfg_d.data_dir, num_levels=cfg_d.num_levels, **cfg_d.options)
    train_set = load_dataset(cfg_d.dataset, "train", **data_kwargs)
    valid_set = load_dataset(cfg_d.dataset, cfg_d.valid_split, **data_kwargs)
    n_train = len(train_set.images) if cfg_d.max_train_images is None else min(cfg_d.max_train_images, len(train_set))
    train_images = train_set.images[:n_train]  # (N, C, H, W) uint8, stays on the CPU (may be memory-mapped)
    train_labels = None if train_set.labels is None else train_set.labels[:n_train]
    n_valid = len(valid_set.images) if cfg_d.max_eval_images is None else min(cfg_d.max_eval_images, len(valid_set))

    shape, levels = train_set.image_shape, train_set.num_levels
    check_model_fits(config.model.name, shape, levels, config.model.hparams, device)  # before allocating anything
    model = build(config.model.name, image_shape=shape, num_levels=levels, **config.model.hparams).to(device)
    if model.num_classes is not None and train_labels is None:
        raise ValueError(f"model {config.model.name!r} is class-conditional but {cfg_d.dataset!r} has no labels")
    ema_model = copy.deepcopy(model).requires_grad_(False) if config.optim.ema_decay > 0 else None
    eval_model = ema_model if ema_model is not None else model
    optimizer = build_optimizer(model, config.optim)
    order = DataOrder(n_train, cfg_d.batch_size, seed, ctx.rank, ctx.world_size)
    amp = amp_dtype(cfg_t.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    if ctx.enabled:
        dist.barrier()  # every rank has checked the run directory before rank 0 changes it
    if replace_old_run and is_main_process():  # only now that the new run's config, data and model are good
        replaced.move_aside(run_dir)  # kept until the new run has written its first checkpoint
    writer = RunWriter(run_dir, is_main_process())

    step, best_bpd, best_step, elapsed = 0, math.inf, None, 0.0
    if resume_meta is not None:
        ckpt.load_state(model, resume_tensors, "model", str(run_dir))
        if ema_model is not None:
            ckpt.load_state(ema_model, resume_tensors, "ema", str(run_dir))
        ckpt.optimizer_from_flat(optimizer, resume_meta["optimizer"], resume_tensors)
        state = resume_meta["state"]
        order.load_state_dict(state["data_order"])
        step, best_step, elapsed = resume_meta["step"], state["best_step"], state["elapsed_s"]
        best_bpd = state["best_valid_bits_per_dim"] if state.get("best_valid_bits_per_dim") is not None else math.inf
        ckpt.set_rng_state(resume_meta["rng"], resume_tensors)
        writer.truncate_metrics(step)
        if writer.enabled and (run_dir / "results.json").is_file():
            (run_dir / "results.json").unlink()  # it scored the shorter run; finish() writes the new one
        logger.info("resuming %s at step %d", run_dir, step)
    example = (train_images[:1].to(device).long(), None if model.num_classes is None else train_labels[:1].to(device))
    objective = wrap_model(model, config, ctx, example)  # after loading: DDP broadcasts rank 0's weights
    writer.config(config)

    def training_state() -> dict:
        return {
            "data_order": loader.state_dict(),
            "best_valid_bits_per_dim": None if best_step is None else best_bpd,
            "best_step": best_step,
            "elapsed_s": elapsed + time.perf_counter() - t0,
        }

    def save(which: ckpt.Which) -> None:
        try:
            writer.checkpoint(
                which, step=step, model=model, ema_model=ema_model, run_config=config.to_dict(),
                optimizer=optimizer if which == "last" else None, state=training_state(),
            )  # fmt: skip
        except ckpt.NonFiniteTensorsError as err:
            raise NonFiniteLossError(f"{err} at step {step}") from None
        replaced.discard()  # the new run has a checkpoint: the replaced one can go

    t0, t_log, images_seen = time.perf_counter(), time.perf_counter(), 0
    num_dims = model.num_dims
    bar = tqdm(total=cfg_t.steps, initial=step, disable=not progress, desc="training", dynamic_ncols=True)
    model.train()
    labels = None if model.num_classes is None else train_labels
    loader = BatchLoader(order, train_images, labels, device, cfg_d.prefetch if step < cfg_t.steps else 0)
    stop = StopRequest(enabled=not ctx.enabled)
    try:
        stop.install()
        while step < cfg_t.steps and (stop_after is None or step < stop_after):
            x, cond = loader.next()  # (B / world_size, C, H, W) long, (B / world_size,) or None
            lr = learning_rate(step, config.optim, cfg_t.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            log_prob = objective(x, cond)  # (b,) float32 nats; DDP averages the gradients over ranks
            loss = -log_prob.mean() / num_dims  # nats per dimension, this rank's share
            global_loss = mean_over_ranks(loss)  # the same on every rank: all stop together on NaN
            if not torch.isfinite(global_loss):
                raise NonFiniteLossError(f"non-finite loss ({global_loss.item()}) at step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip or math.inf)
            if amp is not torch.float16 and not torch.isfinite(grad_norm):
                raise NonFiniteLossError(f"non-finite gradient norm ({grad_norm.item()}) at step {step + 1}")
            scaler.step(optimizer)
            scaler.update()
            if ema_model is not None:
                update_ema(ema_model, model, config.optim.ema_decay, step)
            step += 1
            images_seen += len(x) * ctx.world_size
            bits = global_loss.item() / math.log(2)
            bar.update(1)
            bar.set_postfix(bpd=f"{bits:.3f}", lr=f"{lr:.2e}")
            final = step == cfg_t.steps
            if step % cfg_t.log_every == 0 or final:
                now = time.perf_counter()
                writer.metrics({
                    "step": step, "split": "train", "bits_per_dim": bits, "lr": lr,
                    "grad_norm": grad_norm.item(), "images_per_s": images_seen / (now - t_log),
                    "elapsed_s": elapsed + now - t0,
                })  # fmt: skip
                t_log, images_seen = now, 0
            if step % cfg_t.eval_every == 0 or final:
                valid_x, valid_y = valid_set.images[:n_valid], _labels(valid_set, n_valid)
                result = distributed_nll(eval_model, valid_x, valid_y, cfg_d.eval_batch_size, ctx)
                writer.metrics({"step": step, "split": "valid", **result.to_dict()})
                if progress:
                    bar.write(f"step {step}: valid {result.bits_per_dim:.4f} bits/dim")
                if result.bits_per_dim < best_bpd:
                    best_bpd, best_step = result.bits_per_dim, step
                    save("best")
            if cfg_t.sample_every and (step % cfg_t.sample_every == 0 or final) and ctx.is_main:
                g = torch.Generator(device).manual_seed(seed)
                n = cfg_t.num_samples
                images = eval_model.sample(n, cond=_sample_cond(eval_model, n, device), generator=g)
                writer.grid(images, f"samples/step{step:07d}.png", model.num_levels)
            if step % cfg_t.checkpoint_every == 0 or final or step == stop_after or stop.requested:
                save("last")
            if stop.requested and not final:
                raise TrainingInterrupted(run_dir, step, cfg_t.steps)
    except NonFiniteLossError as err:
        writer.metrics({"step": step + 1, "split": "train", "event": "non_finite", "message": str(err)})
        last = run_dir / "checkpoints" / "last.json"
        if replaced.aside is not None:
            kept = f"no checkpoint was written; the run it replaced is back in {run_dir} as it was"
        else:
            kept = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
        writer.close()
        raise NonFiniteLossError(f"{err}; training stopped, {kept}") from None
    except RuntimeError as err:  # includes torch.distributed's errors: timeouts, a peer that went away
        if not ctx.enabled:
            raise
        raise RuntimeError(
            f"rank {ctx.rank} of {ctx.world_size} stopped at step {step + 1}: {err}\n(in a distributed run a "
            f"timeout or a closed connection means another rank crashed or hung; its own error is in its output; "
            f"collectives time out after train.dist_timeout_s={config.train.dist_timeout_s:g} s)"
        ) from err
    finally:
        stop.remove()
        bar.close()
        loader.close()
    if step < cfg_t.steps:
        logger.info("stopped at step %d of %d; continue with --resume", step, cfg_t.steps)
    elif ctx.is_main:  # the test split is scored by rank 0 alone, from the best checkpoint on its disk
        finish(run_dir, config, writer, device)
    writer.close()
    return run_dir


def _labels(dataset, n: int) -> torch.Tensor | None:
    return None if dataset.labels is None else dataset.labels[:n]


def finish(
    run_dir: Path, config: RunConfig, writer: RunWriter | None = None, device: torch.device | None = None
) -> dict:
    """Score the best checkpoint (EMA weights) on the test split, write ``results.json`` and ``samples.png``."""
    from pixelmodels.data import load_dataset

    writer = writer or RunWriter(run_dir, is_main_process())
    device = device or resolve_device(config.train.device)
    meta, tensors = ckpt.read_checkpoint(run_dir, "best")
    model = ckpt.model_from_checkpoint(meta, tensors, "ema", str(run_dir)).to(device)
    d = config.data
    test_set = load_dataset(d.dataset, d.test_split, data_dir=d.data_dir, num_levels=d.num_levels, **d.options)
    test_x, test_y = test_set.images, test_set.labels
    if d.max_test_images is not None and d.max_test_images < len(
        test_x
    ):  # evenly spaced: class-sorted splits stay mixed
        keep = torch.linspace(0, len(test_x) - 1, d.max_test_images).round().long()  # (n,)
        test_x, test_y = test_x[keep], None if test_y is None else test_y[keep]
    progress = sys.stderr.isatty() and is_main_process()
    test: NLLResult = dataset_nll(model, test_x, test_y, d.eval_batch_size, progress=progress)
    writer.metrics({"step": meta["step"], "split": "test", **test.to_dict()})
    g = torch.Generator(device).manual_seed(config.train.seed)
    n = config.train.num_samples
    writer.grid(model.sample(n, cond=_sample_cond(model, n, device), generator=g), "samples.png", model.num_levels)
    last_meta = json.loads((run_dir / "checkpoints" / "last.json").read_text())
    results = {
        "test": {**test.to_dict(), "split": d.test_split},
        "best_step": meta["step"],
        "best_valid_bits_per_dim": meta["state"]["best_valid_bits_per_dim"],
        "steps": last_meta["step"],
        "train_time_s": last_meta["state"]["elapsed_s"],
    }
    writer.results(results)
    if writer.enabled:  # the bits/dim curves (vs step and wall time) beside the results
        from pixelmodels.report import plot_run

        plot_run(run_dir)
    return results
