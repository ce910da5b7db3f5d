"""Sizes for people: one formatter for every message (standard library only)."""

from __future__ import annotations


def human_size(size: float) -> str:
    """``1536`` → ``1.5 KiB``; bytes are whole, larger units have one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
