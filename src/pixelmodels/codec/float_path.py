"""The float path: a float model's conditionals, evaluated on exactly the canvases the decoder will see.

The walk follows the model's own generation order (``model.order()``); at every step it asks the network for that
pixel's parameters, the head for the K log-probabilities of each channel coded there
(``head.channel_log_probs``), turns them into an integer frequency table (``quantize``) and codes the true value
with ``constriction``'s range coder. The decoder repeats the same walk, decoding each value into its canvas.

Keeping float non-determinism out (as far as floats allow):
- the encoder does not take the parameters from one forward pass over the true images (mathematically equal,
  but not bit-equal); it calls the network on exactly the canvases the decoder will see (zeros, filled in step
  by step), with the same batch of tiles (the batch size is stored in the header), in eval mode (no dropout),
  under ``torch.no_grad`` with cuDNN autotuning off and deterministic kernels on, and on CPU with one intra-op
  thread (so the thread count of the machine does not change the sums);
- the log-probabilities are quantized in float64 numpy to integer frequencies summing to ``2**PRECISION`` with a
  floor of 1 (no value is ever impossible), and the coder only sees those integer tables.
Files of this kind decode only where the network computes the same floats (same CPU kernels and torch build);
a mismatch fails the batch's checksum (an error, never a wrong image). The integer path has no such limit.

How the network runs per step (stored in the header): method 0 (whole) recomputes the whole network on the
whole canvas; method 1 (window), for a model whose parameters at ``(h, w)`` provably read only rows ``h-r .. h``
and columns ``w-r .. w+r`` (``model.receptive_radius = r``), runs it on that window only; method 2 (fast) drives
the model's cached ``fast_sample`` with ``model.head`` swapped for a coding head whose ``sample`` codes the value
of each step instead of drawing it (checked: every step of ``model.order()`` must pass through
``model.head.sample`` and the sampler must return exactly the coded values; a sampler that does not is not used).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import constriction
import numpy as np
import torch
from tqdm.auto import tqdm

from pixelmodels.codec.format import FAST, WHOLE, WINDOW, CodecError
from pixelmodels.codec.tiles import CODED, fill
from pixelmodels.ordering import Step

log = logging.getLogger(__name__)

PRECISION = 24  # bits of the integer frequency tables (constriction's range coder models use 24 bits)


class _FastPathUnusable(CodecError):
    """The model's fast sampler did not route every step through ``model.head.sample`` in ``model.order()``."""


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the model's config and every tensor of its state_dict (names, dtypes, shapes, bytes); the first
    128 bits, as hex."""
    digest = hashlib.sha256()
    config = getattr(model, "config", {"class": type(model).__qualname__})
    digest.update(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def quantize(log_probs: torch.Tensor, precision: int = PRECISION) -> np.ndarray:
    """Log-probabilities (B, K) -> integer frequencies (B, K), each >= 1, every row summing to 2**precision.

    Computed in float64 numpy from the float32 log-probabilities, so identical inputs give identical tables.
    """
    logp = log_probs.detach().cpu().double().numpy()  # (B, K)
    if np.isnan(logp).any() or np.isposinf(logp).any():
        raise CodecError("the model produced non-finite probabilities; cannot code with it")
    total, k = 1 << precision, logp.shape[1]
    if k > total // 2:
        raise ValueError(f"{k} levels do not fit {precision}-bit frequency tables")
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    freqs = np.floor(p * (total - k)).astype(np.int64) + 1  # the floor of 1: no value is impossible
    rows = np.arange(len(p))
    freqs[rows, p.argmax(axis=1)] += total - freqs.sum(axis=1)  # rounding leftovers go to the likeliest value
    return freqs


def encode_batch(model, tiles: np.ndarray, roles: np.ndarray, labels, method: int, radius: int, progress: bool):
    """Code one batch of tiles (b, C, h, w) with a float model: returns the payload bytes. Raises
    ``_FastPathUnusable`` if the fast sampler did not route every step through the coding head."""
    device = _device(model)
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    chunk = tiles.astype(np.int32)
    cond = None if labels is None else torch.as_tensor(labels, dtype=torch.long, device=device)

    def encode(freqs: np.ndarray, c: int, step: Step) -> np.ndarray:
        values = np.ascontiguousarray(encode.view["chunk"][:, c, step.h, step.w])  # (b,)
        coded = encode.view["roles"][:, c, step.h, step.w] == CODED
        if coded.any():
            encoder.encode(values[coded], family, freqs[coded].astype(np.float64))
        return values

    encode.view = {"chunk": chunk, "roles": roles}  # a staged model swaps in each stage's view (_walk_stages)
    with _deterministic(model):
        out = _walk(model, len(chunk), cond, device, encode, method, radius, progress)
    if not np.array_equal(out.cpu().numpy(), chunk):
        raise _FastPathUnusable("its images differ from the values the codec chose")
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_batch(model, payload: bytes, roles: np.ndarray, labels, method: int, radius: int, progress: bool):
    """Decode one batch of tiles coded by ``encode_batch``: (b, C, h, w) int64 numpy."""
    device = _device(model)
    family = constriction.stream.model.Categorical(perfect=False)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    canvas = np.zeros(roles.shape, dtype=np.int64)
    cond = None if labels is None else torch.as_tensor(labels, dtype=torch.long, device=device)

    def decode(freqs: np.ndarray, c: int, step: Step) -> np.ndarray:
        canvas, roles = decode.view["canvas"], decode.view["roles"]
        values = fill(canvas, roles, step.h, step.w, c)
        coded = roles[:, c, step.h, step.w] == CODED
        if coded.any():
            try:
                values[coded] = decoder.decode(family, freqs[coded].astype(np.float64))
            except Exception as err:  # constriction raises on a stream that cannot be decoded
                raise CodecError(f"the payload could not be decoded ({err})") from err
        canvas[:, c, step.h, step.w] = values
        return values

    decode.view = {"canvas": canvas, "roles": roles}  # a staged model swaps in each stage's view (_walk_stages)
    with _deterministic(model):
        out = _walk(model, len(roles), cond, device, decode, method, radius, progress)
    return out.cpu().numpy() if hasattr(model, "coding_stages") else canvas


# ----- the walk shared by encoder and decoder -----------------------------------------------------------------
def _walk(
    model,
    n: int,
    cond: torch.Tensor | None,
    device: torch.device,
    code: Callable[[np.ndarray, int, Step], np.ndarray],
    method: int,
    radius: int,
    progress: bool,
) -> torch.Tensor:
    """Fill a zero canvas (n, C, H, W) step by step; ``code(freqs (n, K), channel, step)`` returns the values
    (encoder: the true ones, after coding them; decoder: the decoded ones). Both sides run exactly this."""
    if hasattr(model, "coding_stages"):
        return _walk_stages(model, n, cond, device, code, progress)
    if method == FAST:
        return _walk_fast(model, n, cond, device, code, progress)
    canvas = torch.zeros(n, *model.image_shape, dtype=torch.long, device=device)  # (n, C, H, W)
    steps = _conditionals(model, canvas, cond, method, radius)
    for step, params in tqdm(steps, total=len(model.order()), disable=not progress, desc="coding", leave=False):
        for c in step.channels:
            log_probs = model.head.channel_log_probs(params, canvas[:, :, step.h, step.w], c)  # (n, K)
            values = code(quantize(log_probs), c, step)  # (n,)
            canvas[:, c, step.h, step.w] = torch.from_numpy(values.astype(np.int64)).to(device)
    return canvas


def _conditionals(
    model, canvas: torch.Tensor, cond: torch.Tensor | None, method: int = WHOLE, radius: int = 0
) -> Iterator[tuple[Step, torch.Tensor]]:
    """Yield ``(step, params (n, P))`` in the model's order. Before asking for the next step the caller writes
    this step's values into ``canvas``. WHOLE reruns the network on the whole canvas each step; WINDOW on rows
    h-r .. h and columns w-r .. w+r only (clipped to the image, whose borders then pad exactly as in a full pass)."""
    width = canvas.shape[3]
    for step in model.order():
        h, w = step.h, step.w
        if method == WINDOW:
            top, left = max(0, h - radius), max(0, w - radius)
            window = canvas[:, :, top : h + 1, left : min(width, w + radius + 1)]  # (n, C, <=r+1, <=2r+1)
            params = model.network(model.scale_input(window), cond)[:, :, h - top, w - left]  # (n, P)
        else:
            params = model.network(model.scale_input(canvas), cond)[:, :, h, w]  # (n, P)
        yield step, params.float()


class _CodingHead(torch.nn.Module):
    """Stands in for ``model.head`` while the model's fast sampler runs: instead of drawing a value it codes
    one (encoder: the true value; decoder: the decoded one), with the real head's probabilities."""

    def __init__(self, head, order: list[Step], code: Callable[[np.ndarray, int, Step], np.ndarray]):
        super().__init__()
        self.inner, self.steps, self.code, self.calls = head, order, code, 0
        self.num_params, self.joint_channels = head.num_params, head.joint_channels
        self.num_channels, self.num_levels = head.num_channels, head.num_levels

    def sample(self, params, x, channels, keep=None, temperature=1.0, generator=None):
        if self.calls >= len(self.steps) or tuple(channels) != tuple(self.steps[self.calls].channels):
            raise _FastPathUnusable(f"call {self.calls} does not match step {self.calls} of model.order()")
        step, out = self.steps[self.calls], x.clone()  # (n, C)
        for c in channels:
            log_probs = self.inner.channel_log_probs(params.float(), out, c)  # (n, K)
            out[:, c] = torch.from_numpy(self.code(quantize(log_probs), c, step).astype(np.int64)).to(out.device)
        self.calls += 1
        return out

    def param_indices(self, channel: int) -> list[int]:
        return self.inner.param_indices(channel)

    def channel_log_probs(self, params, x, channel):
        return self.inner.channel_log_probs(params, x, channel)


