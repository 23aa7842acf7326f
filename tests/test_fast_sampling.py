"""Cached (fast) sampling of convolutional models: every step's parameters equal the full forward pass on the
final image, and fast and naive sampling draw the same images from the same seed."""

from __future__ import annotations

import pytest
import torch

import pixelmodels
from pixelmodels.nn.cache import ConvCache, PixelRunner
from pixelmodels.nn.gated import GatedStackStepper
from pixelmodels.nn.masked import MaskedConv2d
from pixelmodels.nn.shifted_cache import PixelCNNPPStepper, RowCache
from pixelmodels.sampling import check_raster

MODELS = {
    "pixelcnn": dict(hidden_channels=6, num_layers=2, kernel_size=3, first_kernel_size=5),
    "gated_pixelcnn": dict(hidden_channels=6, num_layers=3, kernel_size=3),
    "gated_pixelcnn_k5": dict(hidden_channels=6, num_layers=2, kernel_size=5),
    "gated_pixelcnn_cond": dict(hidden_channels=6, num_layers=2, kernel_size=3, num_classes=3, cond_channels=2),
}
SHAPES = [((1, 5, 6), 4), ((3, 4, 5), 5)]


_PP = dict(hidden_channels=6, num_layers=1, num_mixtures=2, dropout=0.0)
#: PixelCNN++ (cached: nn/shifted_cache.py): every resolution count, both heads, labels, and dropout (eval mode)
PP_MODELS = {
    "pixelcnn_pp": _PP,
    "pixelcnn_pp_deep": _PP | dict(num_layers=2, num_resolutions=4),
    "pixelcnn_pp_one_level": _PP | dict(num_layers=0, num_resolutions=1),
    "pixelcnn_pp_categorical": _PP | dict(head="categorical", num_resolutions=2),
    "pixelcnn_pp_cond": _PP | dict(num_classes=3, dropout=0.5),
}
PP_SHAPES = [((3, 8, 8), 256), ((1, 6, 10), 2), ((3, 5, 7), 4)]


def build(key: str, shape, k):
    hparams = MODELS.get(key) or PP_MODELS[key]
    name = "pixelcnn_pp" if key in PP_MODELS else key.removesuffix("_k5").removesuffix("_cond")
    model = pixelmodels.build(name, image_shape=shape, num_levels=k, **hparams).eval()
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "class_bias", None) is not None:
                torch.nn.init.normal_(module.class_bias.weight)  # zero at init: give the labels an effect
    return model


def conditioning(model, n: int, g: torch.Generator):
    if model.num_classes is None:
        return None
    if not getattr(model, "cond_channels", 0):
        return torch.randint(model.num_classes, (n,), generator=g)
    cond = {
        "labels": torch.randint(model.num_classes, (n,), generator=g),
        "map": torch.randn(n, 2, *model.image_shape[1:], generator=g),
    }
    return model.check_cond(cond, n)


def trace_errors(model, images, trace, cond) -> float:
    """Largest difference between each step's parameters (for the channels drawn there) and the full pass."""
    full = model.network(model.scale_input(images), cond)  # (B, P, H, W)
    order = model.order()
    assert [index for index, _ in trace] == list(range(len(order)))
    worst = 0.0
    for (_, params), (h, w, channels) in zip(trace, order, strict=True):
        idx = [i for c in channels for i in model.head.param_indices(c)]
        worst = max(worst, (params[:, idx] - full[:, idx, h, w]).abs().max().item())
    return worst


CASES = [(key, shape, k) for key in MODELS for shape, k in SHAPES] + [
    (key, shape, k) for key in PP_MODELS for shape, k in PP_SHAPES
]
CASE_IDS = [f"{key}-{'x'.join(map(str, shape))}-K{k}" for key, shape, k in CASES]
# the naive sampler costs a full pass per step: each PixelCNN++ variant on one of the shapes
SAME_IMAGES = CASES[: len(MODELS) * len(SHAPES)] + [
    (key, *PP_SHAPES[i % len(PP_SHAPES)]) for i, key in enumerate(PP_MODELS)
]


