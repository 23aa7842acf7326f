"""Output heads: exact normalization over every value, agreement with a reference DMoL, the sampler, and the
per-channel conditionals ``channel_log_probs``."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from pixelmodels.heads import (
    LOG_SCALE_MIN,
    CategoricalHead,
    DiscretizedMixLogisticHead,
    build_head,
    dmol_num_params,
)


def random_params(head, n: int, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    """Float64 parameters (n, P) with means around [-1, 1], log-scales on both sides of the floor."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, head.num_params, generator=g, dtype=torch.float64) * spread).contiguous()


def pixel_log_prob(head, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Joint log p of single pixels: params (N, P), x (N, C) -> (N,), through the head's ``log_prob``."""
    return head.log_prob(params[:, :, None, None], x[:, :, None, None]).sum(dim=(1, 2, 3))


def reference_dmol_log_prob(params: torch.Tensor, x: torch.Tensor, k: int, m: int) -> torch.Tensor:
    """openai/pixel-cnn ``discretized_mix_logistic_loss`` for one RGB pixel, written out directly.

    ``params`` in *our* layout (N, 10M) are first rearranged into the reference's: M logits, then per channel
    [means, log-scales, coefficients], where the coefficient slot of channel 0, 1, 2 holds (G<-R), (B<-R), (B<-G).
    Plain sigmoid differences in float64 (the tails' cancellation does not matter for moderate parameters).
    """
    n = params.shape[0]
    logits = params[:, :m]
    means, log_scales, coeffs = params[:, m:].view(n, 3, 3, m).unbind(1)  # each (N, 3, M)
    ref = torch.cat([means, log_scales, coeffs], dim=2)  # (N, 3, 3M): the reference's per-channel blocks
    means, log_scales, coeffs = ref[:, :, :m], ref[:, :, m : 2 * m].clamp(min=-7.0), torch.tanh(ref[:, :, 2 * m :])
    xs = (x.double() * 2 / (k - 1) - 1).unsqueeze(-1)  # (N, 3, 1)
    m2 = means[:, 1] + coeffs[:, 0] * xs[:, 0]
    m3 = means[:, 2] + coeffs[:, 1] * xs[:, 0] + coeffs[:, 2] * xs[:, 1]
    means = torch.stack([means[:, 0], m2, m3], dim=1)
    centered = xs - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = torch.sigmoid(inv_stdv * (centered + 1.0 / (k - 1)))
    cdf_min = torch.sigmoid(inv_stdv * (centered - 1.0 / (k - 1)))
    v = x.unsqueeze(-1)
    probs = torch.where(v == 0, cdf_plus, torch.where(v == k - 1, 1 - cdf_min, cdf_plus - cdf_min))
    return torch.logsumexp(torch.log(probs).sum(1) + F.log_softmax(logits, dim=-1), dim=-1)


def test_parameter_count():
    assert dmol_num_params(3, 10) == 100  # the paper's 10 * nr_mix
    assert dmol_num_params(1, 5) == 15
    assert dmol_num_params(4, 2) == 2 * (1 + 8 + 6)
    assert build_head("dmol", 3, 256, num_mixtures=4).num_params == 40
    with pytest.raises(ValueError, match="num_mixtures"):
        DiscretizedMixLogisticHead(3, 256, num_mixtures=0)
    with pytest.raises(ValueError, match="unknown head 'dmoll'"):
        build_head("dmoll", 3, 256)


def test_dmol_gray_k256_sums_to_one_over_every_value():
    head = DiscretizedMixLogisticHead(1, 256, num_mixtures=4)
    params = random_params(head, 8, spread=2.0)  # 8 different distributions, log-scales from ~-4 to ~4
    values = torch.arange(256).view(1, 256, 1).expand(8, 256, 1).reshape(-1, 1)
    logp = pixel_log_prob(head, params.repeat_interleave(256, 0), values).view(8, 256)
    torch.testing.assert_close(logp.logsumexp(dim=1).exp(), torch.ones(8, dtype=torch.float64), rtol=0, atol=1e-10)


def chain_rule_total(head, params: torch.Tensor, chunk: int) -> float:
    """sum over all K^3 RGB values of p(x), exactly, as sum_r p(r) sum_g p(g|r) sum_b p(b|r,g): the inner sums
    take every value of a channel at once from ``channel_log_probs`` (shown equal to ``log_prob`` below), for
    every (r, g) prefix, so the cost is K^3 evaluations of one channel instead of K^3 * 3."""
    k = head.num_levels
    logp_r = head.channel_log_probs(params, torch.zeros(1, 3, dtype=torch.long), 0)[0]  # (K,)
    rg = torch.zeros(k, 3, dtype=torch.long)
    rg[:, 0] = torch.arange(k)
    logp_g = head.channel_log_probs(params.expand(k, -1), rg, 1)  # (K r, K g)
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, k, chunk):
        rs = torch.arange(start, min(start + chunk, k))
        prefix = torch.stack(torch.meshgrid(rs, torch.arange(k), indexing="ij"), -1).view(-1, 2)  # (chunk*K, 2)
        x = F.pad(prefix, (0, 1))  # b = 0: channel 2's distribution does not read it
        logp_b = head.channel_log_probs(params.expand(len(x), -1), x, 2).view(len(rs), k, k)  # (r, g, b)
        total = total + (logp_r[rs, None, None] + logp_g[rs, :, None] + logp_b).double().exp().sum()
    return total.item()


