"""The ``.pmz`` file format, version 2: header, image table, batch table, payloads (see ``docs/codec.md``).

Little-endian::

    offset  size  field
    0       4     magic b"PXMZ"
    4       2     format version (2)
    6       2     flags: bit 0 class labels stored; every other bit must be 0 (unknown bits are refused)
    8       16    model fingerprint (first 128 bits of SHA-256, see ``model_fingerprint``)
    24      3     version of the pixelmodels library that wrote the file (major, minor, patch)
    27      1     kind: 0 float model (tables from the network at every step), 1 integer model (``IntegerModel``)
    28      1     float kind: how the network ran per step (0 whole canvas, 1 window, 2 fast sampler); integer: 0
    29      1     precision of the frequency tables, bits
    30      2     window radius (method 1)
    32      12    tile shape C, h, w (the model's image shape; uint32 each)
    44      4     levels K
    48      4     image count N (>= 1)
    52      4     tiles per batch
    56      4     batch count
    60      16N   image table: H, W, channels of the source image (1 or C), class label (0 without flag bit 0)
    ...     12B   batch table: payload length in 32-bit words, CRC-32 of the payload, CRC-32 of the tiles' values
    ...     1+L   the model's name (L bytes of UTF-8 after a length byte; may be empty): a shipped model's name or
                  the run it came from, so an error can name the model a file needs
    ...     4     CRC-32 of every header byte above
    ...           payloads of the batches, one after the other (range coder words)
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"PXMZ"
VERSION = 2
FLAG_LABELS = 1
KNOWN_FLAGS = FLAG_LABELS
FLOAT, INTEGER = 0, 1  # kind of model (byte 27)
WHOLE, WINDOW, FAST = 0, 1, 2  # how a float model's network runs at each step (byte 28)
MAX_PRECISION = 24  # constriction's range coder models
MAX_PIXELS = 2**31  # a sanity bound on what a header may announce
FIXED = struct.Struct("<4sHH16s3BBBBH3IIIII")  # 60 bytes
IMAGE = struct.Struct("<IIII")
BATCH = struct.Struct("<III")
CRC = struct.Struct("<I")


class CodecError(ValueError):
    """A compressed file cannot be decoded: wrong model, truncated, corrupted, or not a pixelmodels file."""


@dataclass(frozen=True)
class ImageEntry:
    height: int
    width: int
    channels: int  # of the source image: 1 (grey, coded through an RGB model as R=G=B) or the model's C
    label: int


@dataclass(frozen=True)
class BatchEntry:
    words: int
    payload_crc: int
    values_crc: int


@dataclass(frozen=True)
class Header:
    version: int
    flags: int
    fingerprint: str  # hex, first 128 bits of SHA-256
    library_version: tuple[int, int, int]
    kind: int
    method: int
    precision: int
    radius: int
    tile_shape: tuple[int, int, int]
    num_levels: int
    tiles_per_batch: int
    images: tuple[ImageEntry, ...]
    batches: tuple[BatchEntry, ...]
    size: int  # header length in bytes
    model_name: str = ""

    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> tuple[int, ...] | None:
        return tuple(e.label for e in self.images) if self.flags & FLAG_LABELS else None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The tile (model) shape; each image's own size is in ``images``."""
        return self.tile_shape

    @property
    def payload_words(self) -> int:
        return sum(b.words for b in self.batches)


