"""Small file helpers shared by every module that writes: nothing half-written is left behind."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` is racy)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """The replaced file's mode, else what ``open(path, "w")`` would give (0666 minus the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds.

    The file ends with the mode a plain write would give it (``mkstemp`` makes 0600, which a
    server running as another user could not read), or the mode of the file it replaces.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"cannot write {path}: directory {directory} is not writable")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix + ".tmp",
                               dir=directory)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):  # a writer may have replaced or removed the temp file itself
            os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
        fsync_dir(directory)  # the rename itself survives a power cut
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[str]:
    """Yield a temp folder beside ``path``; it becomes ``path`` only if the block succeeds (a folder
    already there is replaced whole, never merged). A reader sees the old folder or the new one;
    a failed or interrupted write leaves no half folder at ``path``."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        old = None
        if os.path.isdir(path):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, "d"))
        try:
            os.replace(tmp, path)
        except BaseException:
            if old:  # put the previous folder back
                os.replace(os.path.join(old, "d"), path)
                os.rmdir(old)
            raise
        fsync_dir(parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(directory: PathLike) -> None:
    """Flush a directory's entries (a create or rename in it) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY)
    except OSError:  # Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: PathLike) -> Iterator[None]:
    """Exclusive inter-process lock on ``path + '.lock'`` (blocks until free), through ``filelock``
    (fcntl on POSIX, msvcrt on Windows)."""
    from filelock import FileLock

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with FileLock(path + ".lock"):
        yield


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
