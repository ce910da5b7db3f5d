"""Regression tests for defects found in review: hostile locks, downgrades, leaks, partial runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import assert_clean_failure, b3, payload, read_lock

from modelsync import _runtime


def gets(server, suffix: str) -> int:
    return sum(1 for request in server.requests if request.method == "GET" and request.path.split("?")[0].endswith(suffix))


def frozen_lock(root: Path, text: str) -> None:
    (root / "models.lock").write_text(text, encoding="utf-8")


LOCK_HEAD = '# @generated\nversion = 1\nmanifest-hash = "blake3:x"\n\n[[model]]\nname = "m"\n'
HEX = "0" * 64


# --------------------------------------------------------------------------
# A lock is input too: nothing in it may steer pip, the network or the disk


@pytest.mark.parametrize(
    "source",
    [
        'pypi = "x\\n--index-url http://127.0.0.1:9/simple\\nx", version = "1.0", wheel = "x-1.0-py3-none-any.whl"',
        'pypi = "x", version = "1.0 --trusted-host evil", wheel = "x-1.0-py3-none-any.whl"',
        'pypi = "x", version = "1.0", wheel = "../x-1.0-py3-none-any.whl"',
    ],
)
def test_lock_values_that_would_reach_pip_are_refused(tmp_path, cli, source):
    frozen_lock(
        tmp_path,
        LOCK_HEAD
        + 'source = { pypi = "x==1.0", file = "m.onnx" }\n'
        + f'files = [ {{ path = "m.onnx", size = 1, blake3 = "{HEX}", source = {{ {source}, wheel-sha256 = "{HEX}", member = "m.onnx" }} }} ]\n',
    )
    result = cli("sync", "--frozen", cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert "models.lock" in result.stderr
    assert "pip could not download" not in result.stderr  # refused before pip ran


def test_plain_http_in_a_lock_needs_allow_http(tmp_path, cli):
    frozen_lock(
        tmp_path,
        LOCK_HEAD + 'source = { url = "http://example.com/m.onnx" }\n'
        f'files = [ {{ path = "m.onnx", url = "http://example.com/m.onnx", size = 1, blake3 = "{HEX}" }} ]\n',
    )
    result = cli("sync", "--frozen", "--offline", cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert "without allow-http" in result.stderr


@pytest.mark.parametrize(
    "source, message",
    [
        ('{ hf = "org/m", revision = "main", file = "m.onnx" }', "commit"),
        (f'{{ hf = "org/m", revision = "main", file = "m.onnx", commit = "{"a" * 40}", repo-type = "model2" }}', "repository type"),
    ],
)
def test_a_malformed_hf_source_in_a_lock_is_bad_input(tmp_path, cli, source, message):
    frozen_lock(
        tmp_path,
        LOCK_HEAD + f"source = {source}\n"
        f'files = [ {{ path = "m.onnx", url = "https://huggingface.co/org/m/resolve/x/m.onnx", size = 1, blake3 = "{HEX}" }} ]\n',
    )
    result = cli("sync", "--frozen", cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert message in result.stderr


def test_a_lock_that_is_not_utf8_is_bad_input_for_every_command(tmp_path, cli, project):
    root = project('[models.m]\npath = "m.bin"\n')
    (root / "m.bin").write_bytes(b"x")
    (root / "models.lock").write_bytes(b"version = 1\n\xff\xfe\n")
    for args in (["sync", "--frozen"], ["sync"], ["lock"], ["lock", "--check"], ["status"]):
        result = cli(*args, cwd=root)
        assert_clean_failure(result, 2)
        assert "not UTF-8" in result.stderr, args


# --------------------------------------------------------------------------
# Manifest edges


@pytest.mark.parametrize("repo", ["org/model-", "org/model.git", "-org/model"])
def test_hf_repository_ids_the_hub_would_refuse_are_manifest_errors(project, cli, repo):
    root = project(f'[models.m]\nhf = "{repo}"\nfile = "m.onnx"\n')
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "models.toml:2" in result.stderr


@pytest.mark.parametrize("path", ["", ".", "./"])
def test_a_path_naming_the_project_itself_is_refused(project, cli, path):
    root = project(f'[models.m]\npath = "{path}"\nfiles = ["*.bin"]\n')
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "project folder itself" in result.stderr
    assert not (root / "models.lock").exists()


def test_an_uppercase_https_scheme_is_https(http_server, project, run):
    url = http_server.add("m.bin", b"bytes")
    loud = "HTTP" + url[len("http") :]
    root = project(f'[models.m]\nurl = "{loud}"\n')
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    (file,) = read_lock(root)["model"][0]["files"]
    assert file["url"] == url  # the scheme is written as the lock reader expects it
    assert run("sync", "--locked", cwd=root).returncode == 0  # and the lock reads back


# --------------------------------------------------------------------------
# Shared blobs, partial runs, the state


def test_a_blob_shared_with_an_optional_model_comes_from_the_required_models_source(http_server, project, run, isolated):
    data = payload("shared", 3000)
    mirror = http_server.add("mirror/c.bin", data)
    main = http_server.add("main/c.bin", data)
    root = project(f'[models.a-mirror]\nurl = "{mirror}"\noptional = true\n\n[models.b-main]\nurl = "{main}"\n')
    assert run("lock", cwd=root).returncode == 0
    for blob in (isolated / "blobs").rglob("*"):  # a fresh cache
        if blob.is_file():
            blob.chmod(0o644)
            blob.unlink()
    del http_server.files["/mirror/c.bin"]  # the optional model's source is gone
    result = run("sync", "--frozen", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "b-main" / "c.bin").read_bytes() == data


def test_an_interrupted_multi_file_model_keeps_what_finished(hf_hub, project, run, isolated):
    big, small = payload("big", 300_000), b'{"ok": true}'
    hf_hub.add_repo("org/m", {"big.onnx": big, "small.json": small})
    root = project('[models.m]\nhf = "org/m"\nfiles = ["*"]\n')
    assert run("lock", cwd=root).returncode == 0
    for blob in (isolated / "blobs").rglob("*"):  # a fresh cache: sync must download
        if blob.is_file():
            blob.unlink()

    def missing(handler, body):
        handler.send_response(404)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    hf_hub.hooks["small.json"] = missing
    failed = run("sync", "--frozen", cwd=root)
    assert failed.returncode == 1
    assert gets(hf_hub, "big.onnx") == 2  # once at lock, once now
    del hf_hub.hooks["small.json"]
    result = run("sync", "--frozen", cwd=root)
    assert result.returncode == 0, result.stderr
    assert gets(hf_hub, "big.onnx") == 2  # finished before the failure: not fetched again
    assert (root / "models" / "m" / "big.onnx").read_bytes() == big


def test_the_state_names_the_lock_that_was_synced(http_server, project, run):
    root = project(f'[models.m]\nurl = "{http_server.add("m.bin", b"one")}"\n')
    assert run("sync", cwd=root).returncode == 0
    state = json.loads((root / ".modelsync" / "state.json").read_text())
    import hashlib

    assert state["lock-sha256"] == hashlib.sha256((root / "models.lock").read_bytes()).hexdigest()
    assert set(state["placed"]) == {"m/m.bin"}


# --------------------------------------------------------------------------
# The Hugging Face endpoint, offline


def test_credentials_in_hf_endpoint_never_reach_an_error_message(hf_hub, project, run, monkeypatch):
    hf_hub.add_repo("org/m", {"config.json": b"{}"})
    monkeypatch.setenv("HF_ENDPOINT", hf_hub.endpoint.replace("http://", "http://alice:s3cret@"))
    root = project('[models.m]\nhf = "org/m"\nfile = "config.json"\n')
    result = run("lock", cwd=root)  # the test hub refuses these credentials
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr
    assert "***@" in result.stderr


def test_the_lock_records_the_hf_endpoint_without_credentials(monkeypatch):
    from modelsync.sources import hf

    monkeypatch.setenv("HF_ENDPOINT", "https://alice:s3cret@mirror.example/hub/")
    assert hf.public_endpoint() == "https://mirror.example/hub"
    assert hf.file_url("model", "org/m", "a" * 40, "x y.json", base=hf.public_endpoint()) == (
        "https://mirror.example/hub/org/m/resolve/" + "a" * 40 + "/x%20y.json"
    )


def test_offline_sync_takes_files_from_the_hf_cache(hf_hub, project, run, isolated, monkeypatch):
    from huggingface_hub import snapshot_download

    hf_hub.add_repo("org/m", {"config.json": b'{"a": 1}', "model.onnx": payload("onnx", 5000)})
    root = project('[models.m]\nhf = "org/m"\nfiles = ["*"]\n')
    assert run("lock", cwd=root).returncode == 0
    for blob in (isolated / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    snapshot_download("org/m", endpoint=hf_hub.endpoint, cache_dir=os.environ["HF_HUB_CACHE"])
    before = len(hf_hub.requests)
    result = run("sync", "--frozen", "--offline", cwd=root)
    assert result.returncode == 0, result.stderr
    assert len(hf_hub.requests) == before
    assert b3((root / "models" / "m" / "model.onnx").read_bytes()) == b3(payload("onnx", 5000))


# --------------------------------------------------------------------------
# The disk


def test_a_cache_path_that_is_a_file_is_an_error_not_a_crash(http_server, project, cli, tmp_path):
    root = project(f'[models.m]\nurl = "{http_server.add("m.bin", b"x")}"\n')
    not_a_folder = tmp_path / "cachefile"
    not_a_folder.write_text("")
    result = cli("sync", cwd=root, env={"MODELSYNC_CACHE_DIR": str(not_a_folder)})
    assert_clean_failure(result, 1)
    assert "error:" in result.stderr


def test_path_still_serves_only_complete_models(http_server, project, run):
    root = project(f'[models.m]\nurl = "{http_server.add("m.bin", b"x")}"\n')
    assert run("sync", cwd=root).returncode == 0
    assert _runtime.path("m", project=root).read_bytes() == b"x"
