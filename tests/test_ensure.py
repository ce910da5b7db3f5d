"""``modelsync.ensure()``: download on first use, and the frozen-app lookup order.

Frozen apps are simulated the way PyInstaller sets them up: ``sys.frozen``,
``sys._MEIPASS`` (the unpacked bundle) and ``sys.executable`` (the app).
The real PyInstaller builds are in test_pyinstaller.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
from helpers import b3, payload

import modelsync
from modelsync import _runtime
from modelsync.cli.main import main

MIB = 1 << 20


@pytest.fixture(autouse=True)
def fresh_runtime_caches():
    _runtime._cache.clear()
    _runtime._bundles.clear()
    yield
    _runtime._cache.clear()
    _runtime._bundles.clear()


def gets(http_server, name: str) -> list:
    return [r for r in http_server.requests if r.method == "GET" and r.path == f"/{name}"]


@pytest.fixture
def app(http_server, project, monkeypatch, tmp_path):
    """A locked project of two models whose cache is then emptied: nothing is synced."""
    a, b = payload("a", 3 * MIB), payload("b", 20_000)
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", a)}"

        [models.b]
        url = "{http_server.add("b.bin", b)}"
    ''')
    monkeypatch.chdir(root)
    assert main(["lock", "-q"]) == 0
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "empty-cache"))
    http_server.requests.clear()
    return root, {"a": a, "b": b}


# --------------------------------------------------------------------------
# in a project


def test_ensure_downloads_on_first_use_and_leaves_other_models_alone(app, http_server):
    root, data = app
    assert main(["sync", "-q"]) == 0  # both models in the view
    (root / "models" / "a" / "a.bin").unlink()  # a is gone: ensure("a") fetches it again
    http_server.requests.clear()
    shutil.rmtree(Path(os.environ["MODELSYNC_CACHE_DIR"]))

    found = modelsync.ensure("a")

    assert found == root / "models" / "a" / "a.bin"
    assert found.read_bytes() == data["a"]
    assert len(gets(http_server, "a.bin")) == 1 and gets(http_server, "b.bin") == []
    assert modelsync.path("b").read_bytes() == data["b"], "b stays synced"


def test_ensure_of_a_synced_model_is_path_and_touches_no_network(app, http_server):
    root, data = app
    assert main(["sync", "-q"]) == 0
    http_server.requests.clear()
    assert modelsync.ensure("b") == modelsync.path("b")
    assert http_server.requests == []


def test_many_threads_one_download(app, http_server):
    root, data = app
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(modelsync.ensure("a"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert results[0].read_bytes() == data["a"]
    assert len(gets(http_server, "a.bin")) == 1


def test_two_models_ensured_at_once_both_stay_synced(app):
    root, data = app
    threads = [threading.Thread(target=modelsync.ensure, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _runtime._cache.clear()
    assert modelsync.path("a").read_bytes() == data["a"]
    assert modelsync.path("b").read_bytes() == data["b"]


def test_progress_reports_bytes_up_to_the_total(app):
    root, data = app
    calls: list[tuple[int, int]] = []
    modelsync.ensure("a", progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, len(data["a"]))
    assert calls[-1] == (len(data["a"]), len(data["a"]))
    assert all(done <= total for done, total in calls)


def test_cancel_stops_the_download_and_a_later_call_resumes(app, http_server):
    root, data = app
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= MIB:
            cancel.set()

    with pytest.raises(modelsync.Interrupted):
        modelsync.ensure("a", progress=progress, cancel=cancel)
    assert not (root / "models" / "a" / "a.bin").exists()
    http_server.requests.clear()

    assert modelsync.ensure("a").read_bytes() == data["a"]
    resumed = gets(http_server, "a.bin")
    assert len(resumed) == 1 and resumed[0].headers.get("Range", "").startswith("bytes="), "it continued where it stopped"


def test_offline_ensure_lists_what_is_missing_and_downloads_nothing(app, http_server, monkeypatch):
    root, data = app
    monkeypatch.setenv("MODELSYNC_OFFLINE", "1")
    with pytest.raises(modelsync.OfflineError) as caught:
        modelsync.ensure("a")
    assert "a/a.bin" in caught.value.message and "3.0 MiB" in caught.value.message
    assert http_server.requests == []


def test_offline_ensure_places_what_the_cache_already_holds(app, http_server, monkeypatch):
    root, data = app
    assert main(["sync", "-q"]) == 0
    shutil.rmtree(root / "models" / "b")
    monkeypatch.setenv("MODELSYNC_OFFLINE", "1")
    http_server.requests.clear()
    assert modelsync.ensure("b").read_bytes() == data["b"]
    assert http_server.requests == []


def test_ensure_of_an_unknown_model(app):
    with pytest.raises(modelsync.ModelNotFoundError):
        modelsync.ensure("nope")


# --------------------------------------------------------------------------
# in a frozen app


@pytest.fixture
def frozen(app, monkeypatch, tmp_path):
    """The app frozen: its lock in the bundle, an executable in its own folder,
    the working directory elsewhere (nothing may depend on it)."""
    root, data = app
    bundle = tmp_path / "meipass" / "modelsync_bundle"
    bundle.mkdir(parents=True)
    shutil.copy(root / "models.lock", bundle / "models.lock")
    exe_dir = tmp_path / "dist" / "app"
    exe_dir.mkdir(parents=True)
    (exe_dir / "app").write_bytes(b"")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "meipass"), raising=False)
    monkeypatch.setattr(sys, "executable", str(exe_dir / "app"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return bundle, exe_dir, data


def bundle_model(bundle: Path, name: str, content: bytes, filename: str) -> None:
    """What modelsync.pyinstaller.datas() puts in a bundle for one model."""
    (bundle / "models" / name).mkdir(parents=True)
    (bundle / "models" / name / filename).write_bytes(content)
    lock_digest = hashlib.sha256((bundle / "models.lock").read_bytes()).hexdigest()
    entry = {"variant": None, "single": True, "loader": None, "files": {filename: {"size": len(content), "blake3": b3(content)}}}
    (bundle / "bundle.json").write_text(json.dumps({"version": 1, "lock-sha256": lock_digest, "models": {name: entry}}))


def test_frozen_app_downloads_beside_the_executable_then_finds_it_offline(frozen, http_server, monkeypatch):
    bundle, exe_dir, data = frozen
    with pytest.raises(modelsync.NotSyncedError) as caught:
        modelsync.path("a")
    assert "ensure" in caught.value.hint

    found = modelsync.ensure("a")
    assert found == exe_dir / "models" / "a" / "a.bin"
    assert found.read_bytes() == data["a"]

    http_server.requests.clear()
    monkeypatch.setenv("MODELSYNC_OFFLINE", "1")
    _runtime._cache.clear()
    assert modelsync.path("a") == found
    assert modelsync.ensure("a") == found
    assert http_server.requests == []


def test_frozen_app_prefers_its_bundle(frozen, http_server):
    bundle, exe_dir, data = frozen
    bundle_model(bundle, "b", data["b"], "b.bin")
    assert modelsync.ensure("b") == bundle / "models" / "b" / "b.bin"
    assert modelsync.path("b").read_bytes() == data["b"]
    assert http_server.requests == []
    assert not (exe_dir / "models").exists()


def test_frozen_app_that_cannot_write_beside_itself_downloads_into_the_user_cache(frozen, tmp_path):
    bundle, exe_dir, data = frozen
    (exe_dir / ".modelsync").write_text("in the way")  # as a read-only folder would, the state cannot go there
    found = modelsync.ensure("a")
    assert found == tmp_path / "user-cache" / "modelsync" / "apps" / "app" / "models" / "a" / "a.bin"
    assert found.read_bytes() == data["a"]
    _runtime._cache.clear()
    assert modelsync.path("a") == found


def test_frozen_app_cannot_fetch_a_wheel_and_says_to_bundle_it(frozen, monkeypatch):
    """A frozen app's sys.executable is the app: it must never be run as `python -m pip`."""
    bundle, exe_dir, data = frozen
    shutil.copy(Path(__file__).resolve().parent.parent / "models.lock", bundle / "models.lock")  # vad: a wheel on the index
    _runtime._cache.clear()
    import subprocess

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args[0]!r}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setenv("MODELSYNC_OVERRIDE_ACCELERATOR", "cpu")
    with pytest.raises(modelsync.ModelsyncError) as caught:
        modelsync.ensure("vad")
    assert "frozen app cannot fetch" in caught.value.message
    assert "datas(bundle=" in caught.value.hint
