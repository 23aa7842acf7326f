"""Subscale Pixel Networks: slicing, depth-upscaling causality and normalization, samplers, slice training.

The generic contract suite (tests/test_contract.py) runs on the SPN variants of tests/model_variants.py; these
tests cover what it cannot: the two-stage order of depth upscaling, the slice utilities and the training path.
"""

from __future__ import annotations

import pytest
import torch

import pixelmodels
from contract import all_images, correlated_data, empirical_tv, fit
from pixelmodels.nn.subscale import earlier_slices, from_slices, to_slices
from pixelmodels.ordering import rank_map

TINY = dict(hidden_channels=6, num_layers=1, context_channels=6, context_layers=1, first_kernel_size=3)
UPSCALINGS = {
    "plain": {},
    "size": dict(size_upscaling=True),
    "depth": dict(depth_upscaling_bits=1),
    "size+depth": dict(size_upscaling=True, depth_upscaling_bits=1),
}


def spn(shape, k, **hparams):
    return pixelmodels.build("spn", image_shape=shape, num_levels=k, **{**TINY, **hparams})


# ----- slicing ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale,shape", [(1, (2, 3, 5)), (2, (3, 4, 6)), (3, (1, 6, 9)), (4, (2, 8, 8))])
def test_slices_are_an_exact_inverse_and_follow_the_subscale_layout(scale, shape):
    x = torch.randint(256, (2, *shape))
    slices = to_slices(x, scale)
    assert slices.shape == (2, scale * scale, shape[0], shape[1] // scale, shape[2] // scale)
    assert torch.equal(from_slices(slices, scale), x)
    for a in range(scale):
        for b in range(scale):
            assert torch.equal(slices[:, a * scale + b], x[:, :, a::scale, b::scale])
    flat = torch.randn(3, scale * scale, 5, 2, 2)
    assert torch.equal(to_slices(from_slices(flat, scale), scale), flat)


def test_slicing_rejects_sizes_not_divisible_by_the_scale():
    with pytest.raises(ValueError, match="divisible"):
        to_slices(torch.zeros(1, 1, 4, 5), 2)
    with pytest.raises(ValueError, match="divisible"):
        spn((1, 6, 6), 2, scale=4)


def test_earlier_slices_zero_the_target_and_later_slices():
    slices = torch.randn(2, 4, 3, 2, 2)
    targets = torch.tensor([[0, 2], [3, 1]])
    ctx = earlier_slices(slices, targets).view(2, 2, 4, 3, 2, 2)
    for b in range(2):
        for j in range(2):
            t = int(targets[b, j])
            assert torch.equal(ctx[b, j, :t], slices[b, :t])
            assert not ctx[b, j, t:].any()


# ----- depth upscaling: causality and normalization -------------------------------------------------------------
def _dependencies(params, idx, inputs, h, w):
    (grad,) = torch.autograd.grad(params[:, idx, h, w].sum(), inputs, retain_graph=True)
    return grad.abs().sum(0) > 0  # (C, H, W)


@pytest.mark.parametrize(
    "shape,size_upscaling", [((1, 4, 4), True), ((3, 4, 4), False)], ids=["gray-size+depth", "rgb-depth"]
)
def test_depth_upscaling_causality_by_gradients(shape, size_upscaling):
    """MSB params depend only on earlier MSBs (subscale order); LSB params on the whole MSB image and on
    earlier LSBs only; both see some of their context."""
    c, h, w = shape
    model = spn(shape, 4, depth_upscaling_bits=1, size_upscaling=size_upscaling)
    msb_stage, lsb_stage = model.stages
    rank = rank_map(model.order(), c, h, w)
    msb = (torch.rand(3, *shape) * 2 - 1).requires_grad_(True)
    lsb = (torch.rand(3, *shape) * 2 - 1).requires_grad_(True)
    params_msb = from_slices(msb_stage(msb), model.scale)  # (B, Pm, H, W)
    params_lsb = from_slices(lsb_stage(lsb, extra=msb), model.scale)  # (B, Pl, H, W)
    for ci in range(c):
        for hi in range(h):
            for wi in range(w):
                before = rank < rank[ci, hi, wi]
                dep = _dependencies(params_msb, msb_stage.head.param_indices(ci), msb, hi, wi)
                assert not (dep & ~before).any(), f"MSB params of {(ci, hi, wi)} see later MSBs"
                assert dep.any() or not before.any(), f"MSB params of {(ci, hi, wi)} ignore their context"
                idx = lsb_stage.head.param_indices(ci)
                dep = _dependencies(params_lsb, idx, lsb, hi, wi)
                assert not (dep & ~before).any(), f"LSB params of {(ci, hi, wi)} see later LSBs"
                assert dep.any() or not before.any(), f"LSB params of {(ci, hi, wi)} ignore earlier LSBs"
                assert _dependencies(params_lsb, idx, msb, hi, wi).any(), "LSB params ignore the MSB image"
    # the LSB stage sees MSBs generated after its own position in the subscale order (the whole MSB image)
    dep_first = _dependencies(params_lsb, lsb_stage.head.param_indices(0), msb, 0, 0)
    assert dep_first[:, 1:, 1:].any()


@pytest.mark.parametrize("upscaling", ["depth", "size+depth"])
def test_depth_network_is_the_two_stages_side_by_side(upscaling):
    model = spn((3, 4, 4), 8, **{**UPSCALINGS[upscaling], "depth_upscaling_bits": 2})
    x = torch.randint(8, (2, 3, 4, 4))
    msb, lsb = model.split_depth(x)
    assert torch.equal(msb * 2 + lsb, x) and msb.max() < 4 and lsb.max() < 2
    scaled_msb, scaled_lsb = msb.float() * 2 / 3 - 1, lsb.float() * 2 - 1
    expected = torch.cat(
        [
            from_slices(model.stages[0](scaled_msb), 2),
            from_slices(model.stages[1](scaled_lsb, extra=scaled_msb), 2),
        ],
        dim=1,
    )
    torch.testing.assert_close(model.network(model.scale_input(x)), expected)
    lp_msb, lp_lsb = model.stage_log_probs(x)
    torch.testing.assert_close(model.log_prob(x), lp_msb + lp_lsb)


@pytest.mark.parametrize("upscaling", ["depth", "size+depth"])
@pytest.mark.parametrize("shape,k,bits", [((1, 2, 2), 4, 1), ((1, 2, 2), 8, 2), ((1, 2, 4), 4, 1)])
def test_depth_upscaling_normalizes_exactly(upscaling, shape, k, bits):
    model = spn(shape, k, **{**UPSCALINGS[upscaling], "depth_upscaling_bits": bits}).eval()
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(all_images(shape, k)).double(), dim=0).exp().item()
    assert abs(total - 1.0) < 1e-4


