"""Format version 2: any image size (tiles), grey through RGB, the integer path, per-batch checksums, and crafted
or old headers (all refused as CodecError)."""

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch

import pixelmodels
from integer_toy import ToyIntegerModel
from pixelmodels import codec
from pixelmodels.codec import CodecError, format, tiles

# a version-1 file written by pixelmodels 0.1.0 (main before format 2): one 2x2 binary image
V1_FILE = bytes.fromhex(
    "50584d5a01000000b6ec151167993901a2702497d85c1faf0100000002000000020000000200000001000000400000001802000069df"
    "2265010000001cdf4421296f1b9700000000"
)


def tiny(shape, levels, seed=0, **hparams):
    torch.manual_seed(seed)
    return pixelmodels.build("pixelcnn", image_shape=shape, num_levels=levels, hidden_channels=6, num_layers=2,
                             **hparams)  # fmt: skip


def image(c, h, w, levels, seed=1):
    return torch.randint(0, levels, (c, h, w), generator=torch.Generator().manual_seed(seed))


MODELS = {
    "float": lambda c, k: tiny((c, 4, 4), k),
    "integer": lambda c, k: ToyIntegerModel((c, 4, 4), k),
}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("size", [(5, 7), (4, 4), (1, 1), (9, 3), (3, 10)])
@pytest.mark.parametrize("c,levels", [(1, 2), (3, 256)])
def test_any_size_round_trips_exactly(kind, size, c, levels):
    model = MODELS[kind](c, levels)
    x = image(c, *size, levels)
    data = codec.compress(model, x)
    header = codec.read_header(data)
    assert (header.images[0].height, header.images[0].width) == size and header.tile_shape == (c, 4, 4)
    assert header.kind == (codec.INTEGER if kind == "integer" else codec.FLOAT)
    assert torch.equal(codec.decompress(model, data)[0], x)


@pytest.mark.parametrize("kind", MODELS)
def test_grey_through_an_rgb_model_codes_only_one_channel(kind):
    model = MODELS[kind](3, 256)
    grey = image(1, 6, 5, 256)
    data = codec.compress(model, grey)
    back = codec.decompress(model, data)[0]
    assert back.shape == (1, 6, 5) and torch.equal(back, grey)
    rgb = codec.compress(model, grey.expand(3, 6, 5))  # the same picture as RGB: G and B coded too
    assert codec.read_header(data).payload_words < 0.6 * codec.read_header(rgb).payload_words


def test_images_of_different_sizes_in_one_file():
    model = ToyIntegerModel((3, 4, 4), 16)
    xs = [image(3, 5, 9, 16), image(1, 2, 2, 16, seed=2), image(3, 8, 4, 16, seed=3)]
    data = codec.compress(model, xs, batch_size=3)
    back = codec.decompress_list(model, data)
    assert all(torch.equal(a, b) for a, b in zip(xs, back, strict=True))
    with pytest.raises(ValueError, match="decompress_list"):
        codec.decompress(model, data)


def test_tiles_cut_and_assemble_are_inverse_and_padding_is_not_coded():
    entries = (format.ImageEntry(5, 7, 3, 0), format.ImageEntry(3, 2, 1, 0))
    imgs = [np.arange(105).reshape(3, 5, 7) % 11, np.arange(6).reshape(1, 3, 2)]
    t = tiles.cut(imgs, (3, 4, 4))
    roles = tiles.layout(entries, (3, 4, 4))
    assert t.shape == roles.shape == (4 + 1, 3, 4, 4)
    assert (roles == tiles.CODED).sum() == 105 + 6 and (t[roles == tiles.ZERO] == 0).all()
    assert (roles == tiles.COPY).sum() == 2 * 6
    back = tiles.assemble(t, entries, (3, 4, 4))
    assert all(np.array_equal(a, b) for a, b in zip(imgs, back, strict=True))


def test_the_integer_path_encodes_from_one_teacher_forced_pass_per_batch():
    model = ToyIntegerModel((3, 4, 4), 256)
    x = image(3, 12, 8, 256)  # 6 tiles
    data = codec.compress(model, x, batch_size=4)
    assert model.frequency_calls == 2 and len(codec.read_header(data).batches) == 2
    assert torch.equal(codec.decompress(model, data)[0], x)
    model_bits = model.bits(torch.from_numpy(tiles.cut([x.numpy()], (3, 4, 4)))).sum()
    assert model_bits - 1 < 32 * codec.read_header(data).payload_words < 1.01 * model_bits + 64 * 2