def test_dmol_rgb_sums_to_one_over_all_values_k64():
    head = DiscretizedMixLogisticHead(3, 64, num_mixtures=2)
    assert abs(chain_rule_total(head, random_params(head, 1, seed=1, spread=1.5), chunk=64) - 1.0) < 1e-9


@pytest.mark.slow
def test_dmol_rgb_k256_sums_to_one_over_all_256_cubed_values():
    """All 2^24 RGB values at K = 256 (~20 s on a loaded 2-core CPU, hence slow; the K=64 version runs by default)."""
    head = DiscretizedMixLogisticHead(3, 256, num_mixtures=2)
    assert abs(chain_rule_total(head, random_params(head, 1, seed=1, spread=1.5), chunk=16) - 1.0) < 1e-9


@pytest.mark.parametrize("k", [2, 3, 16])
def test_dmol_rgb_log_prob_sums_to_one_directly(k):
    head = DiscretizedMixLogisticHead(3, k, num_mixtures=3)
    params = random_params(head, 1, seed=k)
    x = torch.tensor(list(itertools.product(range(k), repeat=3)))
    logp = pixel_log_prob(head, params.expand(len(x), -1), x)
    assert abs(logp.logsumexp(0).exp().item() - 1.0) < 1e-10


def test_dmol_matches_the_reference_implementation():
    k, m = 256, 5
    head = DiscretizedMixLogisticHead(3, k, num_mixtures=m)
    params = random_params(head, 500, seed=2)
    x = torch.randint(k, (500, 3), generator=torch.Generator().manual_seed(3))
    x[:50, 0], x[50:100, 1], x[100:150, 2] = 0, k - 1, 0  # plenty of edge bins
    torch.testing.assert_close(pixel_log_prob(head, params, x), reference_dmol_log_prob(params, x, k, m))


def test_dmol_conditionals_match_brute_force_marginals_of_the_reference():
    """log_prob's per-channel entries are log p(x_c | x_<c): brute force by summing the reference joint over
    every value of the later channels."""
    k, m = 5, 3
    head = DiscretizedMixLogisticHead(3, k, num_mixtures=m)
    params = random_params(head, 1, seed=4)
    space = torch.tensor(list(itertools.product(range(k), repeat=3)))  # (K^3, 3)
    joint = reference_dmol_log_prob(params.expand(len(space), -1), space, k, m).view(k, k, k)
    marg_r = joint.logsumexp(dim=(1, 2))
    marg_rg = joint.logsumexp(dim=2)
    expected = torch.stack(
        [
            marg_r[:, None, None].expand(k, k, k),
            (marg_rg - marg_r[:, None])[:, :, None].expand(k, k, k),
            joint - marg_rg[:, :, None],
        ],
        dim=-1,
    ).reshape(-1, 3)
    got = head.log_prob(params.expand(len(space), -1)[:, :, None, None], space[:, :, None, None])[:, :, 0, 0]
    torch.testing.assert_close(got, expected)


