"""Run the benchmarks: ``python -m benchmarks all [--quick]`` or ``python -m benchmarks NAME [--quick]``.

Every module ``benchmarks/<name>.py`` (besides common) defines ``main(argv)`` and accepts ``--quick``.
Each one runs in its own process, so one failing benchmark does not hide the others; results land in
``benchmarks/results/<name>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"__init__", "__main__", "common"}


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in SKIP)


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["all", *names], help="one benchmark, or all of them")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (minutes on a CPU)")
    args = parser.parse_args(argv)
    failed = []
    for name in names if args.which == "all" else [args.which]:
        cmd = [sys.executable, "-m", f"benchmarks.{name}"] + (["--quick"] if args.quick else [])
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=HERE.parent).returncode
        print(
            f"== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
