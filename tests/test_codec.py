import inspect
import math

import numpy as np
import pytest
import torch

import pixelmodels
from model_variants import VARIANTS
from pixelmodels import codec, sampling
from pixelmodels.codec import CodecError
from pixelmodels.heads import CategoricalHead
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.models.pixelcnn import PixelCNN


def tiny_pixelcnn(shape, levels, seed=0, sharpen=1.0, **hparams):
    torch.manual_seed(seed)
    hparams = dict(hidden_channels=6, num_layers=2) | hparams
    model = pixelmodels.build("pixelcnn", image_shape=shape, num_levels=levels, **hparams)
    if sharpen != 1.0:  # very peaked conditionals: exercises the frequency floor
        with torch.no_grad():
            model.output[-1].weight.mul_(sharpen)
    return model


def random_images(n, shape, levels, seed=1):
    return torch.randint(0, levels, (n, *shape), generator=torch.Generator().manual_seed(seed))


# ----- the head method the codec reads ----------------------------------------------------------------------
def test_categorical_channel_log_probs_agree_with_log_prob():
    head = CategoricalHead(3, 5)
    params = torch.randn(4, head.num_params, 2, 3)  # (B, P, H, W)
    x = torch.randint(0, 5, (4, 3, 2, 3))
    full = head.log_prob(params, x)  # (B, C, H, W)
    for c in range(3):
        lp = head.channel_log_probs(params[:, :, 1, 2], x[:, :, 1, 2], c)  # (B, K)
        assert lp.shape == (4, 5)
        torch.testing.assert_close(lp.exp().sum(1), torch.ones(4))
        torch.testing.assert_close(lp.gather(1, x[:, c, 1, 2, None]).squeeze(1), full[:, c, 1, 2])


# ----- quantization -----------------------------------------------------------------------------------------
def test_quantize_floor_total_and_closeness():
    logits = torch.randn(50, 17) * 8
    logits[0, 3] = -float("inf")  # an impossible value still gets frequency 1
    freqs = codec.quantize(torch.log_softmax(logits, -1))
    assert freqs.dtype == np.int64 and (freqs >= 1).all()
    assert (freqs.sum(1) == 1 << codec.PRECISION).all()
    p = torch.softmax(logits, -1).double().numpy()
    assert np.abs(freqs / (1 << codec.PRECISION) - p).max() < 1e-5
    np.testing.assert_array_equal(freqs, codec.quantize(torch.log_softmax(logits, -1)))


def test_quantize_rejects_nan():
    with pytest.raises(CodecError, match="non-finite"):
        codec.quantize(torch.tensor([[0.0, float("nan")]]))


# ----- round trips ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,levels,n,batch",
    [((1, 4, 4), 2, 9, 4), ((1, 7, 5), 2, 3, 64), ((1, 8, 8), 17, 6, 6), ((3, 4, 4), 4, 5, 2), ((3, 3, 5), 256, 4, 3)],
)
def test_pixelcnn_round_trip(shape, levels, n, batch):
    model = tiny_pixelcnn(shape, levels)
    x = random_images(n, shape, levels)
    data = codec.compress(model, x, batch_size=batch)
    header = codec.read_header(data)
    assert (header.image_shape, header.num_levels, header.count, header.tiles_per_batch) == (shape, levels, n, batch)
    assert torch.equal(codec.decompress(model, data), x)


def test_round_trip_with_peaked_model_and_its_own_samples():
    model = tiny_pixelcnn((1, 6, 6), 17, sharpen=30.0)
    x = torch.cat([model.sample(4), random_images(4, (1, 6, 6), 17)])  # likely and very unlikely images
    assert torch.equal(codec.decompress(model, codec.compress(model, x, batch_size=3)), x)


