"""Lossless image compression with any model: its conditionals drive a range coder.

An exact-likelihood model is a compressor: an image costs about ``-log2 p(x)`` bits. The codec walks the
model's own generation order (``model.order()``); at every step it asks the network for that pixel's
parameters, the head for the K log-probabilities of each channel coded there
(``head.channel_log_probs``), turns them into an integer frequency table and codes the true value with
``constriction``'s range coder (``constriction.stream.queue``). The decoder repeats the same walk, decoding each
value and writing it into its canvas before the next step.

    >>> import pixelmodels, pixelmodels.codec as codec
    >>> data = codec.compress(model, images)          # images: (N, C, H, W) integers in [0, K)
    >>> restored = codec.decompress(model, data)       # equal to images, or a CodecError

Keeping float non-determinism out. Both sides must build bit-identical frequency tables, so:
- the encoder does not take the parameters from one forward pass over the true images (mathematically equal,
  but not bit-equal); it calls the network on exactly the canvases the decoder will see (zeros, filled in step
  by step), with the same batch grouping (the batch size is stored in the header), in eval mode (no dropout),
  under ``torch.no_grad`` with cuDNN autotuning off and deterministic kernels on, and on CPU with one intra-op
  thread (so the thread count of the machine does not change the sums);
- the log-probabilities are quantized in float64 numpy to integer frequencies summing to ``2**PRECISION`` with a
  floor of 1 (no value is ever impossible), and the coder only sees those integer tables;
- the header carries a fingerprint of the model (SHA-256 of its config and every weight), so a different model is
  refused before decoding, and a CRC-32 of the images, checked after decoding: if the decoding machine computes
  different floats than the encoding one (another device, CPU kind or torch version), the
  mismatch is reported as an error instead of returning a wrong image.

File format (version 1), little-endian::

    offset  size  field
    0       4     magic b"PXMZ"
    4       2     format version (1)
    6       2     flags (bit 0: class labels stored)
    8       16    model fingerprint (first 128 bits of SHA-256 of config JSON + state_dict tensors)
    24      12    C, H, W (uint32 each)
    36      4     num_levels K
    40      4     count N (images)
    44      4     batch size the images were coded with
    48      1     precision of the frequency tables in bits
    49      1     how the network was evaluated per step: 0 whole canvas, 1 window, 2 fast sampler (see below)
    50      2     window radius r (method 1)
    52      4     CRC-32 of the images (uint16 values, N C H W order)
    56      4     payload length in 32-bit words
    60      4     CRC-32 of the payload
    64      4N    class labels (uint32), only if flag bit 0
    ...     4     CRC-32 of every header byte above
    ...           payload: the range coder's 32-bit words; symbols in chunk order, then step order, then image

Speed: the naive walk (method 0) recomputes the whole network on the whole canvas for every step (``C*H*W``
forwards per batch, or ``H*W`` for heads that code a pixel's channels jointly). A model whose parameters at
``(h, w)`` provably read only inputs in rows ``h-r .. h`` and columns ``w-r .. w+r`` (a stack of zero-padded,
stride-1 masked convolutions: ``model.receptive_radius = r``) is evaluated on that window only (method 1): the same
numbers up to float rounding, (r+1)(2r+1) pixels instead of H*W. Encoder and decoder both use the method and
radius written in the header. A model with a cached ``fast_sample`` (method 2) is driven through it: the codec
swaps ``model.head`` for a coding head whose ``sample`` codes the value of each step instead of drawing it, so the
sampler's caches do the work (checked: every step of ``model.order()`` must pass through ``model.head.sample``
and the sampler must return exactly the coded values; a sampler that does not is not used).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import constriction
import numpy as np
import torch
from tqdm.auto import tqdm

from pixelmodels.ordering import Step

log = logging.getLogger(__name__)

MAGIC = b"PXMZ"
VERSION = 1
PRECISION = 24  # bits of the integer frequency tables (constriction's range coder models use 24 bits)
FLAG_LABELS = 1
WHOLE, WINDOW, FAST = 0, 1, 2  # how the network is evaluated at each step (header byte 49)
Method = Literal["auto", "fast", "window", "whole"]
_FIXED = struct.Struct("<4sHH16s3IIII BBH III")  # the fixed part of the header, 64 bytes
_CRC = struct.Struct("<I")


class CodecError(ValueError):
    """A compressed file cannot be decoded: wrong model, truncated, corrupted, or not a pixelmodels file."""


class _FastPathUnusable(CodecError):
    """The model's fast sampler did not route every step through ``model.head.sample`` in ``model.order()``."""


@dataclass(frozen=True)
class Header:
    version: int
    fingerprint: str  # hex, first 128 bits of SHA-256
    image_shape: tuple[int, int, int]
    num_levels: int
    count: int
    batch_size: int
    precision: int
    image_crc: int
    payload_words: int
    payload_crc: int
    labels: tuple[int, ...] | None
    size: int  # header length in bytes
    method: int = WHOLE
    radius: int = 0


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


