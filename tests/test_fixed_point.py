"""The parallel fixed-point (Jacobi) sampler: with the randomness drawn ahead in the ancestral order, it gives
exactly the images of ancestral (naive) sampling with the same seed, for every model in tests/model_variants.py."""

from __future__ import annotations

import pytest
import torch

import pixelmodels
from model_variants import VARIANTS
from pixelmodels.sampling import fixed_point_sample

SPACES = [((1, 4, 4), 4), ((3, 2, 4), 5)]
CASES = [(v, shape, k) for v in VARIANTS for shape, k in SPACES if v.accepts(shape, k)]


def sharpened(variant, shape, k):
    """A variant with larger weights than at initialisation, so each pixel depends strongly on its context (an
    untrained model converges in 2-3 iterations, which would leave the iteration itself barely tested)."""
    torch.manual_seed(0)
    model = pixelmodels.build(variant.name, image_shape=shape, num_levels=k, **variant.hparams).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize("variant,shape,k", CASES, ids=[f"{v.id}-{'x'.join(map(str, s))}" for v, s, _ in CASES])
def test_fixed_point_equals_ancestral_sampling_with_the_same_noise(variant, shape, k):
    model = sharpened(variant, shape, k)
    if not model.supports_fixed_point:
        with pytest.raises(ValueError, match="fixed-point"):
            model.sample(2, method="fixed_point")
        return
    g = torch.Generator().manual_seed(3)
    known = torch.randint(k, (3, *shape), generator=g)
    mask = torch.rand(3, *shape, generator=g) < 0.3
    raster = variant.name != "spn" or variant.hparams.get("scale") == 1  # SPN with one slice: a raster order
    for kwargs in [{}, dict(known=known, known_mask=mask, temperature=0.7)] + [dict(block_rows=1)] * raster:
        stats: dict = {}
        fixed = fixed_point_sample(model, 3, generator=torch.Generator().manual_seed(1), stats=stats, **kwargs)
        kwargs.pop("block_rows", None)
        naive = model.sample(3, method="naive", generator=torch.Generator().manual_seed(1), **kwargs)
        assert torch.equal(fixed, naive)
        assert stats["converged"] and 1 <= stats["iterations"] <= len(model.order())
    if not raster:
        with pytest.raises(ValueError, match="raster"):
            fixed_point_sample(model, 1, block_rows=1)


def test_every_single_network_variant_supports_it():
    """Only models without one network over the whole order (SPN depth upscaling, staged models) opt out."""
    supported = {v.id for v in VARIANTS if pixelmodels.build(v.name, (1, 2, 2), 4, **v.hparams).supports_fixed_point}
    single = {v.id for v in VARIANTS if v.name != "staged" and not v.hparams.get("depth_upscaling_bits")}
    assert single <= supported
    assert not supported & {v.id for v in VARIANTS if v.hparams.get("depth_upscaling_bits")}


def test_conditional_models_and_the_sample_method():
    """Labels and a spatial map (cropped with the rows in the block variant)."""
    model = pixelmodels.build(
        "gated_pixelcnn", (1, 5, 4), 3, hidden_channels=6, num_layers=2, num_classes=3, cond_channels=2
    ).eval()
    torch.nn.init.normal_(model.stack.label_embedding.weight)
    g = torch.Generator().manual_seed(0)
    cond = model.check_cond({"labels": torch.tensor([0, 1, 2]), "map": torch.randn(3, 2, 5, 4, generator=g)}, 3)
    naive = model.sample(3, cond=cond, method="naive", generator=torch.Generator().manual_seed(2))
    fixed = model.sample(3, cond=cond, method="fixed_point", generator=torch.Generator().manual_seed(2))
    assert torch.equal(fixed, naive)
    for rows in (2, 3):
        stats: dict = {}
        blocks = fixed_point_sample(
            model, 3, cond, block_rows=rows, generator=torch.Generator().manual_seed(2), stats=stats
        )
        assert torch.equal(blocks, naive) and stats["work"] < stats["iterations"]


def test_an_unconverged_iterate_is_reported():
    """Stopped after one pass, a sharpened PixelCNN++ is not at its fixed point yet: stats say so."""
    variant = next(v for v in VARIANTS if v.name == "pixelcnn_pp")
    model = sharpened(variant, (1, 4, 4), 4)
    stats: dict = {}
    one = fixed_point_sample(model, 4, generator=torch.Generator().manual_seed(1), max_iterations=1, stats=stats)
    naive = model.sample(4, method="naive", generator=torch.Generator().manual_seed(1))
    assert stats == {"iterations": 1, "work": 1.0, "converged": False} and not torch.equal(one, naive)


@pytest.mark.parametrize("head", ["categorical", "dmol"])
def test_one_long_draw_equals_the_step_by_step_draws(head):
    """The CPU shortcut of the noise draw relies on the generator filling tensors in order: check it here."""
    from pixelmodels.sampling import _step_noise

    model = pixelmodels.build("pixelcnn", (3, 3, 4), 16, hidden_channels=6, num_layers=1, head=head)
    order = model.order()
    fast = _step_noise(model.head, order, 5, torch.Generator().manual_seed(7), "cpu")
    g = torch.Generator().manual_seed(7)
    per_step = [model.head.noise(5, channels, g) for _, _, channels in order]
    for c, parts in enumerate(fast):
        for k, part in enumerate(parts):
            assert torch.equal(part, torch.stack([step[c][k] for step in per_step]))
