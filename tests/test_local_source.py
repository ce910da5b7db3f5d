"""The local `path` source: a file (or folder) relative to models.toml, copied into the store and pinned."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from helpers import assert_clean_failure, blake3_hex, files_under, locked_files

X = b"local model bytes\n" + bytes(range(256)) * 16
X2 = b"LOCAL MODEL BYTES\n" + bytes(range(256)) * 16  # same size, other content


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


ONE_FILE = """\
[models.x]
path = "assets/x.onnx"
"""


@pytest.fixture
def single(tmp_path: Path) -> Path:
    """A project whose model x is assets/x.onnx (the file is written before models.toml is parsed)."""
    root = tmp_path / "app"
    write(root / "assets" / "x.onnx", X)
    (root / "models.toml").write_text(ONE_FILE, encoding="utf-8")
    return root


# --------------------------------------------------------------------------
# a file


def test_a_local_file_is_copied_into_the_store_and_pinned_relatively(single, cli, isolated, tmp_path):
    root = single
    result = cli("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    text = (root / "models.lock").read_text(encoding="utf-8")
    (entry,) = locked_files(root, "x")
    assert entry["path"] == "x.onnx"
    assert entry["size"] == len(X)
    assert entry["blake3"] == blake3_hex(X)
    assert entry["source"] == {"path": "assets/x.onnx"}
    assert 'source = { path = "assets/x.onnx" }' in text
    assert str(root) not in text and str(tmp_path) not in text and str(isolated) not in text
    # In the store, read-only, named by its blake3.
    blob = isolated / "blobs" / "blake3" / entry["blake3"][:2] / entry["blake3"][2:]
    assert blob.read_bytes() == X
    assert not blob.stat().st_mode & 0o222

    synced = cli("sync", "--locked", cwd=root)
    assert synced.returncode == 0, synced.stderr
    view = root / "models" / "x" / "x.onnx"
    assert view.read_bytes() == X
    assert Path(cli("path", "x", cwd=root).stdout.strip()) == view


def test_the_store_copy_serves_sync_when_the_local_file_is_gone(single, cli):
    root = single
    assert cli("lock", cwd=root).returncode == 0
    (root / "assets" / "x.onnx").unlink()
    result = cli("sync", "--frozen", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "x" / "x.onnx").read_bytes() == X


def test_the_lock_works_on_another_clone(single, cli, tmp_path):
    root = single
    assert cli("lock", cwd=root).returncode == 0
    clone = tmp_path / "elsewhere" / "clone"
    shutil.copytree(root, clone)
    check = cli("lock", "--check", cwd=clone)
    assert check.returncode == 0, check.stderr
    result = cli("sync", "--locked", cwd=clone, env={"MODELSYNC_CACHE_DIR": str(tmp_path / "other-cache")})
    assert result.returncode == 0, result.stderr
    assert (clone / "models" / "x" / "x.onnx").read_bytes() == X


def test_relocking_an_unchanged_local_file_rewrites_nothing(single, cli):
    root = single
    assert cli("lock", cwd=root).returncode == 0
    before = (root / "models.lock").read_bytes()
    assert cli("lock", cwd=root).returncode == 0
    assert (root / "models.lock").read_bytes() == before
    assert cli("lock", "--check", cwd=root).returncode == 0


def test_an_empty_local_file(tmp_path, cli):
    root = tmp_path / "app"
    write(root / "assets" / "empty.bin", b"")
    (root / "models.toml").write_text('[models.e]\npath = "assets/empty.bin"\n', encoding="utf-8")
    assert cli("lock", cwd=root).returncode == 0
    assert locked_files(root, "e")[0]["size"] == 0
    check = cli("lock", "--check", cwd=root)
    assert check.returncode == 0, check.stderr
    result = cli("sync", "--locked", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "e" / "empty.bin").read_bytes() == b""


# --------------------------------------------------------------------------
# a folder


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    folder = root / "assets" / "bundle"
    write(folder / "a.onnx", b"a" * 100)
    write(folder / "b.onnx", b"b" * 200)
    write(folder / "notes.txt", b"notes")
    write(folder / "sub" / "c.json", b"{}")
    write(folder / "sub" / "d.txt", b"d")
    return root


def test_a_folder_without_globs_pins_every_file(bundle, cli):
    root = bundle
    (root / "models.toml").write_text('[models.m]\npath = "assets/bundle"\n', encoding="utf-8")
    result = cli("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    entries = {f["path"]: f for f in locked_files(root, "m")}
    assert set(entries) == {"a.onnx", "b.onnx", "notes.txt", "sub/c.json", "sub/d.txt"}
    assert entries["sub/c.json"]["source"] == {"path": "assets/bundle/sub/c.json"}
    assert entries["b.onnx"]["blake3"] == blake3_hex(b"b" * 200)
    view = root / "models" / "m"
    for relative in entries:
        assert (view / relative).read_bytes() == (root / "assets" / "bundle" / relative).read_bytes()
    assert Path(cli("path", "m", cwd=root).stdout.strip()) == view
    assert Path(cli("path", "m", "sub/c.json", cwd=root).stdout.strip()) == view / "sub" / "c.json"


def test_a_folder_with_globs_pins_what_they_select(bundle, cli):
    root = bundle
    (root / "models.toml").write_text(
        '[models.m]\npath = "assets/bundle"\nfiles = ["*.onnx", "sub/*.json"]\n', encoding="utf-8"
    )
    result = cli("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert {f["path"] for f in locked_files(root, "m")} == {"a.onnx", "b.onnx", "sub/c.json"}
    view = root / "models" / "m"
    assert files_under(view) == sorted([view / "a.onnx", view / "b.onnx", view / "sub" / "c.json"])


def test_a_folder_glob_that_matches_nothing_is_bad_input(bundle, cli):
    root = bundle
    (root / "models.toml").write_text('[models.m]\npath = "assets/bundle"\nfiles = ["*.onnx", "*.safetensors"]\n', encoding="utf-8")
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "*.safetensors" in result.stderr
    assert not (root / "models.lock").exists()


def test_changing_a_file_of_a_folder_model_makes_the_lock_stale(bundle, cli):
    root = bundle
    (root / "models.toml").write_text('[models.m]\npath = "assets/bundle"\nfiles = ["*.onnx"]\n', encoding="utf-8")
    assert cli("lock", cwd=root).returncode == 0
    write(root / "assets" / "bundle" / "b.onnx", b"B" * 200)
    assert cli("lock", "--check", cwd=root).returncode == 1
    # A new file the glob selects is a change too.
    assert cli("lock", cwd=root).returncode == 0
    write(root / "assets" / "bundle" / "z.onnx", b"z")
    assert cli("lock", "--check", cwd=root).returncode == 1


# --------------------------------------------------------------------------
# the local file changes


def test_a_changed_local_file_makes_lock_check_fail_and_lock_repins_it(single, cli):
    root = single
    assert cli("lock", cwd=root).returncode == 0
    write(root / "assets" / "x.onnx", X2)  # same size, other bytes

    check = cli("lock", "--check", cwd=root)
    assert_clean_failure(check, 1)
    assert "x" in check.stderr

    result = cli("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    (entry,) = locked_files(root, "x")
    assert entry["blake3"] == blake3_hex(X2)
    assert cli("lock", "--check", cwd=root).returncode == 0

    synced = cli("sync", "--locked", cwd=root)
    assert synced.returncode == 0, synced.stderr
    assert (root / "models" / "x" / "x.onnx").read_bytes() == X2


def test_sync_frozen_after_the_local_file_changed_fails_with_a_hint(single, cli, tmp_path):
    root = single
    assert cli("lock", cwd=root).returncode == 0
    write(root / "assets" / "x.onnx", X2)
    fresh = tmp_path / "fresh-cache"  # the pinned bytes are nowhere: sync must copy the local file
    result = cli("sync", "--frozen", cwd=root, env={"MODELSYNC_CACHE_DIR": str(fresh)})
    assert_clean_failure(result, 1)
    assert "changed since it was locked" in result.stderr
    assert "assets/x.onnx" in result.stderr
    assert blake3_hex(X) in result.stderr and blake3_hex(X2) in result.stderr
    assert not (root / "models" / "x" / "x.onnx").exists()
    assert files_under(fresh / "blobs") == []


def test_sync_locked_after_the_local_file_changed_fails(single, cli):
    root = single
    assert cli("lock", cwd=root).returncode == 0
    before = (root / "models.lock").read_bytes()
    write(root / "assets" / "x.onnx", X2)
    result = cli("sync", "--locked", cwd=root)
    assert_clean_failure(result, 1)
    assert "x" in result.stderr and "modelsync lock" in result.stderr
    assert (root / "models.lock").read_bytes() == before
    assert not (root / "models" / "x" / "x.onnx").exists()


def test_plain_sync_after_the_local_file_changed_repins_and_updates_the_view(single, cli):
    root = single
    assert cli("sync", cwd=root).returncode == 0
    assert (root / "models" / "x" / "x.onnx").read_bytes() == X
    write(root / "assets" / "x.onnx", X2)
    result = cli("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert locked_files(root, "x")[0]["blake3"] == blake3_hex(X2)
    assert (root / "models" / "x" / "x.onnx").read_bytes() == X2


# --------------------------------------------------------------------------
# bad input


def test_a_missing_local_file_names_the_manifest_line(tmp_path, cli):
    root = tmp_path / "app"
    root.mkdir()
    (root / "models.toml").write_text(
        '[models.x]\ndescription = "classifier"\npath = "assets/missing.onnx"\n', encoding="utf-8"
    )
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "models.toml:3" in result.stderr
    assert "assets/missing.onnx" in result.stderr
    assert "path" in result.stderr
    assert not (root / "models.lock").exists()


@pytest.mark.parametrize("path", ["/etc/hostname", "~/model.onnx"])
def test_an_absolute_local_path_is_bad_input(tmp_path, cli, path):
    root = tmp_path / "app"
    root.mkdir()
    (root / "models.toml").write_text(f'[models.x]\npath = "{path}"\n', encoding="utf-8")
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "models.toml:2" in result.stderr
    assert "relative" in result.stderr


def test_files_on_a_file_path_is_bad_input(single, cli):
    root = single
    (root / "models.toml").write_text('[models.x]\npath = "assets/x.onnx"\nfiles = ["*.onnx"]\n', encoding="utf-8")
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "models.toml:3" in result.stderr


def test_an_empty_folder_is_bad_input(tmp_path, cli):
    root = tmp_path / "app"
    (root / "assets" / "empty").mkdir(parents=True)
    (root / "models.toml").write_text('[models.m]\npath = "assets/empty"\n', encoding="utf-8")
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "assets/empty" in result.stderr


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_a_user_digest_that_does_not_match_fails_lock_with_both_digests(single, cli, isolated, algorithm):
    root = single
    wrong = "ab" * 32
    (root / "models.toml").write_text(ONE_FILE + f'{algorithm} = "{wrong}"\n', encoding="utf-8")
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 1)
    actual = blake3_hex(X) if algorithm == "blake3" else hashlib.sha256(X).hexdigest()
    assert wrong in result.stderr
    assert actual in result.stderr
    assert algorithm in result.stderr
    assert not (root / "models.lock").exists()
    assert files_under(isolated / "blobs") == []


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_a_user_digest_that_matches_locks(single, cli, algorithm):
    root = single
    digest = blake3_hex(X) if algorithm == "blake3" else hashlib.sha256(X).hexdigest()
    (root / "models.toml").write_text(ONE_FILE + f'{algorithm} = "{digest}"\n', encoding="utf-8")
    result = cli("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert locked_files(root, "x")[0]["blake3"] == blake3_hex(X)
    assert (root / "models" / "x" / "x.onnx").read_bytes() == X
