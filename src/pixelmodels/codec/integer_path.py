"""The integer path: tables from an ``IntegerModel`` (``pixelmodels.quantized``), bit-exact on any machine.

An ``IntegerModel`` computes its frequency tables with exact integer arithmetic, so the tables of a teacher-forced
pass over the true tiles (``frequencies``: every conditional at once) are exactly the tables the decoder meets
step by step (``decode``). Encoding is therefore one network pass per batch; decoding walks the pixels in raster
order (R, G, B inside a pixel) for all tiles at once, whatever the batch grouping, since no float rounding
depends on it. The symbols of a batch are coded in the decoder's order: row, column, channel, then tile.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from pixelmodels.codec.format import CodecError
from pixelmodels.codec.tiles import CODED, fill


def is_integer_model(model) -> bool:
    return hasattr(model, "frequencies") and hasattr(model, "decode")


def encode_batch(model, tiles: np.ndarray, roles: np.ndarray, labels: np.ndarray | None) -> bytes:
    """Code one batch of tiles (b, C, h, w) with all tables from one ``frequencies`` call; returns the payload."""
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    x = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.int64))
    cond = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    freqs = torch.as_tensor(model.frequencies(x, cond))  # (b, C, h, w, K) int64
    if tuple(freqs.shape) != (*x.shape, model.num_levels):
        raise CodecError(f"the integer model gave tables of shape {tuple(freqs.shape)} for tiles {tuple(x.shape)}")
    by_row = freqs.permute(2, 3, 1, 0, 4)  # (h, w, C, b, K): the decoder's order
    values = x.permute(2, 3, 1, 0).numpy()  # (h, w, C, b)
    coded = torch.from_numpy(roles == CODED).permute(2, 3, 1, 0)
    for h in range(x.shape[2]):
        tables = by_row[h][coded[h]].numpy()  # (symbols, K)
        _check_tables(tables, model.precision)
        encoder.encode(values[h][coded[h].numpy()].astype(np.int32), family, tables.astype(np.float64))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_batches(model, payloads: list[bytes], roles: list[np.ndarray], labels, progress: bool) -> np.ndarray:
    """Decode several batches at once (one ``decode`` call over all their tiles); returns (T, C, h, w) int64."""
    family = constriction.stream.model.Categorical(perfect=False)
    decoders = [
        constriction.stream.queue.RangeDecoder(np.frombuffer(p, dtype="<u4").astype(np.uint32)) for p in payloads
    ]
    bounds = np.cumsum([0] + [len(r) for r in roles])
    all_roles = np.concatenate(roles)
    canvas = np.zeros(all_roles.shape, dtype=np.int64)

    def decode_fn(tables, h: int, w: int, c: int) -> np.ndarray:
        tables = np.asarray(tables)  # (n, K)
        values = fill(canvas, all_roles, h, w, c)
        coded = all_roles[:, c, h, w] == CODED
        for decoder, start, end in zip(decoders, bounds[:-1], bounds[1:], strict=True):
            mask = coded[start:end]
            if mask.any():
                try:
                    values[start:end][mask] = decoder.decode(family, tables[start:end][mask].astype(np.float64))
                except Exception as err:  # constriction raises on a stream that cannot be decoded
                    raise CodecError(f"the payload could not be decoded ({err})") from err
        canvas[:, c, h, w] = values
        return values.copy()

    cond = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
    out = torch.as_tensor(model.decode(len(all_roles), decode_fn, cond=cond, progress=progress))
    if not np.array_equal(out.cpu().numpy(), canvas):
        raise CodecError("the integer model's decode returned other values than it decoded")
    return canvas


def _check_tables(tables: np.ndarray, precision: int) -> None:
    if len(tables) and ((tables < 1).any() or (tables.sum(axis=1) != 1 << precision).any()):
        raise CodecError(f"the integer model's tables are not positive with sums 2**{precision}")
