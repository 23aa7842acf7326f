"""A ``pixelmodels`` CLI process with test-only hooks, for tests/test_distributed.py.

Run under torchrun as a script (``torchrun ... tests/ddp_worker.py train ...``) or called in a forked process
(``run_rank``). Hooks, from the environment:

    PIXELMODELS_TEST_RANK_DIRS=1                  ranks other than 0 also write their run, into ``<--out>-rank<r>``,
                                                  so the test can compare every rank's weights (normally only rank
                                                  0 writes anything).
    PIXELMODELS_TEST_FAULT=raise:R:S / hang:R:S   rank R raises / sleeps 10 minutes at step S (0-based).
"""

import os
import sys
import time
import traceback
from pathlib import Path

from pixelmodels import cli
from pixelmodels.training import trainer


def install_hooks() -> None:
    rank = int(os.environ.get("RANK", "0"))
    if os.environ.get("PIXELMODELS_TEST_RANK_DIRS") == "1" and rank != 0:

        class RankWriter(trainer.RunWriter):
            def __init__(self, run_dir: Path, enabled: bool):
                super().__init__(run_dir.with_name(f"{run_dir.name}-rank{rank}"), True)

        trainer.RunWriter = RankWriter
    if os.environ.get("PIXELMODELS_TEST_FAULT"):
        kind, fault_rank, fault_step = os.environ["PIXELMODELS_TEST_FAULT"].split(":")
        learning_rate = trainer.learning_rate

        def faulty_learning_rate(step, optim, total_steps):
            if rank == int(fault_rank) and step == int(fault_step):
                if kind == "raise":
                    raise RuntimeError(f"injected failure on rank {rank} at step {step}")
                time.sleep(600)
            return learning_rate(step, optim, total_steps)

        trainer.learning_rate = faulty_learning_rate


def run_rank(rank: int, world_size: int, port: int, argv: list[str], env: dict, error_file: str) -> None:
    """Target of a forked process: torchrun's environment for ``rank``, hooks, the CLI; errors to a file."""
    os.environ.update(env)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    install_hooks()
    try:
        code = cli.main(argv)
    except BaseException:
        Path(error_file).write_text(traceback.format_exc())
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a forked child: skip the parent's (pytest's) exit handlers


if __name__ == "__main__":
    install_hooks()
    sys.exit(cli.main())
