"""Images of any size as tiles of the model's size; which sub-pixels of a tile are coded.

An H x W image is cut into ceil(H/h) x ceil(W/w) tiles of the model's h x w, in raster order of tiles. The
edge tiles are padded with zeros below and to the right; those sub-pixels are not coded: the decoder knows H
and W from the header and writes the same zeros itself. A grey image given to a 3-channel (RGB) model is coded
as R=G=B with only R coded: G and B are copies of the R already decoded at that pixel (every model codes a
pixel's channels in R, G, B order), and the restored image is grey again. So both kinds of filled sub-pixels
cost nothing and the round trip is exact.
"""

from __future__ import annotations

import numpy as np

from pixelmodels.codec.format import ImageEntry, tile_count

__all__ = ["CODED", "COPY", "ZERO", "assemble", "cut", "fill", "layout", "tile_count"]

CODED, ZERO, COPY = 0, 1, 2  # a tile sub-pixel: coded, padding (0), or a copy of channel 0 (grey via RGB)


def layout(entries: tuple[ImageEntry, ...], tile_shape: tuple[int, int, int]) -> np.ndarray:
    """The role of every sub-pixel of every tile: (T, C, h, w) int8 of CODED / ZERO / COPY."""
    return np.concatenate([_tile(_roles(e, tile_shape), tile_shape) for e in entries])


def cut(images: list[np.ndarray], tile_shape: tuple[int, int, int]) -> np.ndarray:
    """Images (c_i, H_i, W_i) (c_i = 1 or C) -> their tiles (T, C, h, w) int64, zero-padded, grey replicated."""
    c = tile_shape[0]
    tiles = []
    for img in images:
        _, height, width = img.shape
        canvas = np.zeros((c, _up(height, tile_shape[1]), _up(width, tile_shape[2])), dtype=np.int64)
        canvas[:, :height, :width] = img  # a grey (1, H, W) broadcasts to every channel
        tiles.append(_tile(canvas, tile_shape))
    return np.concatenate(tiles)


def assemble(tiles: np.ndarray, entries: tuple[ImageEntry, ...], tile_shape: tuple[int, int, int]) -> list:
    """The inverse of ``cut``: tiles (T, C, h, w) -> images (channels_i, H_i, W_i)."""
    c, th, tw = tile_shape
    images, start = [], 0
    for e in entries:
        rows, cols = _up(e.height, th) // th, _up(e.width, tw) // tw
        block = tiles[start : start + rows * cols].reshape(rows, cols, c, th, tw)
        start += rows * cols
        canvas = block.transpose(2, 0, 3, 1, 4).reshape(c, rows * th, cols * tw)
        images.append(np.ascontiguousarray(canvas[: e.channels, : e.height, : e.width]))
    return images


def fill(canvas: np.ndarray, roles: np.ndarray, h: int, w: int, c: int) -> np.ndarray:
    """The values of the sub-pixels (n,) at (h, w, c) that are not coded, from the canvas (n, C, h, w) so far
    (only the entries where ``roles[:, c, h, w] != CODED`` are meaningful)."""
    return np.where(roles[:, c, h, w] == COPY, canvas[:, 0, h, w], 0)


def _roles(e: ImageEntry, tile_shape: tuple[int, int, int]) -> np.ndarray:
    c, th, tw = tile_shape
    roles = np.full((c, _up(e.height, th), _up(e.width, tw)), ZERO, dtype=np.int8)
    roles[:, : e.height, : e.width] = CODED
    if e.channels == 1 and c > 1:
        roles[1:, : e.height, : e.width] = COPY
    return roles


def _tile(canvas: np.ndarray, tile_shape: tuple[int, int, int]) -> np.ndarray:
    """(C, R h, Q w) -> (R Q, C, h, w), tiles in raster order."""
    c, th, tw = tile_shape
    rows, cols = canvas.shape[1] // th, canvas.shape[2] // tw
    return canvas.reshape(c, rows, th, cols, tw).transpose(1, 3, 0, 2, 4).reshape(rows * cols, c, th, tw)


def _up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
