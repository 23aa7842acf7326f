import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_data_dir() -> Path:
    """The real MNIST / binarized MNIST copies (../shared/data or $PIXELMODELS_TEST_DATA); skips if absent."""
    path = Path(os.environ.get("PIXELMODELS_TEST_DATA", SHARED_DATA))
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set PIXELMODELS_TEST_DATA)")
    return path


# One thread: tiny test models gain nothing from more, and on a busy machine extra threads thrash.
torch.set_num_threads(1)
