"""Relative paths that cannot escape the folder they are joined to.

Every path that comes from outside — a lock entry, a wheel member, a server —
passes through ``safe_relpath`` before it is joined to the view or the store.
"""

from __future__ import annotations

import re

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafePathError(ValueError):
    """The path is absolute, climbs out with '..', or is otherwise unsafe."""


def safe_relpath(value: str) -> str:
    """Return ``value`` as a normalised POSIX relative path, or raise.

    Refuses: empty paths, absolute paths, drive letters, backslashes, '.' and
    '..' components, empty components ('a//b') and control characters, so the
    result joined to any folder stays inside it on every platform.
    """
    if not value or not isinstance(value, str):
        raise UnsafePathError("the path is empty")
    if _CONTROL.search(value):
        raise UnsafePathError(f"{value!r} contains a control character")
    if "\\" in value:
        raise UnsafePathError(f"{value!r} contains a backslash")
    if value.startswith("/") or _DRIVE.match(value):
        raise UnsafePathError(f"{value!r} is absolute")
    for part in value.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"{value!r} has a {part or 'empty'!r} component")
    return value  # already normal: no empty, '.' or '..' component, no backslash, not absolute
