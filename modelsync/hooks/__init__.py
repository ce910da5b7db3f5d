"""PyInstaller's entry point into modelsync's hook folder.

PyInstaller finds ``hook-modelsync.py`` through the ``pyinstaller40``
``hook-dirs`` entry point in pyproject.toml, so an app that imports modelsync
gets its models.lock bundled without any option on the command line.
"""

from __future__ import annotations

import os


def get_hook_dirs() -> list[str]:
    return [os.path.dirname(__file__)]