def test_round_trip_digits_test_set():
    """Every image of a small real test set (8x8 digits, 17 levels) decodes exactly, after brief training."""
    datasets = pytest.importorskip("sklearn.datasets")
    x = torch.from_numpy(datasets.load_digits().images.astype(np.int64))[:, None]  # (1797, 1, 8, 8), 0..16
    train, test = x[:256], x[-16:]
    model = tiny_pixelcnn((1, 8, 8), 17)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(12):
        loss = -model.log_prob(train[i * 16 : (i + 1) * 16]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    data = codec.compress(model, test, batch_size=8)
    assert torch.equal(codec.decompress(model, data), test)
    model_bits = -model.log_prob(test).sum().item() / math.log(2)
    payload_bits = 32 * codec.read_header(data).payload_words
    assert model_bits <= payload_bits < 1.01 * model_bits + 64 * 2  # the coder's overhead: tiny, per batch


@pytest.mark.parametrize("shape,first", [((1, 10, 11), 7), ((3, 6, 7), 3)])
def test_window_params_match_the_full_network(shape, first):
    """The declared receptive radius is enough: windowed parameters equal a full pass at every step; one
    pixel less is not (so this test can fail)."""
    model = tiny_pixelcnn(shape, 5, first_kernel_size=first).eval()
    x = random_images(3, shape, 5)
    with torch.no_grad():
        full = model.network(model.scale_input(x))  # (B, P, H, W)
        r = model.receptive_radius
        assert r < shape[1] - 1  # the windows really are smaller than the image here
        errors = {}
        for radius in (r, r - 1):
            steps = codec._conditionals(model, x.clone(), None, codec.WINDOW, radius)
            errors[radius] = max((p - full[:, :, s.h, s.w]).abs().max().item() for s, p in steps)
    assert errors[r] < 1e-6 < 1e-5 < errors[r - 1]


@pytest.mark.parametrize("method", ["auto", "window", "whole"])
def test_network_methods_round_trip(method):
    model = tiny_pixelcnn((1, 9, 9), 4)
    x = random_images(3, (1, 9, 9), 4)
    data = codec.compress(model, x, method=method)
    auto = codec.FAST if model.supports_fast_sampling else codec.WINDOW
    assert codec.read_header(data).method == {"auto": auto, "window": codec.WINDOW, "whole": codec.WHOLE}[method]
    assert torch.equal(codec.decompress(model, data), x)


class SamplerDriven(PixelCNN):
    """A 'fast' sampler that draws every step through model.head.sample, as the cached samplers do."""

    def fast_sample(self, n, cond, known, known_mask, temperature=1.0, generator=None, progress=False):
        return sampling.naive_sample(self, n, cond, known, known_mask, temperature, generator, progress)


class NoFastSampler(PixelCNN):
    fast_sample = AutoregressiveModel.fast_sample


class HeadBypassing(PixelCNN):
    """A fast sampler that does not go through model.head: the codec must not use it."""

    def fast_sample(self, n, cond, known, known_mask, temperature=1.0, generator=None, progress=False):
        return torch.zeros(n, *self.image_shape, dtype=torch.long)


def test_fast_sampler_drives_the_codec():
    torch.manual_seed(0)
    model = SamplerDriven((1, 6, 5), 4, hidden_channels=6, num_layers=2)
    x = random_images(5, (1, 6, 5), 4)
    data = codec.compress(model, x, batch_size=2)
    assert codec.read_header(data).method == codec.FAST
    assert torch.equal(codec.decompress(model, data), x)
    model_bits = -model.log_prob(x).sum().item() / math.log(2)
    assert model_bits - 1 < 32 * codec.read_header(data).payload_words < 1.01 * model_bits + 64 * 3
    plain = NoFastSampler((1, 6, 5), 4, hidden_channels=6, num_layers=2)  # same fingerprint, no fast sampler
    plain.load_state_dict(model.state_dict())
    assert codec.model_fingerprint(plain) == codec.model_fingerprint(model)
    with pytest.raises(CodecError, match="fast sampler"):
        codec.decompress(plain, data)


def test_a_fast_sampler_that_bypasses_the_head_is_not_used():
    torch.manual_seed(0)
    model = HeadBypassing((1, 4, 4), 2, hidden_channels=6, num_layers=2)
    x = random_images(3, (1, 4, 4), 2)
    data = codec.compress(model, x)
    assert codec.read_header(data).method == codec.WINDOW
    assert torch.equal(codec.decompress(model, data), x)
    with pytest.raises(ValueError, match="cannot drive the codec"):
        codec.compress(model, x, method="fast")
    with pytest.raises(ValueError, match="method must be"):
        codec.compress(model, x, method="quick")


def test_single_image_and_numpy_input():
    model = tiny_pixelcnn((1, 3, 3), 4)
    x = random_images(1, (1, 3, 3), 4)[0].numpy()  # (C, H, W)
    out = codec.decompress(model, codec.compress(model, x))
    assert out.shape == (1, 1, 3, 3) and np.array_equal(out[0].numpy(), x)


def test_training_mode_and_threads_are_restored():
    model = tiny_pixelcnn((1, 3, 3), 2)
    model.train()
    threads = torch.get_num_threads()
    codec.compress(model, random_images(2, (1, 3, 3), 2))
    assert model.training and torch.get_num_threads() == threads


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
@pytest.mark.parametrize("shape,levels", [((1, 4, 4), 2), ((3, 2, 4), 4)])
def test_every_model_round_trips(variant, shape, levels):
    # Variant.accepts gains a num_levels argument on the spn branch; take either form
    takes_levels = "num_levels" in inspect.signature(variant.accepts).parameters
    if not (variant.accepts(shape, levels) if takes_levels else variant.accepts(shape)):
        pytest.skip(f"{variant.id} does not take shape {shape}")
    torch.manual_seed(0)
    model = pixelmodels.build(variant.name, image_shape=shape, num_levels=levels, **variant.hparams)
    x = random_images(5, shape, levels)
    cond = None if model.num_classes is None else torch.arange(5) % model.num_classes
    data = codec.compress(model, x, cond=cond, batch_size=2)
    assert torch.equal(codec.decompress(model, data), x)
    with torch.no_grad():  # the coder used the model's own conditionals: its length is the model's NLL
        model_bits = -model.eval().log_prob(x, cond).sum().item() / math.log(2)
    header = codec.read_header(data)
    payload_bits = 32 * header.payload_words
    bound = 1.01 * model_bits + 64 * len(header.batches)  # the coder's flush: a few words per batch
    assert 0.99 * model_bits - 1 < payload_bits < bound, (payload_bits, model_bits)
    if cond is not None:
        assert codec.read_header(data).labels == tuple(cond.tolist())


# ----- fingerprint and errors -------------------------------------------------------------------------------
def test_fingerprint_tracks_weights_and_config():
    a = tiny_pixelcnn((1, 4, 4), 2)
    b = pixelmodels.build(**a.config)
    b.load_state_dict(a.state_dict())
    assert codec.model_fingerprint(a) == codec.model_fingerprint(b)
    with torch.no_grad():
        w = b.input_conv.weight
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(1.0))  # one ulp
    assert codec.model_fingerprint(a) != codec.model_fingerprint(b)


