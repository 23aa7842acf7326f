"""Verified atomic downloads (pixelmodels.data.download.fetch) and the loaders' download=True, against a local
HTTP server on 127.0.0.1 that serves a good file and a corrupted one; no outside network is used."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pixelmodels.data import load_dataset
from pixelmodels.data.download import ChecksumError, fetch


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_good_file_is_verified_and_written_atomically(server, tmp_path):
    url, root = server
    payload = np.random.default_rng(0).bytes(300_000)
    (root / "good.bin").write_bytes(payload)
    dest = tmp_path / "out" / "good.bin"
    assert fetch(url + "good.bin", dest, _sha(payload)) == dest
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["good.bin"]  # no temporary file left
    (root / "good.bin").unlink()  # a present file with the right checksum is not fetched again
    assert fetch(url + "good.bin", dest, _sha(payload)) == dest


def test_fetch_corrupted_file_is_deleted_and_raises(server, tmp_path):
    url, root = server
    payload = np.random.default_rng(1).bytes(200_000)
    corrupted = bytearray(payload)
    corrupted[1000] ^= 0xFF
    (root / "bad.bin").write_bytes(bytes(corrupted))
    dest = tmp_path / "out" / "bad.bin"
    with pytest.raises(ChecksumError, match="does not match the expected"):
        fetch(url + "bad.bin", dest, _sha(payload))
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # the partial file is gone
    with pytest.raises(OSError, match="could not download .*missing.bin"):
        fetch(url + "missing.bin", dest, _sha(payload))
    assert list(dest.parent.iterdir()) == []
    dest.write_bytes(b"stale")  # a wrong file already in place is replaced only by a verified one
    with pytest.raises(ChecksumError):
        fetch(url + "bad.bin", dest, _sha(payload))
    assert dest.read_bytes() == b"stale"


def test_mnist_download_from_a_mirror(server, tmp_path, shared_data_dir, monkeypatch):
    """The loader fetches the t10k files by their official SHA-256 from a (local) mirror and loads them."""
    from pixelmodels.data import mnist

    url, root = server
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (root / name).write_bytes((shared_data_dir / "mnist" / name).read_bytes())
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (url + "nothing/", url))  # the first mirror fails: next one
    data_dir = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        load_dataset("mnist", "test", data_dir=data_dir)
    ds = load_dataset("mnist", "test", data_dir=data_dir, download=True)
    assert len(ds) == 10000 and (data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_binarized_mnist_download_checks_the_checksum(server, tmp_path, shared_data_dir, monkeypatch):
    from pixelmodels.data import mnist

    url, root = server
    raw = gzip.decompress((shared_data_dir / "binarized_mnist" / "binarized_mnist_valid.amat.gz").read_bytes())
    (root / "binarized_mnist_valid.amat").write_bytes(raw)
    (root / "binarized_mnist_test.amat").write_bytes(raw)  # the wrong file under the test split's name
    monkeypatch.setattr(mnist, "BINARIZED_URL", url)
    ds = load_dataset("binarized_mnist", "valid", data_dir=tmp_path, download=True)
    assert int(ds.images.sum()) == 1028036
    with pytest.raises(ChecksumError):
        load_dataset("binarized_mnist", "test", data_dir=tmp_path, download=True)
    assert not (tmp_path / "binarized_mnist" / "binarized_mnist_test.amat").exists()


def test_cifar10_download_extracts_only_the_batches(server, tmp_path, monkeypatch):
    from pixelmodels.data import cifar
    from test_data import _write_cifar

    url, root = server
    batches = tmp_path / "made" / "cifar-10-batches-py"
    expected = _write_cifar(batches, per_batch=10, test=5)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../escaped.txt")  # a path outside the target is never written
        tar.addfile(evil, io.BytesIO(b""))
    archive = buffer.getvalue()
    (root / "cifar-10-python.tar.gz").write_bytes(archive)
    monkeypatch.setattr(cifar, "CIFAR_URL", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR_SHA256", _sha(archive))
    data_dir = tmp_path / "data"
    ds = load_dataset("cifar10", "test", data_dir=data_dir, download=True)
    assert np.array_equal(ds.images.numpy(), expected["test_batch"][0])
    assert not (tmp_path / "escaped.txt").exists() and not Path(data_dir.parent / "escaped.txt").exists()
    assert len(load_dataset("cifar10", "train", data_dir=data_dir)) == 45  # already there: no download needed
