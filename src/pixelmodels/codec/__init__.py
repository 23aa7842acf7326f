"""Lossless image compression with any model: its conditionals drive a range coder (format: ``docs/codec.md``).

An exact-likelihood model is a compressor: an image costs about ``-log2 p(x)`` bits. Images of any size are cut
into tiles of the model's size (``codec.tiles``); every sub-pixel of a tile gets an integer frequency table from
the model and is coded with ``constriction``'s range coder, tiles in batches, each batch its own stream with its
own checksums.

    >>> from pixelmodels import codec
    >>> data = codec.compress(model, images)      # (N, C, H, W) or (C, H, W) ints in [0, K), or a list of
    >>> restored = codec.decompress(model, data)  # (C_i, H_i, W_i) arrays of any sizes; equal, or a CodecError

Two kinds of model (stored in the header):
- an ``IntegerModel`` (``pixelmodels.quantized``): exact integer tables, so files decode bit-exactly on any machine;
  encoding takes every table from one teacher-forced pass, decoding runs across all tiles at once
  (``codec.integer_path``);
- any float ``AutoregressiveModel``: tables from the network on exactly the canvases the decoder will see; such a
  file decodes only where the network computes the same floats (``codec.float_path``).

The header carries the model's fingerprint (a different model is refused by name before decoding), the library
and format version, and per batch the CRC-32 of its payload (checked before decoding) and of its tiles' values
(checked as soon as the batch is decoded): a decoding mismatch is an error, never a wrong image.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from pixelmodels.codec import integer_path, tiles
from pixelmodels.codec.float_path import (
    PRECISION,
    _conditionals,
    _FastPathUnusable,
    decode_batch,
    encode_batch,
    model_fingerprint,
    quantize,
)
from pixelmodels.codec.format import (
    FAST,
    FLAG_LABELS,
    FLOAT,
    INTEGER,
    VERSION,
    WHOLE,
    WINDOW,
    BatchEntry,
    CodecError,
    Header,
    ImageEntry,
    library_version,
    pack_header,
    read_header,
)
from pixelmodels.codec.integer_path import is_integer_model

__all__ = ["CodecError", "Header", "compress", "decompress", "decompress_list", "fingerprint", "read_header"]
__all__ += ["model_fingerprint", "quantize", "PRECISION", "VERSION", "FAST", "WINDOW", "WHOLE", "_conditionals"]

log = logging.getLogger(__name__)
MAX_DECODE_TILES = 1024  # integer path: tiles decoded together (one decode call)
INTEGER_BATCH_ELEMENTS = 2**25  # integer path: table entries of one batch's teacher-forced pass (int64: 256 MiB)
FLOAT_BATCH = 64


def fingerprint(model) -> str:
    """The model's fingerprint as stored in headers (32 hex digits): ``model.fingerprint`` of an ``IntegerModel``,
    else ``model_fingerprint(model)`` (SHA-256 of its config and weights)."""
    return str(model.fingerprint)[:32] if is_integer_model(model) else model_fingerprint(model)


def compress(
    model,
    images,
    cond=None,
    batch_size: int | None = None,
    method: str = "auto",
    progress: bool = False,
    model_name: str = "",
) -> bytes:
    """Losslessly compress integer images with ``model``; returns the file bytes.

    Args:
        model: an ``IntegerModel`` or any float ``AutoregressiveModel``; the same model decompresses.
        images: (N, C, H, W) or (C, H, W) integers in [0, K), or a sequence of (C, H_i, W_i) arrays; any H, W. A
            3-channel model also takes grey images (1 channel): coded as R=G=B with only R coded.
        cond: class labels (N,) (or one int) for class-conditional models, stored in the file. Spatial
            conditioning maps cannot be stored and are refused.
        batch_size: tiles per batch (a stream with its own checksums); default 64 for a float model, and for an
            integer model as many as keep its teacher-forced tables within 256 MiB.
        method: float models only: how the network runs at each step ("fast": the cached ``fast_sample``;
            "window": a window of ``receptive_radius``; "whole": the whole network; "auto": the first supported).
        progress: show progress bars.
        model_name: stored in the header (up to 255 bytes) so that errors can name the model a file needs.
    """
    integer = is_integer_model(model)
    shape = tuple(int(s) for s in model.image_shape)
    imgs = _as_images(images, shape[0], model.num_levels)
    labels = _labels(model, cond, len(imgs))
    entries = tuple(ImageEntry(i.shape[1], i.shape[2], i.shape[0], 0 if labels is None else int(labels[k]))
                    for k, i in enumerate(imgs))  # fmt: skip
    tile_values, roles = tiles.cut(imgs, shape), tiles.layout(entries, shape)
    tile_labels = None if labels is None else np.repeat(labels, [tiles.tile_count(e, *shape[1:]) for e in entries])
    if batch_size is None:
        per_tile = int(np.prod(shape)) * model.num_levels
        batch_size = max(1, INTEGER_BATCH_ELEMENTS // per_tile) if integer else FLOAT_BATCH
    if not 1 <= int(batch_size) < 2**32:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    spans = [(s, min(s + batch_size, len(roles))) for s in range(0, len(roles), batch_size)]
    if integer:
        if method not in ("auto", "integer"):
            raise ValueError(f"method (--method) {method!r} is for float models; an integer model has one way to code")
        kind, code, radius, precision = INTEGER, 0, 0, int(model.precision)
        payloads = [integer_path.encode_batch(model, tile_values[a:b], roles[a:b], _part(tile_labels, a, b))
                    for a, b in _progress_over(spans, progress, "encoding")]  # fmt: skip
    else:
        kind, precision = FLOAT, PRECISION
        code, radius, payloads = _encode_float(model, tile_values, roles, tile_labels, spans, method, progress)
    batches = tuple(BatchEntry(len(p) // 4, zlib.crc32(p), _values_crc(tile_values[a:b]))
                    for p, (a, b) in zip(payloads, spans, strict=True))  # fmt: skip
    header = Header(
        VERSION, 0 if labels is None else FLAG_LABELS, fingerprint(model), library_version(), kind, code, precision,
        radius, shape, int(model.num_levels), int(batch_size), entries, batches, 0, model_name,
    )  # fmt: skip
    head = pack_header(header)
    log.info(
        "compressed %d images (%d tiles) into %d bytes", len(imgs), len(roles), len(head) + sum(map(len, payloads))
    )
    return head + b"".join(payloads)


def _encode_float(model, tile_values, roles, tile_labels, spans, method, progress):
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
        raise ValueError(f"model {model.model_name!r} has no fast sampler; use method (--method) 'auto'")
    if method == "window" and radius is None:
        raise ValueError(f"model {model.model_name!r} declares no receptive_radius; use method (--method) 'auto'")
    for code in candidates:
        r = int(radius) if code == WINDOW else 0
        try:
            payloads = [encode_batch(model, tile_values[a:b], roles[a:b], _part(tile_labels, a, b), code, r, progress)
                        for a, b in spans]  # fmt: skip
            return code, r, payloads
        except _FastPathUnusable as err:  # a fast sampler that does not draw every step through model.head
            if method == "fast":
                raise ValueError(f"the fast sampler of {model.model_name!r} cannot drive the codec: {err}") from err
            log.info("not using the fast sampler of %s for coding: %s", model.model_name, err)
    raise AssertionError("unreachable: the whole-network method always works")


def decompress(model, data: bytes, progress: bool = False) -> torch.Tensor:
    """Decode a file made by ``compress`` with the same model: (N, C, H, W) int64 (CPU). Images of different
    sizes or channel counts: use ``decompress_list``. Raises ``CodecError`` on any problem; never returns a
    wrong image. The class labels, if any, are in ``read_header(data).labels``."""
    images = decompress_list(model, data, progress)
    if len({tuple(i.shape) for i in images}) > 1:
        raise ValueError("the file holds images of different sizes: use codec.decompress_list")
    return torch.stack(images)


def decompress_list(model, data: bytes, progress: bool = False) -> list[torch.Tensor]:
    """Like ``decompress``, one (C_i, H_i, W_i) int64 tensor per image."""
    header = read_header(data)
    _check_model(model, header)
    payloads, offset = [], header.size
    for i, b in enumerate(header.batches):
        payload = data[offset : offset + 4 * b.words]
        offset += 4 * b.words
        if len(payload) < 4 * b.words:
            raise CodecError(f"truncated file: {len(data)} bytes, expected {header.size + 4 * header.payload_words}")
        if zlib.crc32(payload) != b.payload_crc:
            raise CodecError(
                f"corrupted file: the payload of batch {i + 1} of {len(header.batches)} fails its checksum"
            )
        payloads.append(payload)
    if len(data) > offset:
        raise CodecError(f"corrupted file: {len(data) - offset} unexpected bytes after the payload")
    shape, per = header.tile_shape, header.tiles_per_batch
    roles = tiles.layout(header.images, shape)
    labels = header.labels
    tile_labels = (
        None if labels is None else np.repeat(labels, [tiles.tile_count(e, *shape[1:]) for e in header.images])
    )
    spans = [(s, min(s + per, len(roles))) for s in range(0, len(roles), per)]
    decoded = []
    group = max(1, MAX_DECODE_TILES // per) if header.kind == INTEGER else 1  # batches decoded together
    for g in range(0, len(spans), group):
        part = spans[g : g + group]
        a, b = part[0][0], part[-1][1]
        if header.kind == INTEGER:
            out = integer_path.decode_batches(model, payloads[g : g + group], [roles[s:e] for s, e in part],
                                              _part(tile_labels, a, b), progress)  # fmt: skip
        else:
            out = decode_batch(model, payloads[g], roles[a:b], _part(tile_labels, a, b), header.method,
                               header.radius, progress)  # fmt: skip
        for j, (s, e) in enumerate(part):
            if _values_crc(out[s - a : e - a]) != header.batches[g + j].values_crc:
                raise CodecError(_mismatch(header, g + j))
        decoded.append(out)
    return [torch.from_numpy(i) for i in tiles.assemble(np.concatenate(decoded), header.images, shape)]


def _check_model(model, header: Header) -> None:
    integer = is_integer_model(model)
    if header.kind == INTEGER and not integer:
        raise CodecError(f"the file was coded with integer tables: decompress it with the IntegerModel of "
                         f"fingerprint {header.fingerprint} (pixelmodels.quantized)")  # fmt: skip
    if header.kind == FLOAT and integer:
        raise CodecError(
            f"the file was coded with a float model (fingerprint {header.fingerprint}), not an IntegerModel"
        )
    if tuple(header.tile_shape) != tuple(model.image_shape) or header.num_levels != model.num_levels:
        raise CodecError(
            f"the file was coded in {header.tile_shape} tiles with {header.num_levels} levels; this model is for "
            f"{tuple(model.image_shape)} with {model.num_levels} levels"
        )
    own = fingerprint(model)
    if header.fingerprint != own:
        named = f"model {header.model_name!r}, " if header.model_name else ""
        raise CodecError(
            f"the file was compressed with a different model ({named}fingerprint {header.fingerprint}; this model "
            f"{own}): decompress with the exact model (same weights) used to compress"
        )
    expected = int(model.precision) if integer else PRECISION
    if header.precision != expected:
        raise CodecError(f"the file's tables have {header.precision}-bit precision; this model's have {expected}")
    if header.kind == FLOAT and header.method == FAST and not model.supports_fast_sampling:
        raise CodecError("the file was coded through the model's fast sampler, which this model does not have")


def _mismatch(header: Header, i: int) -> str:
    where = f"batch {i + 1} of {len(header.batches)} decoded to values that fail its checksum"
    if header.kind == FLOAT:
        return (f"{where}: this machine computes different model probabilities than the one that compressed the "
                f"file (device, CPU kind or torch version); decode where it was encoded")  # fmt: skip
    return f"{where}: the file is corrupted"


def _as_images(images, channels: int, levels: int) -> list[np.ndarray]:
    """(N, C, H, W), (C, H, W) or a sequence of (C_i, H_i, W_i) integer arrays -> list of int64 (C_i, H_i, W_i)."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        seq = [arr] if arr.ndim == 3 else list(arr) if arr.ndim == 4 else None
        if seq is None:
            raise ValueError(f"images must have shape (N, C, H, W) or (C, H, W), got {arr.shape}")
    elif isinstance(images, Sequence):
        seq = [i.detach().cpu().numpy() if isinstance(i, torch.Tensor) else np.asarray(i) for i in images]
    else:
        raise ValueError(f"images must be an array, a tensor or a list of them, got {type(images).__name__}")
    if not seq:
        raise ValueError("no images to compress")
    out = []
    for k, img in enumerate(seq):
        if img.dtype.kind not in "iu":
            raise ValueError(f"images must be integers in [0, {levels}), got dtype {img.dtype}")
        if img.ndim != 3 or min(img.shape) < 1 or img.shape[0] not in {channels, 1 if channels == 3 else channels}:
            grey = " (or 1: grey)" if channels == 3 else ""
            raise ValueError(f"image {k} has shape {img.shape}: expected (C, H, W) with C = {channels}{grey}")
        if int(img.min()) < 0 or int(img.max()) >= levels:
            raise ValueError(f"image values must be in [0, {levels}), got min {int(img.min())} max {int(img.max())}")
        out.append(img.astype(np.int64))
    return out


def _labels(model, cond, n: int) -> np.ndarray | None:
    """Class labels (n,) or None; a spatial conditioning map is refused up front (the file cannot store it)."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        if "map" in cond:
            raise ValueError(
                "the codec cannot store a spatial conditioning map; only class labels are kept in the file"
            )
        cond = cond.get("labels")
        if cond is None:
            return None
    t = torch.as_tensor(np.asarray(cond) if not isinstance(cond, torch.Tensor) else cond)
    if t.dtype.is_floating_point or t.dim() > 1:
        raise ValueError("the codec cannot store a spatial conditioning map; only class labels are kept in the file")
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"this model is unconditional: give no class labels (got {t.tolist()[:8]})")
    t = t.expand(n) if t.dim() == 0 else t
    if t.shape != (n,) or int(t.min()) < 0 or int(t.max()) >= num_classes:
        raise ValueError(f"class labels must be {n} integers in [0, {num_classes}), got {t.tolist()[:8]}")
    return t.long().numpy()


def _part(labels: np.ndarray | None, a: int, b: int):
    return None if labels is None else labels[a:b]


def _values_crc(values: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(values).astype("<u2").tobytes())


def _progress_over(spans, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(spans, disable=not progress or len(spans) < 2, desc=desc, leave=False)