def _walk_fast(model, n, cond, device, code, progress, run=None) -> torch.Tensor:
    """The walk through the model's cached ``fast_sample`` (or ``run(generator)``), with ``model.head`` swapped
    for a coding head."""
    real_head = model.head
    coding = _CodingHead(real_head, model.order(), code)
    model.head = coding
    try:
        generator = torch.Generator(device=device).manual_seed(0)  # unused when every draw is coded
        if run is None:
            images = model.fast_sample(n, cond, None, None, generator=generator, progress=progress)
        else:
            images = run(generator)
    finally:
        model.head = real_head
    if coding.calls != len(coding.steps):
        raise _FastPathUnusable(f"it drew {coding.calls} of {len(coding.steps)} steps through model.head")
    return images


def _walk_stages(model, n, cond, device, code, progress) -> torch.Tensor:
    """A staged model (``models/stages.py``): its first view is coded by the first-stage model's own walk (fast
    sampler if it has one, else the whole network), then the rest by the conditional stage's cached sampler, each
    with its own head. ``code.view`` holds the arrays the coder reads (true values, roles, decoded canvas); each
    stage gets its view of them."""
    first_model, rest_model, views, rest_canvas, merge = model.coding_stages()
    saved = dict(code.view)
    size = getattr(model, "split", None) == "size"
    s = model.factor if size else 1

    def stage_view(k: int) -> dict:
        out = {"roles": saved["roles"][:, :, ::s, ::s] if (size and k == 0) else saved["roles"]}
        if "chunk" in saved:
            out["chunk"] = views(torch.from_numpy(saved["chunk"]).long())[k].numpy().astype(np.int32)
        if "canvas" in saved:
            out["canvas"] = np.zeros(out["roles"].shape, dtype=np.int64)
        return out

    try:
        code.view = stage_view(0)
        first = _walk(first_model, n, None, device, code, FAST if first_model.supports_fast_sampling else WHOLE, 0,
                      progress)  # fmt: skip
        code.view = stage_view(1)
        canvas = rest_canvas(first, None, n)
        if "canvas" in code.view and size:
            code.view["canvas"][:, :, ::s, ::s] = first.cpu().numpy()
        given = views(merge(first, canvas))[2]

        def run(generator):
            return rest_model.sample_given(canvas, given, generator=generator, progress=progress)

        rest = _walk_fast(rest_model, n, None, device, code, progress, run)
    finally:
        code.view = saved
    return merge(first, rest)


@contextmanager
def _deterministic(model):
    """Eval mode (no dropout), no autograd, no cuDNN autotuning, deterministic cuDNN kernels, and on CPU one
    intra-op thread (a kernel's float result may depend on how its work is split among threads, and the
    per-step calls are small); everything is restored after."""
    was_training = model.training
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    threads = torch.get_num_threads()
    model.eval()
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    if _device(model).type == "cpu":
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved
        model.train(was_training)


def _device(model) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