def test_dmol_edge_cases_floor_and_underflow():
    k = 256
    head = DiscretizedMixLogisticHead(1, k, num_mixtures=1)
    values = torch.arange(k).view(-1, 1)

    def probs(mean, log_scale, dtype=torch.float32):
        params = torch.tensor([[0.0, mean, log_scale]], dtype=dtype).expand(k, -1)
        return pixel_log_prob(head, params, values)

    # a mean far beyond the last level: nearly all mass in the edge bin K-1, the tail bins finite, no NaN
    far = probs(3.0, LOG_SCALE_MIN)
    assert torch.isfinite(far).all() and far[-1].exp() > 0.999 and far[0] < -1000
    # the log-scale floor: anything below it is the floor
    torch.testing.assert_close(probs(0.1, -30.0), probs(0.1, LOG_SCALE_MIN))
    # the tails, where sigmoid differences cancel in float32: the log-space form still gives exact values
    tail = probs(-1.0, -3.0)
    assert torch.isfinite(tail).all() and abs(tail.logsumexp(0).exp().item() - 1) < 1e-5
    assert (tail[1:-1].diff() < 0).all()  # strictly decreasing away from the mean, no flat 1e-12 floor
    # log-scale so large the bin width underflows: the bin-centre density fallback, still normalized
    flat = probs(0.0, 200.0)
    assert torch.isfinite(flat).all() and abs(flat.logsumexp(0).exp().item() - 1) < 1e-5
    assert flat[0].exp().item() == pytest.approx(0.5, abs=1e-6)


def test_dmol_gradients_are_finite_at_the_edges():
    head = DiscretizedMixLogisticHead(3, 256, num_mixtures=2)
    params = torch.tensor([[0.0, 1.0] + [5.0, -5.0] * 3 + [-30.0, 300.0] * 3 + [0.5, -0.5] * 3])
    params = params.view(1, -1, 1, 1).repeat(4, 1, 1, 1).requires_grad_(True)
    x = torch.tensor([[0, 0, 0], [255, 255, 255], [128, 0, 255], [1, 254, 7]]).view(4, 3, 1, 1)
    head.log_prob(params, x).sum().backward()
    assert torch.isfinite(params.grad).all()


