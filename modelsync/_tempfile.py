"""Unique temp files, as ``tempfile.mkstemp`` makes them, without the tempfile module.

Its import (with shutil, random and their imports) costs about 8 ms, paid by
every sync for the few temp files a sync makes in the cache and the project.
"""

from __future__ import annotations

import errno
import os

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def mkstemp(folder: str | os.PathLike[str], prefix: str = "", suffix: str = "") -> tuple[int, str]:
    """A new file in ``folder``, readable and writable by its owner only: (fd, path).

    The fd is not inherited by child processes (os.open's default)."""
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, _FLAGS, 0o600), path
        except FileExistsError:  # 48 random bits: only ever by a freak collision
            continue
    raise FileExistsError(errno.EEXIST, "no free temp name", os.fspath(folder))