def test_the_model_kind_and_fingerprint_are_checked():
    toy, float_model = ToyIntegerModel((1, 4, 4), 2), tiny((1, 4, 4), 2)
    data = codec.compress(toy, image(1, 5, 5, 2))
    with pytest.raises(CodecError, match=f"IntegerModel of fingerprint {toy.fingerprint[:32]}"):
        codec.decompress(float_model, data)
    with pytest.raises(CodecError, match="different model"):
        codec.decompress(ToyIntegerModel((1, 4, 4), 2, seed=1), data)
    with pytest.raises(CodecError, match="float model"):
        codec.decompress(toy, codec.compress(float_model, image(1, 5, 5, 2)))


def test_header_has_library_and_format_version():
    header = codec.read_header(codec.compress(tiny((1, 4, 4), 2), image(1, 4, 4, 2)))
    assert header.version == 2 and header.model_name == ""
    assert ".".join(map(str, header.library_version)) == pixelmodels.__version__


def test_version_1_files_are_refused_by_name():
    with pytest.raises(CodecError, match="version-1 .pmz file"):
        codec.read_header(V1_FILE)


def _reseal(data: bytes, offset: int, fmt: str, value) -> bytes:
    """Rewrite one header field and recompute the header CRC, so the field's own check must catch it."""
    size = codec.read_header(data).size
    raw = bytearray(data)
    struct.pack_into(fmt, raw, offset, value)
    struct.pack_into("<I", raw, size - 4, zlib.crc32(bytes(raw[: size - 4])))
    return bytes(raw)


@pytest.fixture(scope="module")
def two_batches():
    model = tiny((1, 4, 4), 4)
    x = image(1, 8, 4, 4)  # 2 tiles, one per batch
    return model, x, codec.compress(model, x, batch_size=1)


def test_count_zero_and_unknown_flags_are_codec_errors(two_batches):
    model, _, data = two_batches
    header = codec.read_header(data)
    empty = format.pack_header(dataclasses.replace(header, images=(), batches=())) + data[header.size :]
    with pytest.raises(CodecError, match="no images"):
        codec.decompress(model, empty)
    for bit in range(1, 16):
        with pytest.raises(CodecError, match="unknown flag bits"):
            codec.decompress(model, _reseal(data, 6, "<H", 1 << bit))


def test_crafted_header_fields_give_codec_errors_only(two_batches):
    """Every field of the fixed header set to odd values (CRC resealed): a CodecError or the right images."""
    model, x, data = two_batches
    fields = [(6, "<H"), (24, "<B"), (27, "<B"), (28, "<B"), (29, "<B"), (30, "<H")]
    fields += [(offset, "<I") for offset in range(32, 96, 4)]  # tile shape .. image table, batch table
    for offset, fmt in fields:
        for value in (0, 1, 2, 3, 255, 2**16 - 1, 2**32 - 1):
            if value >= 256 ** struct.calcsize(fmt):
                continue
            try:
                bad = _reseal(data, offset, fmt, value)
                out = codec.decompress(model, bad)
            except CodecError:
                continue
            assert torch.equal(out[0], x), (offset, value)


def test_a_corrupted_batch_is_reported_by_number_before_decoding(two_batches, monkeypatch):
    model, _, data = two_batches
    corrupted = bytearray(data)
    corrupted[-1] ^= 0x01  # in the last batch's payload
    calls = []
    monkeypatch.setattr(codec, "decode_batch", lambda *a: calls.append(1))
    with pytest.raises(CodecError, match="batch 2 of 2 fails its checksum"):
        codec.decompress(model, bytes(corrupted))
    assert calls == []  # reported before any decoding work


def test_a_decoding_mismatch_stops_at_its_batch(two_batches, monkeypatch):
    model, _, data = two_batches
    header = codec.read_header(data)
    offset = 60 + 16 * header.count + 8  # batch 1's CRC of its values
    bad = _reseal(data, offset, "<I", header.batches[0].values_crc ^ 1)
    real, calls = codec.decode_batch, []
    monkeypatch.setattr(codec, "decode_batch", lambda *a: calls.append(1) or real(*a))
    with pytest.raises(CodecError, match="batch 1 of 2 decoded to values that fail its checksum"):
        codec.decompress(model, bad)
    assert len(calls) == 1  # batch 2 was never decoded


