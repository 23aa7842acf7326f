"""Checks made before any work starts: the device exists, and the model's training state fits in memory."""

from __future__ import annotations

import os

import torch

from pixelmodels.registry import build

#: Bytes of training state per float32 parameter: the weight, its gradient, Adam's two moments and the EMA copy.
TRAINING_BYTES_PER_PARAMETER = 5 * 4


def check_device(name: str) -> torch.device:
    """``name`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps', ...) -> a device that exists here; else a ValueError that
    says why ('tpu' is not a torch device; 'cuda' on a CPU-only build or a machine without a GPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build_kind = "has no CUDA support" if torch.version.cuda is None else "finds no CUDA GPU"
            raise ValueError(f"device {name!r}: this torch {torch.__version__} {build_kind}; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r}: MPS is not available here; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r}: pixelmodels runs on cpu, cuda or mps")
    return device


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (CUDA: free GPU memory; CPU: MemAvailable of /proc/meminfo); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def count_parameters(name: str, image_shape: tuple[int, int, int], num_levels: int, hparams: dict) -> int:
    """The parameter count of a model, built on the ``meta`` device (no memory is allocated)."""
    with torch.device("meta"):
        model = build(name, image_shape=image_shape, num_levels=num_levels, **hparams)
    return sum(p.numel() for p in model.parameters())


def check_model_fits(
    name: str, image_shape: tuple[int, int, int], num_levels: int, hparams: dict, device: torch.device
) -> None:
    """Refuse a model whose weights, gradients, Adam state and EMA alone exceed the free memory of ``device``
    (activations come on top, so passing this is necessary, not sufficient)."""
    try:
        params = count_parameters(name, image_shape, num_levels, hparams)
    except (ValueError, TypeError):
        raise
    except Exception:  # a model that cannot be built on the meta device: no estimate
        return
    need, free = params * TRAINING_BYTES_PER_PARAMETER, available_memory(device)
    if free is not None and need > free:
        settings = ", ".join(f"model.{k}={v}" for k, v in sorted(hparams.items())) or "the defaults"
        raise ValueError(
            f"model {name!r} with {settings} has {params:,} parameters: training needs at least "
            f"{need / 2**30:.1f} GiB (weights, gradients, Adam state, EMA), {device} has {free / 2**30:.1f} GiB free"
        )
