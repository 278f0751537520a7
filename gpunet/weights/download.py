"""Fetch one file over HTTP(S) into the cache: resumable, locked, verified, never half-written.

A download streams into ``<dest>.part`` (kept across interruptions so the next attempt resumes
with an HTTP ``Range`` request where the server supports it), is checked against the expected
sha256 when one is known, and is renamed onto ``dest`` only then. A per-file ``fcntl`` lock
makes two processes fetching the same file end with one good copy.
"""
from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Optional, Tuple

from .._io import sha256_file
from ..errors import GPUNetError


__all__ = ["DownloadError", "ChecksumError", "download_url", "sha256_file", "offline_mode",
           "show_progress"]

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class DownloadError(GPUNetError, RuntimeError):
    """A source could not be fetched; the message names the source and why."""


class ChecksumError(DownloadError):
    """Bytes that do not match the expected sha256 (the bad file has been removed)."""


def offline_mode() -> bool:
    """``GPUNET_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: the cache only, no network."""
    def on(var: str) -> bool:
        return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
    return on("GPUNET_OFFLINE") or on("HF_HUB_OFFLINE")


def show_progress(progress: Optional[bool]) -> bool:
    """Progress bars only when asked for, or by default when stderr is a terminal."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return progress


def _progress_bar(total: Optional[int], initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                file=sys.stderr, leave=False)


def _content_range(value: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """``(first byte, total)`` from ``Content-Range: bytes a-b/n`` or ``bytes */n`` (None where absent)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return (int(m.group(1)) if m.group(1) else None), (int(m.group(2)) if m.group(2) != "*" else None)


class _StalePart(Exception):
    """The ``.part`` file does not belong to what the server has now: start over."""


def _fetch_into(url: str, part: str, timeout: float, progress: bool) -> None:
    """One attempt: append to ``part`` from where it ends (Range), or restart if unsupported."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "gpunet-weights/1"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # nothing left to fetch only if the server's total is exactly what we hold; otherwise
            # the .part is longer than the file (another version of it): start over
            _, total = _content_range(e.headers.get("Content-Range") if e.headers else None)
            if total is not None and total == have:
                return
            raise _StalePart(f"server answered 416 for bytes {have}- (file has {total} bytes)") from None
        raise
    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        if have and status == 206:
            first, _ = _content_range(resp.headers.get("Content-Range"))
            if first != have:  # a 206 for other bytes than asked (e.g. the whole body): never append it
                raise _StalePart(f"asked for bytes {have}-, server sent Content-Range "
                                 f"{resp.headers.get('Content-Range')!r}")
            mode, start = "ab", have
        else:
            mode, start = "wb", 0  # server ignored the Range (200): start over
        expected = int(length) + start if length is not None else None
        bar = _progress_bar(expected, start, os.path.basename(part[:-len(".part")]), progress)
        got = start
        try:
            with open(part, mode) as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        finally:
            if bar is not None:
                bar.close()
        if expected is not None and got < expected:
            raise ConnectionError(f"connection closed after {got} of {expected} bytes")


def download_url(url: str, dest: str, sha256: Optional[str] = None, retries: int = 3, timeout: float = 60.0,
                 progress: Optional[bool] = None, size: Optional[int] = None) -> str:
    """Download ``url`` to ``dest`` and return the file's sha256.

    The caller holds :func:`file_lock` on ``dest``. Interrupted transfers are resumed (up to
    ``retries`` times here, and on the next call from the ``.part`` file). A checksum mismatch
    removes the partial file and raises :class:`ChecksumError`, and so does a file whose
    length is not ``size`` (when known). A ``206`` whose ``Content-Range`` does not start where the
    ``.part`` ends, or a ``416`` whose total is not the ``.part``'s length, discards the ``.part``.
    """
    part = dest + ".part"
    enabled = show_progress(progress)
    last: Optional[BaseException] = None
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, timeout, enabled)
            last = None
            break
        except _StalePart as e:
            log.info("%s: %s; discarding %s and starting over", url, e, part)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            last = e
            continue
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500 and e.code not in (408, 429):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            last = e
        except (OSError, http.client.HTTPException, urllib.error.URLError) as e:
            last = e
        log.info("download of %s interrupted (%s); resuming (attempt %d)", url, last, attempt + 1)
        time.sleep(min(0.2 * 2 ** attempt, 2.0))
    if last is not None:
        kept = os.path.getsize(part) if os.path.exists(part) else 0
        raise DownloadError(f"{url}: download failed after {retries + 1} attempts "
                            f"({type(last).__name__}: {last}); {kept} bytes kept in {part} for resuming")
    got = os.path.getsize(part)
    if size is not None and got != size:
        os.unlink(part)
        raise ChecksumError(f"{url}: size mismatch: expected {size} bytes, got {got} (nothing was kept)")
    actual = sha256_file(part)
    if sha256 is not None and actual != sha256.lower():
        os.unlink(part)
        raise ChecksumError(f"{url}: sha256 mismatch: expected {sha256.lower()}, got {actual} "
                            f"(corrupted or truncated download; nothing was kept)")
    os.replace(part, dest)
    return actual
