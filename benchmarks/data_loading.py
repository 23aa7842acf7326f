"""Load time of the real data sets, every split: ``python -m benchmarks.data_loading [--quick]``.

Needs the files: ``--data-dir``, else ``PIXELMODELS_DATA``, else ../shared/data (the project's copies) when it
exists; skips with the reason when they are absent. Each load
reads and parses the files from disk (gunzip + IDX / .amat parse) into uint8 tensors; the page cache is warm
after the first, untimed, run. Writes benchmarks/results/data_loading.json and .png.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.common import median_time, save_result  # noqa: E402
from pixelmodels.data import SPLITS, dataset_info, load_dataset, resolve_data_dir  # noqa: E402

log = logging.getLogger(__name__)
DATASETS = ("mnist", "binarized_mnist")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the project's read-only copies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="data directory (default: $PIXELMODELS_DATA, else the user cache)")
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5")
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    if args.data_dir is None and not os.environ.get("PIXELMODELS_DATA") and SHARED_DATA.is_dir():
        data_dir = SHARED_DATA
    repeats = 2 if args.quick else 5
    missing = [n for n in DATASETS if not dataset_info(n, data_dir)["files_present"]]
    if missing:  # a skip with its reason, not a failure: the files are not part of the project
        print(f"skipped: {', '.join(missing)} not found under {data_dir}; pass --data-dir or set PIXELMODELS_DATA")
        return
    rows = []
    for name in DATASETS:
        for split in SPLITS:
            seconds = median_time(lambda n=name, s=split: load_dataset(n, s, data_dir=data_dir), repeats=repeats)
            ds = load_dataset(name, split, data_dir=data_dir)
            rows.append(
                {
                    "dataset": name,
                    "split": split,
                    "images": len(ds),
                    "seconds": round(seconds, 4),
                    "bytes_in_memory": ds.images.numel() * ds.images.element_size(),
                }
            )
            print(f"{name:16s} {split:6s} {len(ds):6d} images  {seconds:.3f} s")
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [r["dataset"].replace("_", "\n") + "\n" + r["split"] for r in rows]
    ax.bar(range(len(rows)), [r["seconds"] for r in rows])
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("load time (s, median)")
    ax.set_title("load_dataset: read + parse into uint8 tensors")
    save_result("data_loading", {"repeats": repeats, "data_dir": str(data_dir), "results": rows}, fig)


if __name__ == "__main__":
    main()