def compress(
    model,
    images: torch.Tensor | np.ndarray,
    cond: torch.Tensor | np.ndarray | None = None,
    batch_size: int = 64,
    method: Method = "auto",
    progress: bool = False,
) -> bytes:
    """Losslessly compress integer images (N, C, H, W) (or one (C, H, W)) with ``model``; returns the file bytes.

    Args:
        model: any ``AutoregressiveModel``; the same model (same weights) is needed to decompress.
        images: integers in [0, model.num_levels).
        cond: class labels (N,) for class-conditional models; stored in the file.
        batch_size: images coded together (one network call per step covers the batch); stored in the file.
        method: how the network is evaluated at each step (stored in the file; the decoder does the same):
            "fast": through the model's cached ``fast_sample``; "window": on a window around the step, for models
            that declare a ``receptive_radius``; "whole": the whole network on the whole canvas; "auto": the first
            of these the model supports.
        progress: show a progress bar over the steps.
    """
    x = torch.as_tensor(np.asarray(images) if isinstance(images, np.ndarray) else images)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError(f"images must be integers in [0, {model.num_levels}), got dtype {x.dtype}")
    x = x.long()
    model.check_images(x)
    n = x.shape[0]
    if n < 1:
        raise ValueError("no images to compress")
    if not 1 <= batch_size < 2**32:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    labels = None
    if cond is not None:
        labels = model.check_cond(torch.as_tensor(np.asarray(cond)), n).cpu()
    radius = getattr(model, "receptive_radius", None)
    if radius is not None and not 0 <= int(radius) < 2**16:
        raise ValueError(f"receptive_radius must be in [0, 65535], got {radius}")
    candidates = {
        "auto": [FAST] * model.supports_fast_sampling + [WINDOW] * (radius is not None) + [WHOLE],
        "fast": [FAST],
        "window": [WINDOW],
        "whole": [WHOLE],
    }.get(method)
    if candidates is None:
        raise ValueError(f"method must be 'auto', 'fast', 'window' or 'whole', got {method!r}")
    if method == "fast" and not model.supports_fast_sampling:
        raise ValueError(f"model {model.model_name!r} has no fast sampler; use method='auto'")
    if method == "window" and radius is None:
        raise ValueError(f"model {model.model_name!r} declares no receptive_radius; use method='auto'")
    for code in candidates:
        r = int(radius) if code == WINDOW else 0
        try:
            payload = _encode(model, x, labels, batch_size, code, r, progress)
            break
        except _FastPathUnusable as err:  # a fast sampler that does not draw every step through model.head
            if method == "fast":
                raise ValueError(f"the fast sampler of {model.model_name!r} cannot drive the codec: {err}") from err
            log.info("not using the fast sampler of %s for coding: %s", model.model_name, err)
    flags = 0 if labels is None else FLAG_LABELS
    head = _FIXED.pack(
        MAGIC,
        VERSION,
        flags,
        bytes.fromhex(model_fingerprint(model)),
        *model.image_shape,
        model.num_levels,
        n,
        batch_size,
        PRECISION,
        code,
        r,
        _image_crc(x),
        len(payload) // 4,
        zlib.crc32(payload),
    )
    if labels is not None:
        head += labels.numpy().astype("<u4").tobytes()
    head += _CRC.pack(zlib.crc32(head))
    log.info("compressed %d images into %d bytes", n, len(head) + len(payload))
    return head + payload


def _encode(model, x, labels, batch_size: int, method: int, radius: int, progress: bool) -> bytes:
    device = _device(model)
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    with _deterministic(model):
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size].numpy().astype(np.int32)  # (b, C, H, W)
            chunk_cond = None if labels is None else labels[start : start + batch_size].to(device)

            def encode(freqs: np.ndarray, c: int, step: Step) -> np.ndarray:
                values = np.ascontiguousarray(encode.truth[:, c, step.h, step.w])  # (b,)
                encoder.encode(values, family, freqs.astype(np.float64))
                return values

            encode.truth = chunk  # a staged model swaps in each stage's view (_walk_stages)
            coded = _walk(model, len(chunk), chunk_cond, device, encode, method, radius, progress)
            if not np.array_equal(coded.cpu().numpy(), chunk):
                raise _FastPathUnusable("its images differ from the values the codec chose")
    return encoder.get_compressed().astype("<u4").tobytes()