@pytest.mark.parametrize("key,shape,k", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("with_known", [False, True], ids=["free", "known"])
def test_every_step_matches_the_full_forward_pass(key, shape, k, with_known):
    model = build(key, shape, k)
    g = torch.Generator().manual_seed(0)
    n = 3
    cond = conditioning(model, n, g)
    known = mask = None
    if with_known:
        known = torch.randint(k, (n, *shape), generator=g)
        mask = torch.rand(n, *shape, generator=g) < 0.4
    trace: list = []
    with torch.no_grad():
        images = model.fast_sample(n, cond, known, mask, generator=g, trace=trace)
        assert trace_errors(model, images, trace, cond) < 1e-4
    if with_known:
        assert torch.equal(images[mask], known[mask])


def test_trace_check_detects_a_stale_cache():
    """The comparison must fail when a cache misses the final value of a pixel (no commit after drawing)."""
    model = build("pixelcnn", (1, 5, 6), 4)
    original = ConvCache.write
    count: dict = {}

    def write_without_commit(self, i, j, value):
        # the first layer's cache receives each pixel twice (step, then commit): drop the commits
        key = (id(self), i, j)
        count[key] = count.get(key, 0) + 1
        if count[key] == 1:
            original(self, i, j, value)

    ConvCache.write = write_without_commit
    try:
        trace: list = []
        with torch.no_grad():
            images = model.fast_sample(3, None, None, None, generator=torch.Generator().manual_seed(0), trace=trace)
            assert trace_errors(model, images, trace, None) > 1e-3
    finally:
        ConvCache.write = original


@pytest.mark.parametrize("key,shape,k", SAME_IMAGES, ids=[CASE_IDS[CASES.index(case)] for case in SAME_IMAGES])
def test_fast_and_naive_draw_the_same_images(key, shape, k):
    """Both samplers consume the generator identically (one uniform draw per step); their logits differ only
    by float rounding (~1e-7), so the drawn images are equal unless a Gumbel-perturbed argmax is a near-tie."""
    model = build(key, shape, k)
    cond = conditioning(model, 4, torch.Generator().manual_seed(1))
    fast = model.sample(4, cond=cond, method="fast", generator=torch.Generator().manual_seed(5))
    naive = model.sample(4, cond=cond, method="naive", generator=torch.Generator().manual_seed(5))
    assert torch.equal(fast, naive)
    assert model.supports_fast_sampling


def test_pixelcnn_pp_trace_detects_a_broken_schedule(monkeypatch):
    """The comparison must fail when the lower resolutions advance at every row and column (off schedule)."""
    model = build("pixelcnn_pp", (1, 6, 10), 2)
    monkeypatch.setattr(PixelCNNPPStepper, "due", lambda self, i: list(range(self.levels)))
    trace: list = []
    with torch.no_grad():
        images = model.fast_sample(3, None, None, None, generator=torch.Generator().manual_seed(0), trace=trace)
        assert trace_errors(model, images, trace, None) > 1e-3


def test_pixelcnn_pp_caches_are_kernel_tall():
    """Every cache of the PixelCNN++ stepper holds as many rows as its kernel is tall, whatever the image height."""
    model = build("pixelcnn_pp_deep", (3, 32, 8), 4)
    stepper = PixelCNNPPStepper(model, 2, None)
    caches = [stepper.u_init, stepper.ul_init_above, stepper.ul_init_left]
    caches += [c for c in stepper.downsample_u + stepper.downsample_ul if c is not None]
    for blocks in stepper.up_u + stepper.up_ul + stepper.down_u + stepper.down_ul:
        caches += [c for blk in blocks for c in (blk.conv_in, blk.conv_out)]
    assert len(caches) == 3 + 2 * 3 + 2 * 2 * (2 * 4 + 2 + 3 * 3)  # inputs, resampling, 2 convs per block
    for cache in caches:
        rows = cache.buffer.shape[2] if isinstance(cache, RowCache) else cache.buffer.shape[1]
        assert rows <= 2


def test_auto_uses_the_fast_sampler(monkeypatch):
    model = build("gated_pixelcnn", (1, 3, 3), 2)
    calls = []
    monkeypatch.setattr(type(model), "fast_sample", lambda self, *a, **kw: calls.append(1) or torch.zeros(1))
    model.sample(2)
    assert calls == [1]


def test_conv_cache_row_and_pixel_outputs_match_conv():
    conv = MaskedConv2d(3, 6, 5, "B", 3)
    x = torch.randn(2, 3, 6, 7)
    full = conv(x)
    cache = ConvCache.for_masked(conv, 2, 6, 7)
    for i in range(6):
        cache.write_row(i, x[:, :, i])
        torch.testing.assert_close(cache.output_row(i), full[:, :, i])
        for j in range(7):
            torch.testing.assert_close(cache.output_at(i, j), full[:, :, i, j])


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_kernel_tall_cache_written_pixel_by_pixel_matches_conv(mask_type):
    """A kernel-tall cache (3 rows for a 5x5 mask) written one pixel at a time, each output read right after its
    pixel is written, equals the full convolution."""
    conv = MaskedConv2d(3, 6, 5, mask_type, 3)
    x = torch.randn(2, 3, 9, 4)
    full = conv(x)
    cache = ConvCache.for_masked(conv, 2, 9, 4)
    assert cache.buffer.shape[2] == 3
    for i in range(9):
        for j in range(4):
            torch.testing.assert_close(cache.step(i, j, x[:, :, i, j]), full[:, :, i, j])
    with pytest.raises(ValueError, match="top to bottom"):
        cache.write(2, 0, x[:, :, 2, 0])


def test_conv_model_caches_are_kernel_tall():
    """PixelCNN and Gated PixelCNN caches hold kernel rows only, not the image height."""
    model = build("pixelcnn", (1, 30, 6), 4)
    run = PixelRunner(2, 30, 6)
    run.cache(model.input_conv)
    for block in model.blocks:
        run.cache(block.body[3])
    assert [c.buffer.shape[2] for c in run._caches.values()] == [3, 2, 2]  # 5x5 mask A, then 3x3 mask B
    gated = build("gated_pixelcnn_k5", (1, 30, 6), 4)
    stepper = GatedStackStepper(gated.stack, 2, 30, 6)
    assert [c.buffer.shape[2] for c in stepper.v_caches + stepper.h_caches] == [3, 3, 1, 1]


def test_pixel_runner_rejects_unknown_modules():
    with pytest.raises(TypeError, match="one pixel at a time"):
        PixelRunner(1, 2, 2)(torch.nn.BatchNorm2d(3), torch.zeros(1, 3), 0, 0)


def test_cached_sampler_requires_raster_order():
    check_raster([(0, 0, (0,)), (0, 0, (1,)), (0, 1, (0,))], 2, 2)
    with pytest.raises(ValueError, match="raster"):
        check_raster([(0, 0, (0,)), (0, 1, (0,)), (0, 0, (1,))], 2, 2)
    with pytest.raises(ValueError, match="raster"):
        check_raster([(0, 0, (0,)), (1, 0, (0,))], 2, 2)


@pytest.mark.parametrize("key", ["pixelcnn_pp", "pixelcnn_pp_categorical", "pixelcnn_pp_cond"])
def test_codec_fast_path_round_trips_pixelcnn_pp(key):
    """The codec drives the cached sampler unchanged (method 2: every step through ``model.head``)."""
    from pixelmodels import codec

    model = build(key, (3, 5, 7), 8)
    x = torch.randint(8, (3, 3, 5, 7), generator=torch.Generator().manual_seed(0))
    labels = None if model.num_classes is None else torch.tensor([0, 2, 1])
    data = codec.compress(model, x, cond=labels, batch_size=2, method="fast")
    assert codec.read_header(data).method == codec.FAST
    assert torch.equal(codec.decompress(model, data), x)
