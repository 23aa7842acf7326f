"""Verified, atomic downloads: the file appears at its destination complete and with the expected SHA-256,
or not at all."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded or existing file does not have the expected SHA-256."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: str | os.PathLike, sha256: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already has the expected SHA-256.

    The bytes go to a temporary file beside ``dest`` and are hashed as they arrive; only a file whose SHA-256
    equals ``sha256`` is moved into place (``os.replace``, atomic). A wrong checksum deletes the partial file
    and raises :class:`ChecksumError`; a network error deletes it and raises ``OSError`` naming the URL.
    """
    dest = Path(dest)
    expected = sha256.lower()
    if dest.is_file():
        if sha256_file(dest) == expected:
            return dest
        log.warning("%s exists with a different SHA-256; downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(CHUNK):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"{url}: SHA-256 {actual} does not match the expected {expected}; nothing was written to {dest}"
            )
        os.replace(tmp, dest)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not download {url} to {dest}: {err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("downloaded %s -> %s", url, dest)
    return dest