@pytest.mark.parametrize("upscaling", ["depth", "size+depth"])
def test_depth_upscaling_normalizes_on_rgb_stage_by_stage(upscaling):
    """(3, 2, 2) with K=4 has 4^12 images: check sum p(msb) = 1 over all 2^12 MSB images and
    sum p(lsb | msb) = 1 over all 2^12 LSB images for a few MSB images (log_prob is their sum, tested above)."""
    shape = (3, 2, 2)
    model = spn(shape, 4, **UPSCALINGS[upscaling]).eval()
    bits = all_images(shape, 2)  # (4096, 3, 2, 2)
    with torch.no_grad():
        lp_msb, _ = model.stage_log_probs(bits * 2)
        assert abs(lp_msb.double().logsumexp(0).exp().item() - 1) < 1e-4
        for i in torch.randint(len(bits), (3,)).tolist():
            _, lp_lsb = model.stage_log_probs(bits[i] * 2 + bits)
            assert abs(lp_lsb.double().logsumexp(0).exp().item() - 1) < 1e-4


def test_depth_upscaling_rejects_bad_bit_splits():
    with pytest.raises(ValueError, match="depth_upscaling_bits"):
        spn((1, 4, 4), 2, depth_upscaling_bits=1)
    with pytest.raises(ValueError, match="depth_upscaling_bits"):
        spn((1, 4, 4), 6, depth_upscaling_bits=1)
    with pytest.raises(ValueError, match="depth_upscaling_bits"):
        spn((1, 4, 4), 8, depth_upscaling_bits=3)


