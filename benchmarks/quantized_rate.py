"""What integer coding costs: float vs integer bits/dim of a trained model, bit-width sweep, decode step time.

The float model (EMA weights of a run's best checkpoint) is quantized with ``pixelmodels.quantized.quantize``,
calibrated on random ``photographs`` training crops. Reported, on the same patches for both:
- the float model's exact bits/dim and the integer model's exact code length (``IntegerModel.bits``: what the
  coder spends, frequency floor and 2**precision rounding included) on ``photographs`` validation patches, for
  several (weight bits, activation bits) settings (the tuning set: validation, never Kodak);
- the same for the chosen setting on more validation patches and on the 32x32 grid patches of the first Kodak
  images (reported only; nothing is tuned on Kodak);
- the decoder's cost per step (``IntegerModel.decode``'s network step and its table per sub-pixel) for batches of
  64 and 384 tiles (384 = the 32x32 tiles of one 768x512 Kodak image), medians over the first steps.

    python -m benchmarks.quantized_rate --run /work/runs/photo-gated [--export src/pixelmodels/pretrained/x]
    python -m benchmarks.quantized_rate --quick     # fewer patches, no sweep
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import metadata, save_result
from pixelmodels.quantized import quantize
from pixelmodels.training.checkpoint import load_checkpoint

SWEEP = [(8, 8), (8, 12), (10, 12), (12, 16), (16, 16)]


def float_bits(model, x: torch.Tensor, batch: int = 64) -> float:
    with torch.no_grad():
        nats = sum(float(-model.log_prob(x[s : s + batch]).sum()) for s in range(0, len(x), batch))
    return nats / math.log(2) / x.numel()


def integer_bits(q, x: torch.Tensor, batch: int = 64) -> float:
    return sum(float(q.bits(x[s : s + batch]).sum()) for s in range(0, len(x), batch)) / x.numel()


def step_costs(q, n: int, pixels: int) -> dict:
    """Median seconds of the network step and of one sub-pixel's tables, over the first ``pixels`` pixels."""
    from pixelmodels.quantized import arith

    c, height, width = q.image_shape
    x = torch.randint(0, q.num_levels, (n, c, height, width))
    net_times, table_times = [], []
    with arith.exact_kernels():
        stepper = q.net.stepper(n, height, width, None)
        start = time.perf_counter()
        stepper.start_row(x, 0)
        row_time = time.perf_counter() - start
        for j in range(min(pixels, width)):
            start = time.perf_counter()
            params = stepper.params(x, 0, j)
            net_times.append(time.perf_counter() - start)
            for ch in range(c):
                start = time.perf_counter()
                q.head.tables_at(params, x[:, :, 0, j], ch).numpy()
                table_times.append(time.perf_counter() - start)
            stepper.commit(x, 0, j)
    net, table = statistics.median(net_times), statistics.median(table_times)
    per_pixel = net * (1 if q.config["head"]["name"] == "dmol" else c) + c * table + row_time / width
    return {
        "batch": n,
        "row_s": row_time,
        "network_step_s": net,
        "table_s": table,
        "per_pixel_s": per_pixel,
        "image_estimate_s": per_pixel * height * width,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="/work/runs/photo-gated", help="run directory of the float model")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $PIXELMODELS_DATA)")
    parser.add_argument("--calib", type=int, default=512, help="training crops for calibration")
    parser.add_argument("--valid", type=int, default=512, help="validation patches for the final numbers")
    parser.add_argument("--sweep-valid", type=int, default=128, help="validation patches per sweep setting")
    parser.add_argument("--kodak-images", type=int, default=2, help="Kodak images (all their 32x32 patches)")
    parser.add_argument("--weight-bits", type=int, default=12)
    parser.add_argument("--act-bits", type=int, default=16)
    parser.add_argument("--export", default=None, help="save the integer model into this folder")
    parser.add_argument("--no-sweep", action="store_true", help="only the chosen bit widths")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from pixelmodels.data import load_dataset

    if not Path(args.run).is_dir():
        print(f"skipped: no run directory at {args.run}")
        return 0
    torch.set_num_threads(1)
    if args.quick:
        args.calib, args.valid, args.kodak_images = 64, 32, 0
    model = load_checkpoint(args.run).eval()
    gen = torch.Generator().manual_seed(0)
    train = load_dataset("photographs", split="train", data_dir=args.data_dir).images
    valid = load_dataset("photographs", split="valid", data_dir=args.data_dir).images
    calib = train[torch.randperm(len(train), generator=gen)[: args.calib]].long()
    valid = valid[torch.randperm(len(valid), generator=gen)[: max(args.valid, args.sweep_valid)]].long()
    result = {"run": str(args.run), "model": model.config, "calibration_images": len(calib), "sweep": []}
    sweep = [] if args.quick or args.no_sweep else SWEEP
    tune = valid[: args.sweep_valid]
    ref = float_bits(model, tune)
    for wb, ab in sweep:
        q = quantize(model, calib, weight_bits=wb, act_bits=ab)
        got = integer_bits(q, tune)
        result["sweep"].append(
            {
                "weight_bits": wb,
                "act_bits": ab,
                "patches": len(tune),
                "float_bits_per_dim": ref,
                "integer_bits_per_dim": got,
                "gap_percent": 100 * (got / ref - 1),
            }
        )
        print(f"w{wb} a{ab}: float {ref:.4f}, integer {got:.4f} bits/dim ({100 * (got / ref - 1):+.3f}%)")
    q = quantize(model, calib, weight_bits=args.weight_bits, act_bits=args.act_bits)
    sets = {"photographs valid": valid[: args.valid]}
    if args.kodak_images:
        kodak = load_dataset("kodak", split="test", data_dir=args.data_dir).images
        per_image = len(kodak) // 24
        sets[f"kodak (first {args.kodak_images} images, 32x32 patches)"] = kodak[: args.kodak_images * per_image].long()
    result["chosen"] = {"weight_bits": args.weight_bits, "act_bits": args.act_bits, "fingerprint": q.fingerprint}
    for name, x in sets.items():
        start = time.perf_counter()
        fb, ib = float_bits(model, x), integer_bits(q, x)
        result["chosen"][name] = {
            "patches": len(x),
            "float_bits_per_dim": fb,
            "integer_bits_per_dim": ib,
            "gap_percent": 100 * (ib / fb - 1),
            "integer_seconds": time.perf_counter() - start,
        }
        print(f"{name}: float {fb:.4f}, integer {ib:.4f} bits/dim ({100 * (ib / fb - 1):+.3f}%), {len(x)} patches")
    result["decode_steps"] = [step_costs(q, n, 8 if args.quick else 16) for n in (64, 384)]
    for s in result["decode_steps"]:
        print(
            f"decode batch {s['batch']}: network {1e3 * s['network_step_s']:.1f} ms/step, table "
            f"{1e3 * s['table_s']:.1f} ms/sub-pixel, ~{s['image_estimate_s']:.0f} s per batch of tiles"
        )
    if args.export:
        q.save(args.export)
        result["exported_to"] = str(args.export)
    result["meta"] = metadata()
    save_result(
        "quantized_rate_quick" if args.quick else "quantized_rate" + ("_final" if args.no_sweep else ""), result
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
