"""The contract every registered model keeps (DESIGN.md section 2), run over every variant."""

from __future__ import annotations

import pytest
import torch

import pixelmodels
from contract import all_images, build, correlated_data, dependency_violations, empirical_tv, fit
from model_variants import VARIANTS

IDS = [v.id for v in VARIANTS]
CAUSALITY_SPACES = [((1, 4, 4), 2), ((3, 4, 4), 4)]
NORMALIZATION_SPACES = [((1, 2, 2), 2), ((1, 2, 3), 2), ((3, 1, 1), 4), ((3, 2, 2), 2)]


def test_every_model_has_a_variant():
    assert set(pixelmodels.available_models()) <= {v.name for v in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("shape,k", CAUSALITY_SPACES, ids=["gray", "rgb"])
def test_causality_by_gradients(variant, shape, k):
    if variant.skip_causality:
        pytest.skip(variant.skip_causality)
    if not variant.accepts(shape, k):
        pytest.skip(f"{variant.id} does not take shape {shape} with K={k}")
    model = build(variant, shape, k)
    leaks, isolated = dependency_violations(model)
    assert leaks == [], f"outputs depend on inputs not before them: {leaks[:5]}"
    assert isolated == [], f"outputs that see none of their context: {isolated[:5]}"


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("shape,k", NORMALIZATION_SPACES, ids=lambda v: str(v))
def test_exact_normalization(variant, shape, k):
    if not variant.accepts(shape, k):
        pytest.skip(f"{variant.id} does not take shape {shape} with K={k}")
    model = build(variant, shape, k).eval()
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(all_images(shape, k)).double(), dim=0).exp().item()
    assert abs(total - 1.0) < 1e-4, f"probabilities over all {k}^{shape} images sum to {total}"


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("shape,k", [((1, 2, 2), 2), ((3, 1, 1), 4)], ids=["gray", "rgb"])
def test_sampler_agrees_with_log_prob(variant, shape, k):
    if not variant.accepts(shape, k):
        pytest.skip(f"{variant.id} does not take shape {shape} with K={k}")
    model = fit(build(variant, shape, k), correlated_data(shape, k, 4096))
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    # 20k draws over <= 64 outcomes: sampling noise gives TV ~ 0.01; a wrong order gives > 0.1
    # (test_tv_bound_detects_a_wrong_order shows that).
    assert empirical_tv(model, samples) < 0.03


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("method", ["naive", "auto"])
def test_completion_keeps_known_pixels(variant, method):
    shape, k = (3, 4, 4), 4
    if not variant.accepts(shape, k):
        pytest.skip(f"{variant.id} does not take shape {shape} with K={k}")
    model = build(variant, shape, k)
    g = torch.Generator().manual_seed(3)
    known = torch.randint(k, (5, *shape), generator=g)
    mask = torch.rand(5, *shape, generator=g) < 0.5
    out = model.sample(5, known=known, known_mask=mask, method=method, generator=g)
    assert out.shape == (5, *shape) and out.dtype == torch.long
    assert torch.equal(out[mask], known[mask])
    assert out.min() >= 0 and out.max() < k
    # the unknown sub-pixels are drawn, not left at a fill value
    assert len(out[~mask].unique()) > 1


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_sampling_is_reproducible_by_seed(variant):
    shape, k = (1, 4, 4), 4
    model = build(variant, shape, k)
    a = model.sample(4, generator=torch.Generator().manual_seed(7))
    b = model.sample(4, generator=torch.Generator().manual_seed(7))
    c = model.sample(4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_config_round_trip(variant):
    shape, k = (3, 4, 4), 4
    model = build(variant, shape, k)
    clone = pixelmodels.build(**model.config)
    clone.load_state_dict(model.state_dict())
    x = torch.randint(k, (2, *shape))
    model.eval(), clone.eval()
    torch.testing.assert_close(clone.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_bad_inputs_raise_clear_errors(variant):
    shape, k = (1, 4, 4), 4
    model = build(variant, shape, k)
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(torch.zeros(2, 1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model.log_prob(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.log_prob(torch.full((2, 1, 4, 4), 4))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.log_prob(torch.full((2, 1, 4, 4), -1))
    with pytest.raises(ValueError, match="known_mask"):
        model.sample(2, known=torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)