@pytest.mark.slow  # ~30 s of CPU; the default suite runs sampler agreement on the S=1 depth variant
@pytest.mark.parametrize("upscaling", ["depth", "size+depth"])
def test_depth_sampler_agrees_with_log_prob(upscaling):
    shape, k = (1, 2, 2), 4
    model = fit(spn(shape, k, **UPSCALINGS[upscaling]), correlated_data(shape, k, 4096), steps=100)
    samples = model.sample(40000, generator=torch.Generator().manual_seed(0))
    # 40k draws over 256 outcomes: noise gives TV ~ 0.02 at most (uniform case); a wrong order is far above
    assert empirical_tv(model, samples) < 0.035


# ----- samplers ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("upscaling", list(UPSCALINGS))
def test_fast_sampler_params_match_the_full_network(upscaling):
    model = spn((3, 4, 4), 4, **UPSCALINGS[upscaling]).eval()
    trace = []
    x = model.fast_sample(3, None, None, None, generator=torch.Generator().manual_seed(1), trace=trace)
    steps = model.order()
    assert [i for i, _ in trace] == list(range(len(steps) * len(model.stages)))
    with torch.no_grad():
        full = model.network(model.scale_input(x))  # (B, P, H, W)
    split = [0, *(s.head.num_params for s in model.stages)]
    for i, params in trace:
        stage, (h, w, channels) = i // len(steps), steps[i % len(steps)]
        expected = full[:, sum(split[: stage + 1]) : sum(split[: stage + 2]), h, w]
        # the parameters drawn at this step (later channels' change once this one is drawn)
        idx = [j for c in channels for j in model.stages[stage].head.param_indices(c)]
        torch.testing.assert_close(params[:, idx], expected[:, idx], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("upscaling", list(UPSCALINGS))
def test_naive_and_fast_samplers_draw_the_same_images(upscaling):
    model = spn((3, 4, 4), 4, **UPSCALINGS[upscaling])
    known = torch.randint(4, (4, 3, 4, 4))
    mask = torch.rand(4, 3, 4, 4) < 0.3
    draws = [
        model.sample(4, known=known, known_mask=mask, method=m, generator=torch.Generator().manual_seed(5))
        for m in ("naive", "fast")
    ]
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0][mask], known[mask])


# ----- training on slices ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("upscaling", list(UPSCALINGS))
def test_slice_log_probs_sum_to_the_exact_log_prob(upscaling):
    model = spn((3, 4, 4), 4, **UPSCALINGS[upscaling])
    x = torch.randint(4, (3, 3, 4, 4))
    per_slice = torch.stack(
        [sum(lp.sum(1) for lp in model._slice_log_probs(x, None, torch.full((3, 1), t))) for t in range(4)]
    )  # (T, B): each is log p(slice t | earlier slices), the training estimate / S^2
    torch.testing.assert_close(per_slice.sum(0), model.log_prob(x), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(model.estimate_log_prob(x, num_slices=4), model.log_prob(x))
    # train_slices=1: the estimate is S^2 times one of the slice terms
    estimate = model.estimate_log_prob(x, num_slices=1, generator=torch.Generator().manual_seed(0))
    assert all(torch.isclose(4 * per_slice[:, b], estimate[b], atol=1e-4).any() for b in range(3))


def test_training_loss_runs_the_decoder_on_one_slice_per_image():
    model = spn((1, 8, 8), 4, scale=4, train_slices=1)
    rows = []
    model.stages[0].decoder.register_forward_hook(lambda mod, inp, out: rows.append(tuple(inp[0].shape)))
    x = torch.randint(4, (5, 1, 8, 8))
    loss = model.training_loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert rows == [(5, 1, 2, 2)]  # 5 images x 1 slice of 2x2, not 5 x 16 slices
    assert loss.dim() == 0 and loss.item() > 0
    assert all(p.grad is not None for p in model.stages[0].decoder.parameters())


def test_size_upscaling_models_the_first_slice_without_the_context_network():
    model = spn((1, 4, 4), 4, size_upscaling=True)
    stage = model.stages[0]
    x = torch.randint(4, (2, 1, 4, 4))
    first = stage.log_prob_slices(x, model.scale_input(x), targets=torch.zeros(2, 1, dtype=torch.long)).sum()
    params = [*stage.context.parameters(), *stage.first_decoder.parameters()]
    grads = torch.autograd.grad(first, params, allow_unused=True)
    n_ctx = len(list(stage.context.parameters()))
    assert all(g is None or not g.any() for g in grads[:n_ctx])
    assert any(g is not None and g.any() for g in grads[n_ctx:])
