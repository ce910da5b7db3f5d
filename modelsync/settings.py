"""The [settings] of models.toml, read on their own: for `sync --frozen` and
`status`, which read no model of models.toml.

Light on purpose. A frozen sync of 2000 small files plans their downloads in
about 30 ms; the manifest's full reader would add as much again (tomllib's
parse of 2000 tables, and the import of manifest.py). Here a valid, plainly
written models.toml is read by the fast reader (``_manifestparse``) and its
settings checked; anything else (a syntax error anywhere in the file, a bad
setting, a layout the fast reader declines) goes to ``manifest.load_settings``,
which reads it with tomllib and explains what is wrong, with the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from . import _manifestparse
from ._safepath import UnsafePathError, safe_relpath

LINK_MODES = ("auto", "reflink", "hardlink", "symlink", "copy")


class Settings(NamedTuple):
    dir: str = "models"
    link: str = "auto"


def load(path: Path) -> Settings:
    """The settings of the manifest at ``path`` (the defaults when there is none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError):
        text = None  # the full reader says what is wrong with the file
    if text is not None:
        settings = _plain(_manifestparse.parse(text))
        if settings is not None:
            return settings
    from . import manifest

    return manifest.load_settings(path)


def _plain(document: dict | None) -> Settings | None:
    """The settings of a document the fast reader read, when they are valid; else None."""
    if document is None:
        return None
    table = document.get("settings", {})
    if not isinstance(table, dict) or not set(table) <= {"dir", "link"}:
        return None
    directory, link = table.get("dir", "models"), table.get("link", "auto")
    if not isinstance(directory, str) or link not in LINK_MODES:
        return None
    try:
        return Settings(dir=safe_relpath(directory), link=link)
    except UnsafePathError:
        return None