def library_version() -> tuple[int, int, int]:
    from pixelmodels import __version__

    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in __version__.split(".")[:3]]
    return tuple(min(p, 255) for p in parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def pack_header(h: Header) -> bytes:
    raw = FIXED.pack(
        MAGIC, VERSION, h.flags, bytes.fromhex(h.fingerprint), *h.library_version, h.kind, h.method, h.precision,
        h.radius, *h.tile_shape, h.num_levels, len(h.images), h.tiles_per_batch, len(h.batches),
    )  # fmt: skip
    raw += b"".join(IMAGE.pack(e.height, e.width, e.channels, e.label) for e in h.images)
    raw += b"".join(BATCH.pack(b.words, b.payload_crc, b.values_crc) for b in h.batches)
    name = h.model_name.encode("utf-8")[:255].decode("utf-8", "ignore").encode("utf-8")
    raw += bytes([len(name)]) + name
    return raw + CRC.pack(zlib.crc32(raw))


def read_header(data: bytes) -> Header:
    """Parse and check a file's header; raises ``CodecError`` (never another error) on any problem."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise CodecError("not a pixelmodels compressed file (bad magic bytes)")
    if len(data) < 6:
        raise CodecError(f"truncated file: {len(data)} bytes is shorter than the header")
    (version,) = struct.unpack_from("<H", data, 4)
    if version == 1:
        raise CodecError(
            "this is a version-1 .pmz file (pixelmodels 0.1.0, float tables that decode only on the machine that "
            "wrote them); this pixelmodels reads version 2: decode it with pixelmodels 0.1.0 where it was written"
        )
    if version != VERSION:
        raise CodecError(f"unsupported format version {version} (this pixelmodels reads version {VERSION})")
    if len(data) < FIXED.size + CRC.size:
        raise CodecError(f"truncated file: {len(data)} bytes is shorter than the header")
    fields = FIXED.unpack_from(data)
    _, _, flags, fp, v0, v1, v2, kind, method, precision, radius, c, th, tw, levels, count, per_batch, nb = fields
    name_at = FIXED.size + IMAGE.size * count + BATCH.size * nb
    if len(data) < name_at + 1 + CRC.size:
        raise CodecError(f"truncated or corrupted file: {len(data)} bytes is shorter than its header")
    size = name_at + 1 + data[name_at] + CRC.size
    if len(data) < size:
        raise CodecError(f"truncated or corrupted file: {len(data)} bytes is shorter than its {size}-byte header")
    (stored_crc,) = CRC.unpack_from(data, size - CRC.size)
    if zlib.crc32(data[: size - CRC.size]) != stored_crc:
        raise CodecError("corrupted file: the header checksum does not match")
    images = tuple(ImageEntry(*IMAGE.unpack_from(data, FIXED.size + IMAGE.size * i)) for i in range(count))
    offset = FIXED.size + IMAGE.size * count
    batches = tuple(BatchEntry(*BATCH.unpack_from(data, offset + BATCH.size * i)) for i in range(nb))
    try:
        name = data[name_at + 1 : size - CRC.size].decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("corrupted file: the model name in the header is not UTF-8") from None
    header = Header(
        version, flags, fp.hex(), (v0, v1, v2), kind, method, precision, radius, (c, th, tw), levels, per_batch,
        images, batches, size, name,
    )  # fmt: skip
    _validate(header)
    return header


def _validate(h: Header) -> None:
    """Every field in range and consistent with the others: a crafted header is a CodecError, not a crash."""
    c, th, tw = h.tile_shape
    if h.flags & ~KNOWN_FLAGS:
        raise CodecError(
            f"unknown flag bits 0x{h.flags & ~KNOWN_FLAGS:04x} in the header (written by a newer version?)"
        )
    if h.count == 0:
        raise CodecError("corrupted file: the header says it holds no images")
    if min(c, th, tw) < 1 or h.num_levels < 2:
        raise CodecError(f"corrupted file: tile shape {h.tile_shape} with {h.num_levels} levels")
    if h.kind not in (FLOAT, INTEGER) or h.method not in ((WHOLE, WINDOW, FAST) if h.kind == FLOAT else (0,)):
        raise CodecError(f"unsupported coding parameters (kind {h.kind}, method {h.method})")
    if not h.num_levels.bit_length() < h.precision <= MAX_PRECISION:
        raise CodecError(f"unsupported table precision {h.precision} bits for {h.num_levels} levels")
    for i, e in enumerate(h.images):
        if e.height < 1 or e.width < 1 or e.channels not in {1, c} or (e.channels == 1 and c not in (1, 3)):
            raise CodecError(f"corrupted file: image {i} is {e.width}x{e.height} with {e.channels} channels")
        if e.label and not h.flags & FLAG_LABELS:
            raise CodecError(f"corrupted file: image {i} has a class label but the file stores none")
    if sum(e.height * e.width for e in h.images) > MAX_PIXELS:
        raise CodecError(f"corrupted file: more than {MAX_PIXELS} pixels")
    tiles = sum(tile_count(e, th, tw) for e in h.images)
    if h.tiles_per_batch < 1 or len(h.batches) != -(-tiles // h.tiles_per_batch):
        raise CodecError(
            f"corrupted file: {tiles} tiles in {len(h.batches)} batches of {h.tiles_per_batch} do not add up"
        )


def tile_count(entry: ImageEntry, th: int, tw: int) -> int:
    return -(-entry.height // th) * -(-entry.width // tw)
