"""Small helpers shared by the test modules: reading locks, listing files, checking failures."""

from __future__ import annotations

import subprocess
import time
import tomllib
from pathlib import Path
from typing import Callable

import blake3
import pytest


def blake3_hex(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


b3 = blake3_hex


def payload(seed: str, size: int) -> bytes:
    """``size`` deterministic, incompressible bytes, different for each seed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += blake3.blake3(f"{seed}:{counter}".encode()).digest(length=1024)
        counter += 1
    return bytes(out[:size])


def read_lock(root: Path) -> dict:
    return tomllib.loads((root / "models.lock").read_text(encoding="utf-8"))


def locked_files(root: Path, model: str) -> list[dict]:
    return next(m for m in read_lock(root)["model"] if m["name"] == model)["files"]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_clean_failure(result: subprocess.CompletedProcess, code: int) -> None:
    """The command failed with ``code``, as an expected error: no traceback, no crash."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "crashed" not in result.stderr, result.stderr


def eventually(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
