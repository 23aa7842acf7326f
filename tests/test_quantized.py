"""Integer coding path (``pixelmodels.quantized``): exact tables, decode = teacher forcing, files, portability."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import pixelmodels
from pixelmodels.quantized import IntegerModel, arith, quantize

SRC = Path(pixelmodels.__file__).resolve().parents[1]
TINY = {
    "gated_pixelcnn": {"hidden_channels": 6, "num_layers": 2, "kernel_size": 3},
    "pixelcnn": {"hidden_channels": 6, "num_layers": 1, "kernel_size": 3, "first_kernel_size": 3},
}


def tiny_integer_model(name: str, head: str, shape=(3, 4, 5), levels=16, **extra) -> tuple:
    model = pixelmodels.build(name, image_shape=shape, num_levels=levels, head=head, **TINY[name], **extra).eval()
    x = torch.randint(0, levels, (6, *shape))
    return model, quantize(model, x), x


def decode_tables(q: IntegerModel, x: torch.Tensor, cond=None) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Run the decoder with the true values (what the encoder does); returns its images and every table."""
    seen: list[np.ndarray] = []

    def fn(tables, h, w, c):
        seen.append(tables.copy())
        return x[:, c, h, w].numpy()

    return q.decode(len(x), fn, cond), seen


def table_digest(q: IntegerModel, x: torch.Tensor) -> str:
    """SHA-256 of the teacher-forced tables and of every table the decoder saw."""
    digest = hashlib.sha256(q.frequencies(x).numpy().tobytes())
    for t in decode_tables(q, x)[1]:
        digest.update(t.astype("<i8").tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("head", ["categorical", "dmol"])
@pytest.mark.parametrize("name", ["gated_pixelcnn", "pixelcnn"])
def test_tables_normalized_and_decoder_sees_teacher_forced_tables(name, head):
    model, q, x = tiny_integer_model(name, head)
    freqs = q.frequencies(x)  # (B, C, H, W, K)
    assert freqs.dtype == torch.int64 and freqs.shape == (*x.shape, 16)
    assert (freqs.sum(-1) == 2**q.precision).all() and freqs.min() >= 1
    images, seen = decode_tables(q, x)
    assert torch.equal(images, x)
    c, h, w = x.shape[1:]
    order = [(i, j, ch) for i in range(h) for j in range(w) for ch in range(c)]
    assert len(seen) == len(order)
    for (i, j, ch), tables in zip(order, seen, strict=True):
        assert np.array_equal(tables, freqs[:, ch, i, j].numpy()), (i, j, ch)
    picked = freqs.gather(-1, x.unsqueeze(-1)).squeeze(-1).double()
    assert torch.allclose(q.bits(x), (q.precision - torch.log2(picked)).sum(dim=(1, 2, 3)))
    # the integer model is the float model, to within quantization
    float_bits = -model.log_prob(x).detach().double() / math.log(2)
    assert torch.allclose(q.bits(x), float_bits, rtol=1e-3)


def test_dmol_with_fewer_components_stays_exact_and_close():
    model, q, x = tiny_integer_model("gated_pixelcnn", "dmol", levels=64)
    fast = quantize(model, x, components=3)
    freqs = fast.frequencies(x)
    assert (freqs.sum(-1) == 2**fast.precision).all() and freqs.min() >= 1
    images, seen = decode_tables(fast, x)
    assert torch.equal(images, x) and np.array_equal(seen[-1], freqs[:, 2, -1, -1].numpy())
    assert not torch.equal(freqs, q.frequencies(x)) and fast.fingerprint != q.fingerprint
    assert torch.allclose(fast.bits(x), q.bits(x), rtol=0.05)


def test_class_conditional_gated_tables_follow_labels():
    model, q, x = tiny_integer_model("gated_pixelcnn", "categorical", num_classes=3)
    with torch.no_grad():  # make the labels matter
        model.stack.label_embedding.weight.mul_(50)
    q = quantize(model, x, cond=torch.arange(6) % 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    freqs = q.frequencies(x, labels)
    assert not torch.equal(freqs, q.frequencies(x, torch.zeros(6, dtype=torch.long)))
    no_label = -model.log_prob(x).detach().double() / math.log(2)  # cond=None: the "no label" embedding
    assert torch.allclose(q.bits(x), no_label, rtol=1e-3)
    seen = []

    def fn(tables, h, w, c):
        seen.append((tables.copy(), h, w, c))
        return x[:, c, h, w].numpy()

    assert torch.equal(q.decode(6, fn, labels), x)
    assert all(np.array_equal(t, freqs[:, c, h, w].numpy()) for t, h, w, c in seen)
    float_bits = -model.log_prob(x, labels).detach().double() / math.log(2)
    assert torch.allclose(q.bits(x, labels), float_bits, rtol=1e-3)


def test_save_load_round_trip(tmp_path):
    _, q, x = tiny_integer_model("gated_pixelcnn", "dmol")
    q.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["integer.json", "integer.safetensors"]
    loaded = IntegerModel.load(tmp_path / "m")
    assert loaded.fingerprint == q.fingerprint and len(q.fingerprint) == 64
    assert loaded.config == q.config and json.loads((tmp_path / "m" / "integer.json").read_text()) == q.config
    assert torch.equal(loaded.frequencies(x), q.frequencies(x))
    # the fingerprint covers the tensors: one changed weight changes it
    tensors = load_file(str(tmp_path / "m" / "integer.safetensors"))
    tensors["layers.0.v_conv.weight"][0, 0, 0, 0] += 1
    assert IntegerModel(q.config, tensors).fingerprint != q.fingerprint


def test_frequencies_identical_across_cpu_kernels_and_threads(tmp_path):
    """Tables (teacher-forced and decoder-side) hash the same in processes forced to other kernel sets."""
    models = {
        "gated_dmol": tiny_integer_model("gated_pixelcnn", "dmol", levels=256)[1],
        "pixelcnn_cat": tiny_integer_model("pixelcnn", "categorical")[1],
    }
    x = torch.randint(0, 16, (4, 3, 4, 5))
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    for key, q in models.items():
        q.save(tmp_path / key)
    expected = {key: table_digest(q, x) for key, q in models.items()}
    script = (
        "import json, sys, torch; from safetensors.torch import load_file; "
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_quantized import table_digest; from pixelmodels.quantized import IntegerModel; "
        "root = sys.argv[1]; x = load_file(root + '/x.safetensors')['x']; out = {}\n"
        "for threads in (1, 2):\n"
        "    torch.set_num_threads(threads)\n"
        "    out[threads] = {k: table_digest(IntegerModel.load(root + '/' + k), x) for k in sys.argv[2:]}\n"
        "print(json.dumps({'capability': torch.backends.cpu.get_cpu_capability(), 'digests': out}))"
    )
    runs = {}
    for capability in ("avx2", "default"):  # the parent runs the machine's best kernels (e.g. AVX512), 1 thread
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "PYTHONPATH": str(SRC)}
        cmd = [sys.executable, "-c", script, str(tmp_path), *models]
        runs[capability] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for capability, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["capability"] == capability.upper()
        assert result["digests"] == {"1": expected, "2": expected}, capability


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_tables_equal_cpu_tables():
    _, q, x = tiny_integer_model("gated_pixelcnn", "dmol", levels=256)
    gpu = q.to("cuda")
    assert torch.equal(gpu.frequencies(x).cpu(), q.frequencies(x))
    assert table_digest(gpu, x) == table_digest(q, x)


def test_rate_cost_of_quantization_is_small_on_a_trained_model():
    from pixelmodels.data import load_dataset

    train, valid = load_dataset("photos", split="train", size=8), load_dataset("photos", split="valid", size=8)
    model = pixelmodels.build(
        "gated_pixelcnn",
        image_shape=(3, 8, 8),
        num_levels=256,
        head="dmol",
        hidden_channels=12,
        num_layers=2,
        kernel_size=3,
    )
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(80):
        x = train.images[torch.randint(0, len(train.images), (16,))].long()
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    q = quantize(model, train.images[:128].long())
    held_out = valid.images[:64].long()
    with torch.no_grad():
        float_bits = float(-model.log_prob(held_out).sum()) / math.log(2)
    gap = float(q.bits(held_out).sum()) / float_bits - 1
    print(f"float {float_bits / held_out.numel():.4f} bits/dim, integer costs {100 * gap:+.4f}%")
    assert float_bits / held_out.numel() < 7.0  # it learned something (uniform: 8 bits)
    assert abs(gap) < 0.01


def test_shipped_photo_model_loads_and_codes_a_patch():
    folder = SRC / "pixelmodels" / "pretrained" / "photo-gated"
    if not (folder / "integer.json").is_file():
        pytest.skip("no shipped photo-gated integer model")
    q = IntegerModel.load(folder)
    assert q.image_shape == (3, 32, 32) and q.num_levels == 256
    x = torch.full((1, 3, 32, 32), 128)
    x[..., 16:, :] = 60  # a flat patch with one edge: far below 8 bits/dim
    freqs = q.frequencies(x)
    assert (freqs.sum(-1) == 2**q.precision).all() and freqs.min() >= 1
    assert float(q.bits(x)) / x.numel() < 4


def test_accumulator_bound_is_checked():
    model = pixelmodels.build("pixelcnn", image_shape=(1, 4, 4), num_levels=256, hidden_channels=64, num_layers=1)
    with pytest.raises(arith.BoundError):
        quantize(model.eval(), torch.randint(0, 256, (2, 1, 4, 4)), weight_bits=24, act_bits=24)


def test_unsupported_families_are_refused():
    model = pixelmodels.build("pixelcnn_pp", image_shape=(1, 4, 4), num_levels=4)
    with pytest.raises(ValueError, match="integer coding supports"):
        quantize(model, torch.zeros(1, 1, 4, 4, dtype=torch.long))
    gated = pixelmodels.build(
        "gated_pixelcnn", image_shape=(1, 4, 4), num_levels=4, cond_channels=2, hidden_channels=4, num_layers=1
    )
    with pytest.raises(ValueError, match="spatial map"):
        quantize(gated, torch.zeros(1, 1, 4, 4, dtype=torch.long))


def test_primitives_are_exact():
    table = torch.tensor([0, 10, 30, 70], dtype=torch.int32)
    assert arith.lookup(table, torch.tensor([-9, 5, 6, 7, 8, 20]), lo=5).tolist() == [0, 0, 10, 30, 70, 70]
    values = torch.tensor([0, 1, 2, 3, 2**40, 2**62 - 1])
    assert arith.bit_length(values).tolist() == [int(v).bit_length() for v in values.tolist()]
    w = torch.tensor([[0, 0, 5, 5], [1, 2**30, 3, 0], [1, 1, 1, 0]])
    f = arith.frequencies_from_weights(w, 4)  # 1 + floor(w * 12 / sum(w)), the remainder to the first largest
    assert f.tolist() == [[1, 1, 7, 7], [1, 13, 1, 1], [5, 5, 5, 1]]
    assert arith.frequencies_from_weights(torch.tensor([[1, 1, 1]]), 4).tolist() == [[6, 5, 5]]
