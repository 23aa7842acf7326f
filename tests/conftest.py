import functools
import http.server
import os
import threading
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


SERVER_LIFETIME_S = 120  # the server shuts itself down after this, even if a test hangs


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder): a threaded HTTP server on 127.0.0.1, stopped after the test or after a bound."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stopper = threading.Timer(SERVER_LIFETIME_S, httpd.shutdown)
    stopper.daemon = True
    stopper.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    finally:
        stopper.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# One thread: tiny test models gain nothing from more, and on a busy machine extra threads thrash.
torch.set_num_threads(1)