def test_a_spatial_conditioning_map_is_refused_up_front(monkeypatch):
    torch.manual_seed(0)
    model = pixelmodels.build("gated_pixelcnn", image_shape=(1, 4, 4), num_levels=2, hidden_channels=4,
                              num_layers=1, cond_channels=2)  # fmt: skip
    monkeypatch.setattr(codec, "encode_batch", lambda *a: pytest.fail("coded before refusing"))
    for cond in (torch.randn(1, 2, 4, 4), {"map": torch.randn(1, 2, 4, 4)}):
        with pytest.raises(ValueError, match="cannot store a spatial conditioning map"):
            codec.compress(model, image(1, 4, 4, 2)[None], cond=cond)


def test_class_labels_are_stored_per_image():
    torch.manual_seed(0)
    model = pixelmodels.build("gated_pixelcnn", image_shape=(1, 4, 4), num_levels=2, hidden_channels=4,
                              num_layers=1, num_classes=3)  # fmt: skip
    xs = [image(1, 6, 6, 2), image(1, 3, 5, 2, seed=4)]
    data = codec.compress(model, xs, cond=[2, 1])
    assert codec.read_header(data).labels == (2, 1)
    assert all(torch.equal(a, b) for a, b in zip(xs, codec.decompress_list(model, data), strict=True))


def test_a_real_integer_model_round_trips_and_ships(tmp_path):
    quantized = pytest.importorskip("pixelmodels.quantized")
    from pixelmodels import pretrained

    torch.manual_seed(0)
    float_model = pixelmodels.build("gated_pixelcnn", image_shape=(3, 4, 4), num_levels=8, hidden_channels=4,
                                    num_layers=1).eval()  # fmt: skip
    model = quantized.quantize(float_model, torch.randint(0, 8, (4, 3, 4, 4)))
    xs = [image(3, 5, 6, 8), image(1, 3, 3, 8, seed=2)]  # RGB and grey, neither a multiple of the tile
    data = codec.compress(model, xs)
    assert codec.read_header(data).kind == codec.INTEGER
    folder = pretrained.save(model, tmp_path / "tiny-integer", description="test")
    loaded = pretrained.load_folder(folder)
    assert codec.fingerprint(loaded) == codec.fingerprint(model) == pretrained.manifest_of(folder)["fingerprint"]
    assert all(torch.equal(a, b) for a, b in zip(xs, codec.decompress_list(loaded, data), strict=True))
    (folder / "integer.safetensors").write_bytes(b"0" + (folder / "integer.safetensors").read_bytes()[1:])
    with pytest.raises(ValueError, match="SHA-256"):
        pretrained.load_folder(folder)


@pytest.mark.slow  # two subprocesses (~20 s on the loaded machine); the tables' portability is in test_quantized
def test_integer_files_decode_under_other_cpu_kernels_and_threads(tmp_path):
    """End to end through the file: written here, decoded in subprocesses with other kernels and thread counts."""
    import os
    import subprocess
    import sys

    quantized = pytest.importorskip("pixelmodels.quantized")
    from pixelmodels import pretrained

    torch.manual_seed(0)
    float_model = pixelmodels.build("gated_pixelcnn", image_shape=(3, 4, 4), num_levels=256, hidden_channels=4,
                                    num_layers=1, head="dmol").eval()  # fmt: skip
    model = quantized.quantize(float_model, torch.randint(0, 256, (4, 3, 4, 4)))
    folder = pretrained.save(model, tmp_path / "tiny")
    x = image(3, 6, 5, 256)
    (tmp_path / "x.pmz").write_bytes(codec.compress(model, x))
    np.save(tmp_path / "x.npy", x.numpy())
    script = (
        "import sys, numpy as np, torch; from pixelmodels import codec, pretrained; "
        "torch.set_num_threads(int(sys.argv[3])); m = pretrained.load_folder(sys.argv[1]); "
        "out = codec.decompress(m, open(sys.argv[2] + '.pmz', 'rb').read())[0].numpy(); "
        "assert np.array_equal(out, np.load(sys.argv[2] + '.npy')); print('ok')"
    )
    for capability, threads in (("default", "1"), ("avx2", "2")):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
        run = subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "x"), threads], env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_channel_counts_that_cannot_be_coded_are_refused():
    with pytest.raises(ValueError, match="C = 1"):
        codec.compress(tiny((1, 4, 4), 4), image(3, 4, 4, 4))  # colour through a grey model
    with pytest.raises(ValueError, match=r"C = 3 \(or 1: grey\)"):
        codec.compress(ToyIntegerModel((3, 4, 4), 4), image(2, 4, 4, 4))