@pytest.fixture(scope="module")
def packed():
    model = tiny_pixelcnn((1, 3, 3), 4)
    x = random_images(3, (1, 3, 3), 4)
    return model, x, codec.compress(model, x)


def test_wrong_model_is_refused(packed):
    model, _, data = packed
    with pytest.raises(CodecError, match="different model"):
        codec.decompress(tiny_pixelcnn((1, 3, 3), 4, seed=5), data)
    with pytest.raises(CodecError, match="levels"):
        codec.decompress(tiny_pixelcnn((1, 3, 3), 5), data)
    with pytest.raises(CodecError, match=r"\(1, 3, 3\)"):
        codec.decompress(tiny_pixelcnn((1, 3, 4), 4), data)


def test_every_truncation_is_an_error(packed):
    model, _, data = packed
    for end in range(len(data)):
        with pytest.raises(CodecError):
            codec.decompress(model, data[:end])


def test_every_flipped_byte_is_an_error(packed):
    model, _, data = packed
    for i in range(len(data)):
        corrupted = bytearray(data)
        corrupted[i] ^= 0x10
        with pytest.raises(CodecError):
            codec.decompress(model, bytes(corrupted))


def test_trailing_bytes_are_an_error(packed):
    model, _, data = packed
    with pytest.raises(CodecError, match="unexpected bytes"):
        codec.decompress(model, data + b"\0")


def _rewrite_header(data: bytes, offset: int, fmt: str, value) -> bytes:
    """Change one header field and re-seal the header CRC, so the named check (not the CRC) must catch it."""
    import struct
    import zlib

    header = codec.read_header(data)
    raw = bytearray(data)
    struct.pack_into(fmt, raw, offset, value)
    struct.pack_into("<I", raw, header.size - 4, zlib.crc32(bytes(raw[: header.size - 4])))
    return bytes(raw)


def test_wrong_magic_and_version(packed):
    model, _, data = packed
    with pytest.raises(CodecError, match="magic"):
        codec.decompress(model, b"PNG0" + data[4:])
    with pytest.raises(CodecError, match="magic"):
        codec.decompress(model, b"")
    with pytest.raises(CodecError, match="version 3"):
        codec.decompress(model, _rewrite_header(data, 4, "<H", 3))


def test_decoding_mismatch_is_reported_not_returned(packed):
    """If the decoder's floats differed from the encoder's, the image checksum stops a wrong result."""
    model, _, data = packed
    header = codec.read_header(data)
    offset = 60 + 16 * header.count + 8  # the first batch's CRC of its tiles' values
    bad = _rewrite_header(data, offset, "<I", header.batches[0].values_crc ^ 1)
    with pytest.raises(CodecError, match="checksum"):
        codec.decompress(model, bad)


def test_bad_inputs():
    model = tiny_pixelcnn((1, 3, 3), 4)
    with pytest.raises(ValueError, match="integers"):
        codec.compress(model, torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="values"):
        codec.compress(model, torch.full((2, 1, 3, 3), 4))
    with pytest.raises(ValueError, match="shape"):
        codec.compress(model, torch.zeros(2, 2, 3, 3, dtype=torch.long))  # any size, but C channels
    with pytest.raises(ValueError, match="unconditional"):
        codec.compress(model, torch.zeros(2, 1, 3, 3, dtype=torch.long), cond=torch.zeros(2, dtype=torch.long))