def decompress(model, data: bytes, progress: bool = False) -> torch.Tensor:
    """Decode a file made by ``compress`` with the same model; returns the images (N, C, H, W) as int64 (CPU).

    Raises ``CodecError`` for a wrong model, a truncated or corrupted file, or a decoding mismatch; it never
    returns a wrong image. The class labels, if any, are in ``read_header(data).labels``.
    """
    header = read_header(data)
    if tuple(header.image_shape) != tuple(model.image_shape) or header.num_levels != model.num_levels:
        raise CodecError(
            f"the file holds {header.image_shape} images with {header.num_levels} levels; this model is for "
            f"{tuple(model.image_shape)} with {model.num_levels} levels"
        )
    fingerprint = model_fingerprint(model)
    if header.fingerprint != fingerprint:
        raise CodecError(
            f"the file was compressed with a different model (fingerprint {header.fingerprint[:16]}..., "
            f"this model {fingerprint[:16]}...): decompress with the exact model (same weights) used to compress"
        )
    if header.method == FAST and not model.supports_fast_sampling:
        raise CodecError("the file was coded through the model's fast sampler, which this model does not have")
    payload = _payload(data, header)
    device = _device(model)
    family = constriction.stream.model.Categorical(perfect=False)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    labels = None if header.labels is None else torch.tensor(header.labels, dtype=torch.long)
    out = []
    with _deterministic(model):
        for start in range(0, header.count, header.batch_size):
            b = min(header.batch_size, header.count - start)
            chunk_cond = None if labels is None else labels[start : start + b].to(device)

            def decode(freqs: np.ndarray, c: int, step: Step) -> np.ndarray:
                try:
                    return np.asarray(decoder.decode(family, freqs.astype(np.float64)))
                except Exception as err:  # constriction raises on a stream that cannot be decoded
                    raise CodecError(f"the payload could not be decoded ({err})") from err

            out.append(_walk(model, b, chunk_cond, device, decode, header.method, header.radius, progress).cpu())
    images = torch.cat(out)
    if _image_crc(images) != header.image_crc:
        raise CodecError(
            "the decoded images fail their checksum: this machine computes different model probabilities than "
            "the one that compressed the file (device, CPU kind or torch version); decode where it "
            "was encoded"
        )
    return images


def read_header(data: bytes) -> Header:
    """Parse and check a file's header (magic, version, header CRC); raises ``CodecError`` on any problem."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise CodecError("not a pixelmodels compressed file (bad magic bytes)")
    if len(data) < _FIXED.size + _CRC.size:
        raise CodecError(f"truncated file: {len(data)} bytes is shorter than the header")
    fields = _FIXED.unpack_from(data)
    _, version, flags, fp, c, h, w, levels, count, batch, precision, method, radius, image_crc, words, crc = fields
    if version != VERSION:
        raise CodecError(f"unsupported format version {version} (this pixelmodels reads version {VERSION})")
    size = _FIXED.size + (4 * count if flags & FLAG_LABELS else 0) + _CRC.size
    if len(data) < size:
        raise CodecError(f"truncated or corrupted file: {len(data)} bytes is shorter than its {size}-byte header")
    (stored_crc,) = _CRC.unpack_from(data, size - _CRC.size)
    if zlib.crc32(data[: size - _CRC.size]) != stored_crc:
        raise CodecError("corrupted file: the header checksum does not match")
    labels = None
    if flags & FLAG_LABELS:
        labels = tuple(int(v) for v in np.frombuffer(data, dtype="<u4", count=count, offset=_FIXED.size))
    if method not in (WHOLE, WINDOW, FAST) or precision != PRECISION or batch < 1:
        raise CodecError(f"unsupported coding parameters (method {method}, precision {precision}, batch {batch})")
    return Header(
        version,
        fp.hex(),
        (c, h, w),
        levels,
        count,
        batch,
        precision,
        image_crc,
        words,
        crc,
        labels,
        size,
        method,
        radius,
    )


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
    with its own head; the encoder codes each stage's view of the true images (``code.truth``)."""
    first_model, rest_model, views, rest_canvas, merge = model.coding_stages()
    truth = getattr(code, "truth", None)
    parts = None if truth is None else views(torch.from_numpy(truth).long())
    try:
        if parts is not None:
            code.truth = parts[0].numpy().astype(np.int32)
        method = FAST if first_model.supports_fast_sampling else WHOLE
        first = _walk(first_model, n, None, device, code, method, 0, progress)
        if parts is not None:
            code.truth = parts[1].numpy().astype(np.int32)
        canvas = rest_canvas(first, None, n)
        given = views(merge(first, canvas))[2]

        def run(generator):
            return rest_model.sample_given(canvas, given, generator=generator, progress=progress)

        rest = _walk_fast(rest_model, n, None, device, code, progress, run)
    finally:
        if truth is not None:
            code.truth = truth
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


def _image_crc(images: torch.Tensor) -> int:
    return zlib.crc32(images.cpu().numpy().astype("<u2").tobytes())


def _payload(data: bytes, header: Header) -> bytes:
    end = header.size + 4 * header.payload_words
    if len(data) < end:
        raise CodecError(f"truncated file: {len(data)} bytes, expected {end}")
    if len(data) > end:
        raise CodecError(f"corrupted file: {len(data) - end} unexpected bytes after the payload")
    payload = data[header.size : end]
    if zlib.crc32(payload) != header.payload_crc:
        raise CodecError("corrupted file: the payload checksum does not match")
    return payload