@pytest.mark.parametrize("k", [2, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_dmol_gradients_are_finite_for_extreme_parameters(k, channels):
    """Tiny and huge scales with means far outside [-1, 1], every value: finite log-probabilities and gradients.
    (K=2 reached NaN gradients in training: its likelihood depends only on mean / scale, so the log-scale drifts
    up until the bin-width and log1mexp gradients were inf - inf and 0 * inf.)"""
    head = DiscretizedMixLogisticHead(channels, k, num_mixtures=1)
    extreme_means, extreme_log_scales = [-1e3, -3.0, 0.0, 0.7, 3.0, 1e3], [-30.0, -7.0, 0.0, 20.0, 80.0, 200.0]
    grid = torch.tensor(list(itertools.product(extreme_means, extreme_log_scales)))
    means, log_scales = grid.repeat_interleave(2, 0).T  # (G,) each; every (mean, log-scale) pair twice
    values = torch.tensor([0, k - 1]).repeat(len(grid))  # the two edge bins
    if k > 2:
        values = torch.cat([values, torch.full((len(grid),), 1), torch.full((len(grid),), k // 2)])
        means, log_scales = means.repeat(2), log_scales.repeat(2)
    n = len(values)
    params = torch.zeros(n, head.num_params)
    params[:, 1 : 1 + channels] = means[:, None]
    params[:, 1 + channels : 1 + 2 * channels] = log_scales[:, None]
    params[:, 1 + 2 * channels :] = 3.0  # strong channel coupling
    params.requires_grad_(True)
    x = values[:, None].expand(n, channels)
    log_p = head.log_prob(params[:, :, None, None], x[:, :, None, None])
    log_p.sum().backward()
    assert torch.isfinite(log_p).all()
    assert torch.isfinite(params.grad).all()


@pytest.mark.parametrize("name", ["categorical", "dmol"])
def test_channel_log_probs_sum_to_one_and_agree_with_log_prob(name):
    c, k = 3, 7
    head = build_head(name, c, k)
    params = random_params(head, 64, seed=5)
    x = torch.randint(k, (64, c), generator=torch.Generator().manual_seed(6))
    per_channel = head.log_prob(params[:, :, None, None], x[:, :, None, None])[:, :, 0, 0]  # (B, C)
    for channel in range(c):
        logp = head.channel_log_probs(params, x, channel)  # (B, K)
        assert logp.shape == (64, k)
        torch.testing.assert_close(logp.logsumexp(-1), torch.zeros(64, dtype=logp.dtype), atol=1e-6, rtol=0)
        torch.testing.assert_close(logp.gather(1, x[:, channel : channel + 1]).squeeze(1), per_channel[:, channel])
        # it reads only the earlier channels
        changed = x.clone()
        changed[:, channel:] = (changed[:, channel:] + 1) % k
        torch.testing.assert_close(head.channel_log_probs(params, changed, channel), logp)


def empirical_pixel_tv(samples: torch.Tensor, log_p: torch.Tensor, k: int) -> float:
    c = samples.shape[1]
    index = (samples * k ** torch.arange(c - 1, -1, -1)).sum(1)
    counts = torch.bincount(index, minlength=k**c).double()
    return 0.5 * (counts / counts.sum() - log_p.exp()).abs().sum().item()


def test_dmol_sampler_matches_log_prob():
    k, n = 4, 20000
    head = DiscretizedMixLogisticHead(3, k, num_mixtures=3)
    params = random_params(head, 1, seed=7).float()
    space = torch.tensor(list(itertools.product(range(k), repeat=3)))
    log_p = pixel_log_prob(head, params.double().expand(len(space), -1), space)
    samples = head.sample(
        params.expand(n, -1), torch.zeros(n, 3, dtype=torch.long), (0, 1, 2), generator=torch.Generator().manual_seed(0)
    )
    # 20k draws over 64 outcomes: sampling noise gives TV ~ 0.015
    assert empirical_pixel_tv(samples, log_p, k) < 0.03


def test_dmol_sampler_completion_uses_the_component_posterior():
    """Channel 1 known, channels 0 and 2 drawn: x0 ~ p(x0), x2 ~ p(x2 | x0, x1) (ancestral completion)."""
    k, n = 4, 20000
    head = DiscretizedMixLogisticHead(3, k, num_mixtures=3)
    params = random_params(head, 1, seed=8, spread=2.0).float()
    known = torch.zeros(n, 3, dtype=torch.long)
    known[:, 1] = 2
    keep = torch.tensor([False, True, False]).expand(n, 3)
    samples = head.sample(params.expand(n, -1), known, (0, 1, 2), keep, generator=torch.Generator().manual_seed(1))
    assert (samples[:, 1] == 2).all()
    space = torch.tensor([[a, 2, b] for a in range(k) for b in range(k)])
    per_channel = head.log_prob(params.double().expand(len(space), -1)[:, :, None, None], space[:, :, None, None])
    log_p = per_channel[:, 0, 0, 0] + per_channel[:, 2, 0, 0]  # p(x0) p(x2 | x0, x1=2)
    index = samples[:, 0] * k + samples[:, 2]
    counts = torch.bincount(index, minlength=k * k).double()
    assert 0.5 * (counts / n - log_p.exp()).abs().sum().item() < 0.03


def test_dmol_temperature_sharpens():
    k, n = 256, 4000
    head = DiscretizedMixLogisticHead(1, k, num_mixtures=2)
    params = torch.tensor([[1.0, 0.0, -0.5, 0.5, -2.0, -2.0]]).expand(n, -1)  # weights e:1, means -0.5, 0.5
    start = torch.zeros(n, 1, dtype=torch.long)

    def draw(t):
        return head.sample(params, start, (0,), temperature=t, generator=torch.Generator().manual_seed(2)).float()

    assert draw(0.2).std() < 0.5 * draw(1.0).std()


def test_categorical_channel_log_probs_is_the_softmax_of_its_logits():
    head = CategoricalHead(2, 5)
    params = torch.randn(3, 10)
    x = torch.randint(5, (3, 2))
    torch.testing.assert_close(head.channel_log_probs(params, x, 1), F.log_softmax(params[:, 5:], dim=-1))


def test_dmol_param_indices_cover_exactly_what_each_channel_reads():
    head = DiscretizedMixLogisticHead(3, 16, num_mixtures=2)
    params = random_params(head, 4, seed=9).requires_grad_(True)
    x = torch.randint(16, (4, 3), generator=torch.Generator().manual_seed(9))
    per_channel = head.log_prob(params[:, :, None, None], x[:, :, None, None])[:, :, 0, 0]
    covered = set()
    for c in range(3):
        (grad,) = torch.autograd.grad(per_channel[:, c].sum(), params, retain_graph=True)
        read = set((grad.abs().sum(0) > 0).nonzero().flatten().tolist())
        assert read <= set(head.param_indices(c)), c
        covered |= set(head.param_indices(c))
    assert covered == set(range(head.num_params))
