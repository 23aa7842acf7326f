"""The final layer (logits, DMoL means and scales) stays float32 under bf16 autocast."""

import pytest
import torch

import pixelmodels


@pytest.mark.parametrize("name", ["pixelcnn", "row_lstm", "gated_pixelcnn", "pixelcnn_pp"])
def test_bf16_autocast_leaves_the_final_layer_in_float32(name):
    """Under CPU bf16 autocast the head's parameters come out float32 and are not bf16-rounded (rounding the
    DMoL means costs bits/dim at small log-scales), while the layers before the last run in bf16."""
    torch.manual_seed(0)
    hparams = dict(hidden_channels=8, num_layers=1) | (dict(dropout=0.0) if name == "pixelcnn_pp" else {})
    model = pixelmodels.build(name, image_shape=(3, 8, 8), num_levels=256, **hparams).eval()
    x = torch.randint(256, (2, 3, 8, 8))
    inner = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda module, args, out: inner.append(out.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        params = model(x)
    assert inner == [torch.bfloat16]  # autocast is really on
    assert params.dtype == torch.float32
    assert not torch.equal(params, params.bfloat16().float())  # values bf16 cannot represent
