"""`modelsync.path()` and friends, as a running application uses them.

Projects here use local `path = …` models (no network at all) and are synced
in-process with the same engine as the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import modelsync
from modelsync import _runtime
from modelsync.errors import ModelNotFoundError, NotSyncedError, ProjectNotFoundError

REPO = Path(__file__).resolve().parent.parent

ONE = b"one-file model" * 100
A_JSON = b'{"hidden": 384}'
B_BIN = b"\x00\x01\x02" * 500


def make_project(root: Path, extra: str = "") -> Path:
    (root / "assets" / "folder" / "sub").mkdir(parents=True)
    (root / "assets" / "one.onnx").write_bytes(ONE)
    (root / "assets" / "folder" / "a.json").write_bytes(A_JSON)
    (root / "assets" / "folder" / "sub" / "b.bin").write_bytes(B_BIN)
    (root / "models.toml").write_text(
        textwrap.dedent(
            """\
            [models.single]
            path = "assets/one.onnx"

            [models.multi]
            path = "assets/folder"
            """
        )
        + textwrap.dedent(extra),
        encoding="utf-8",
    )
    return root


def do_sync(root: Path, **options):
    from modelsync.syncer import SyncOptions, sync_project

    report = sync_project(root, SyncOptions(**options))
    _runtime._cache.clear()
    return report


def do_lock(root: Path) -> None:
    from modelsync import locker, lockfile, manifest, sources
    from modelsync.store import Store

    spec = manifest.load(root / "models.toml")
    old = lockfile.read(root / "models.lock")
    outcome = locker.lock(spec, old, sources.Context(store=Store(), project_root=root))
    lockfile.write(root / "models.lock", outcome.lock)


@pytest.fixture
def synced(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "app")
    do_sync(root)
    return root


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no project above it."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


# --------------------------------------------------------------------------
# path()


def test_path_of_a_one_file_model_is_the_file(synced, monkeypatch):
    monkeypatch.chdir(synced)
    found = modelsync.path("single")
    assert found == synced / "models" / "single" / "one.onnx"
    assert found.is_file()
    assert found.read_bytes() == ONE


def test_path_of_a_multi_file_model_is_the_folder(synced, monkeypatch):
    monkeypatch.chdir(synced)
    folder = modelsync.path("multi")
    assert folder == synced / "models" / "multi"
    assert folder.is_dir()
    assert (folder / "a.json").read_bytes() == A_JSON
    assert (folder / "sub" / "b.bin").read_bytes() == B_BIN


def test_path_with_a_file(synced, monkeypatch):
    monkeypatch.chdir(synced)
    assert modelsync.path("multi", "a.json").read_bytes() == A_JSON
    assert modelsync.path("multi", "sub/b.bin").read_bytes() == B_BIN
    assert modelsync.path("multi", "sub") == synced / "models" / "multi" / "sub"
    assert modelsync.path("single", "one.onnx") == synced / "models" / "single" / "one.onnx"


def test_path_with_an_unknown_file(synced, monkeypatch):
    monkeypatch.chdir(synced)
    with pytest.raises(FileNotFoundError) as info:
        modelsync.path("multi", "a.jsn")
    assert isinstance(info.value, modelsync.ModelsyncError)
    assert "a.json" in str(info.value)  # the close match


def test_unknown_model_is_a_key_error_with_a_close_match(synced, monkeypatch):
    monkeypatch.chdir(synced)
    with pytest.raises(ModelNotFoundError) as info:
        modelsync.path("singel")
    assert isinstance(info.value, KeyError)
    assert "singel" in str(info.value)
    assert "did you mean 'single'" in str(info.value)
    with pytest.raises(KeyError):
        modelsync.path("nothing-like-it")


def test_before_sync_path_raises_not_synced(tmp_path, monkeypatch):
    root = make_project(tmp_path / "app")
    do_lock(root)
    monkeypatch.chdir(root)
    with pytest.raises(NotSyncedError) as info:
        modelsync.path("single")
    assert isinstance(info.value, FileNotFoundError)
    assert "modelsync sync" in str(info.value)
    assert not (root / "models").exists()  # path() never syncs on its own


def test_after_relock_path_says_the_lock_changed(synced, monkeypatch):
    monkeypatch.chdir(synced)
    assert modelsync.path("single").is_file()
    (synced / "assets" / "extra.bin").write_bytes(b"extra")
    with open(synced / "models.toml", "a", encoding="utf-8") as handle:
        handle.write('\n[models.extra]\npath = "assets/extra.bin"\n')
    do_lock(synced)
    with pytest.raises(NotSyncedError) as info:
        modelsync.path("single")
    message = str(info.value)
    assert "models.lock" in message and "changed" in message
    assert "modelsync sync" in message

    do_sync(synced)
    assert modelsync.path("extra").read_bytes() == b"extra"
    assert modelsync.path("single").read_bytes() == ONE


def test_deleted_view_file_raises_not_synced(synced, monkeypatch):
    monkeypatch.chdir(synced)
    target = modelsync.path("single")
    target.unlink()
    with pytest.raises(NotSyncedError) as info:
        modelsync.path("single")
    assert "modelsync sync" in str(info.value)


def test_model_outside_the_synced_group_is_not_synced(tmp_path, monkeypatch):
    root = make_project(
        tmp_path / "app",
        extra="""
        [models.grouped]
        path = "assets/one.onnx"
        group = "later"
        """,
    )
    do_sync(root, groups=("later",))
    monkeypatch.chdir(root)
    assert modelsync.path("grouped").read_bytes() == ONE
    with pytest.raises(NotSyncedError) as info:
        modelsync.path("multi")
    assert "modelsync sync" in str(info.value)


# --------------------------------------------------------------------------
# finding the project


def test_project_from_the_argument(synced, elsewhere):
    assert modelsync.path("single", project=synced) == synced / "models" / "single" / "one.onnx"
    assert modelsync.path("single", project=str(synced)) == synced / "models" / "single" / "one.onnx"
    # a path to the lock names its project too
    assert modelsync.path("single", project=synced / "models.lock") == synced / "models" / "single" / "one.onnx"


def test_project_from_the_environment(synced, elsewhere, monkeypatch):
    monkeypatch.setenv("MODELSYNC_PROJECT", str(synced))
    assert modelsync.path("single") == synced / "models" / "single" / "one.onnx"


def test_project_from_the_nearest_lock_above_the_working_directory(synced, monkeypatch):
    deep = synced / "src" / "app" / "deep"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert modelsync.path("single") == synced / "models" / "single" / "one.onnx"


def test_nearest_lock_wins_over_a_farther_one(synced, monkeypatch):
    inner = make_project(synced / "nested")
    (inner / "assets" / "one.onnx").write_bytes(b"inner bytes")
    do_sync(inner)
    monkeypatch.chdir(inner / "assets")
    found = modelsync.path("single")
    assert found == inner / "models" / "single" / "one.onnx"
    assert found.read_bytes() == b"inner bytes"


def test_argument_wins_over_environment_and_environment_over_cwd(tmp_path, monkeypatch):
    first = make_project(tmp_path / "first")
    second = make_project(tmp_path / "second")
    do_sync(first)
    do_sync(second)
    monkeypatch.chdir(first)
    monkeypatch.setenv("MODELSYNC_PROJECT", str(second))
    assert modelsync.path("single").is_relative_to(second)
    assert modelsync.path("single", project=first).is_relative_to(first)


def test_no_project_anywhere(elsewhere):
    with pytest.raises(ProjectNotFoundError) as info:
        modelsync.path("single")
    assert isinstance(info.value, FileNotFoundError)
    assert "models.lock" in str(info.value)


def test_environment_pointing_at_a_folder_without_lock(elsewhere, monkeypatch):
    monkeypatch.setenv("MODELSYNC_PROJECT", str(elsewhere))
    with pytest.raises(ProjectNotFoundError) as info:
        modelsync.path("single")
    assert str(elsewhere) in str(info.value)


# --------------------------------------------------------------------------
# what `import modelsync` and `path()` cost


FORBIDDEN = [
    "requests",
    "rich",
    "tomlkit",
    "blake3",
    "huggingface_hub",
    "platformdirs",
    "filelock",
    "packaging",
    "urllib3",
    "onnxruntime",
    "torch",
    "numpy",
]

PROBE = textwrap.dedent(
    """
    import json, sys
    before = set(sys.modules)
    import modelsync
    found = modelsync.path("single")
    folder = modelsync.path("multi", "sub/b.bin")
    added = sorted(set(sys.modules) - before)
    print(json.dumps({"path": str(found), "added": added, "all": sorted(sys.modules)}))
    """
)


def test_import_and_path_use_only_the_standard_library(synced):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_PROJECT")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=synced, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == str(synced / "models" / "single" / "one.onnx")

    third_party = [
        name
        for name in report["added"]
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "modelsync"
    ]
    assert third_party == [], third_party
    loaded_roots = {name.split(".")[0] for name in report["all"]}
    assert loaded_roots.isdisjoint(FORBIDDEN), sorted(loaded_roots & set(FORBIDDEN))
    assert "tomllib" not in loaded_roots  # the run-time reads the JSON state, never TOML


# --------------------------------------------------------------------------
# modelsync.sync(): the engine for GUIs


def test_python_sync_api_can_be_called_twice_and_reports_progress(tmp_path):
    """`modelsync.sync()` is a function a GUI may call again (DESIGN §5)."""
    root = make_project(tmp_path / "app")
    do_lock(root)
    script = textwrap.dedent(
        f"""
        import json, os
        os.environ["MODELSYNC_CACHE_DIR"] = {str(tmp_path / "fresh-cache")!r}
        import modelsync
        calls = []
        first = modelsync.sync({str(root)!r}, progress=lambda done, total: calls.append((done, total)))
        second = modelsync.sync({str(root)!r})
        print(json.dumps({{
            "first_fetch": len(first.plan.fetch),
            "second_empty": second.plan.empty,
            "calls": calls[-1:],
            "path": str(modelsync.path("single", project={str(root)!r})),
        }}))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["first_fetch"] == 3
    assert report["second_empty"] is True
    total = len(ONE) + len(A_JSON) + len(B_BIN)
    assert report["calls"] == [[total, total]]
    assert report["path"] == str(root / "models" / "single" / "one.onnx")

