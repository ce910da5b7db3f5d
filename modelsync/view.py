"""The project's view (``models/<model>/<path>``) and the state file that describes it.

A view file is created under a temp name next to its final path, then moved
into place with ``os.replace``: it appears complete or not at all. Blobs are
read-only, and so is every view file, whatever the link mode.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from . import _runtime, _tempfile

_GITIGNORE = "# Managed by modelsync: `modelsync sync` rebuilds this folder.\n*\n"
_FICLONE = 0x40049409  # Linux ioctl: share the extents of another file (btrfs, xfs, ...)


class LinkError(OSError):
    pass


def _reflink(source: str, target: str) -> None:
    if not sys.platform.startswith("linux"):
        raise LinkError(errno.EOPNOTSUPP, "reflinks are only supported on Linux")
    import fcntl

    with open(source, "rb") as src, open(target, "wb") as dst:
        fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())


def _copy(source: str, target: str) -> None:
    import shutil  # only for copies: its import costs a sync of hardlinks ~4 ms

    shutil.copyfile(source, target)


def _hardlink(source: str, target: str) -> None:
    os.link(source, target)


def _symlink(source: str, target: str) -> None:
    os.symlink(source, target)


_METHODS = {"reflink": _reflink, "hardlink": _hardlink, "symlink": _symlink, "copy": _copy}
_AUTO = ("reflink", "hardlink", "copy")
# (blob device, view device) pairs where a method already failed in this process:
# `auto` skips it for the other files (a failing reflink costs ~1 ms a file on ext4).
_failed: set[tuple[str, int, int]] = set()


_folders: dict[str, int] = {}  # view folders made (or seen) in this process -> their device


def _folder(folder: str) -> int:
    """Make ``folder`` (once per process) and return its device.

    A folder this call creates is on its parent's device: one mkdir, no stat,
    when the parent is known (a model's folder right under the view)."""
    device = _folders.get(folder)
    if device is not None:
        return device
    try:
        os.mkdir(folder)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        device = os.stat(folder).st_dev
    except FileExistsError:
        device = os.stat(folder).st_dev
    else:
        parent = os.path.dirname(folder)
        device = _folders.get(parent)
        if device is None:
            device = _folders[parent] = os.stat(parent).st_dev
    _folders[folder] = device
    return device


_WHOLE_AT_ONCE = ("hardlink", "symlink")


def _temp_name(target: str) -> str:
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")


def _make(method: str, blob: str, path: str) -> None:
    try:
        _METHODS[method](blob, path)
    except FileNotFoundError:
        folder = os.path.dirname(path)
        if os.path.isdir(folder):
            raise
        _folders.pop(folder, None)  # removed since this process made it
        _folder(folder)
        _METHODS[method](blob, path)


def place(blob: str | Path, target: str | Path, mode: str, blob_device: int | None = None) -> str:
    """Make ``target`` hold ``blob``'s bytes; return the method that worked."""
    blob, target = os.fspath(blob), os.fspath(target)
    devices = (blob_device if blob_device is not None else os.stat(blob).st_dev, _folder(os.path.dirname(target)))
    candidates = _AUTO if mode == "auto" else (mode,)
    if mode == "auto":
        candidates = tuple(method for method in candidates if (method, *devices) not in _failed) or candidates
    last_error: OSError | None = None
    for method in candidates:
        # A link appears whole: where the path is free it is made right there.
        # Otherwise (a copy, or a file to replace) it is made under a unique
        # name beside the target, not created first, then moved into place.
        temp = target if method in _WHOLE_AT_ONCE else _temp_name(target)
        try:
            try:
                _make(method, blob, temp)
            except FileExistsError:
                if temp != target:
                    raise
                temp = _temp_name(target)
                _make(method, blob, temp)
            if method in ("reflink", "copy"):
                os.chmod(temp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            if temp != target:
                os.replace(temp, target)
            return method
        except OSError as error:
            last_error = error
            if temp != target:
                _unlink(temp)
            if mode == "auto":
                _failed.add((method, *devices))
    assert last_error is not None
    raise last_error


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove(view_root: Path, key: str) -> None:
    """Delete a file the last sync placed, and the folders it leaves empty."""
    target = view_root / key
    try:
        target.unlink()
    except FileNotFoundError:
        pass
    folder = target.parent
    while folder != view_root and view_root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            break
        folder = folder.parent


def prepare(view_root: Path) -> None:
    """Create the view folder with a .gitignore: the view is never committed."""
    view_root.mkdir(parents=True, exist_ok=True)
    ignore = view_root / ".gitignore"
    if not ignore.exists():
        ignore.write_text(_GITIGNORE, encoding="utf-8")


def write_state(root: Path, state: dict[str, Any]) -> Path:
    """Atomically replace the state file the run-time reads."""
    folder = root / _runtime.STATE_DIR
    folder.mkdir(exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text(_GITIGNORE, encoding="utf-8")
    target = folder / _runtime.STATE_FILE
    fd, name = _tempfile.mkstemp(folder, prefix=".state.", suffix=".tmp")
    # No indent: json's C encoder then does the work (a state of 2000 files: 8 ms, not 250 ms).
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.chmod(name, 0o644)  # mkstemp makes it private; apps may run as another user
    os.replace(name, target)
    return target
