"""`modelsync lock` and `modelsync sync` against a local HTTP server: what a user sees.

Most tests run the CLI's ``main()`` in-process (``run``: exit code, stdout,
stderr, files on disk), which keeps the file fast; the ones closest to how a
user meets the tool run ``python -m modelsync`` in a subprocess (``cli``), and
a few call the library directly where they need the plan itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tomllib
from pathlib import Path


import pytest
from helpers import b3, payload

from modelsync import _runtime
from modelsync import plan as planning
from modelsync import lockfile
from modelsync.store import Store

BLOB_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{62}$")


# --------------------------------------------------------------------------
# helpers


def blob_files(cache: Path) -> dict[str, Path]:
    """'ab/cdef…' -> path, for every file under <cache>/blobs/blake3."""
    root = cache / "blobs" / "blake3"
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def blob_path(cache: Path, data: bytes) -> Path:
    digest = b3(data)
    return cache / "blobs" / "blake3" / digest[:2] / digest[2:]


def tmp_leftovers(cache: Path) -> list[Path]:
    """Files left in the cache's temp area. Its layout folders and the per-blob lock
    files (kept on purpose: see Claim.release) are not leftovers."""
    tmp = cache / "tmp"
    return [p for p in tmp.rglob("*") if not p.is_dir() and p.parent.name != "locks"] if tmp.exists() else []


def view_temp_files(root: Path) -> list[Path]:
    view = root / "models"
    return [p for p in view.rglob("*") if p.name.endswith(".tmp")] if view.exists() else []


def new_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str = "cache2") -> Path:
    """Point MODELSYNC_CACHE_DIR (of this process and of every CLI run after) at an empty cache."""
    cache = tmp_path / name
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(cache))
    return cache


def gets(server) -> list:
    return [r for r in server.requests if r.method == "GET"]


def lock_blocks(text: str) -> dict[str, str]:
    """model name -> the exact text of its [[model]] entry in models.lock."""
    blocks = {}
    for part in text.split("\n[[model]]\n")[1:]:
        blocks[tomllib.loads(part)["name"]] = part
    return blocks


def read_only(path: Path) -> bool:
    # We may run as root, for whom os.access() always says writable: look at the mode bits.
    return stat.S_IMODE(path.stat().st_mode) & 0o222 == 0


def two_models(http_server, project, extra: str = ""):
    alpha = payload("alpha", 3000)
    beta = payload("beta", 1536)
    url_a = http_server.add("files/alpha.onnx", alpha)
    url_b = http_server.add("files/beta.bin", beta)
    root = project(f'''
        {extra}
        [models.alpha]
        url = "{url_a}"
        description = "first"

        [models.beta]
        url = "{url_b}"
    ''')
    return root, alpha, beta


# --------------------------------------------------------------------------
# sync: view, store, idempotence


def test_sync_places_files_and_fills_a_content_addressed_read_only_cache(http_server, project, run, isolated):
    root, alpha, beta = two_models(http_server, project)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr

    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha
    assert (root / "models" / "beta" / "beta.bin").read_bytes() == beta
    assert (root / "models.lock").is_file()

    blobs = blob_files(isolated)
    assert set(blobs) == {b3(alpha)[:2] + "/" + b3(alpha)[2:], b3(beta)[:2] + "/" + b3(beta)[2:]}
    for name, blob in blobs.items():
        assert BLOB_NAME.match(name)
        assert b3(blob.read_bytes()) == name.replace("/", "")
        assert read_only(blob), f"blob {name} is writable"

    tag = isolated / "CACHEDIR.TAG"
    assert tag.read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert tmp_leftovers(isolated) == []
    assert view_temp_files(root) == []
    # each file was downloaded exactly once (lock pins it, sync reuses the bytes)
    assert sorted(r.path for r in gets(http_server)) == ["/files/alpha.onnx", "/files/beta.bin"]


def test_second_sync_makes_no_request_and_reports_nothing_to_do(http_server, project, run, cli):
    root, alpha, _ = two_models(http_server, project)
    assert run("sync", cwd=root).returncode == 0
    before = len(http_server.requests)
    lock_before = (root / "models.lock").read_bytes()

    again = cli("sync", cwd=root)
    assert again.returncode == 0, again.stderr
    assert len(http_server.requests) == before
    assert "up to date" in again.stderr
    assert (root / "models.lock").read_bytes() == lock_before

    as_json = cli("sync", "--json", cwd=root)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["fetch"] == [] and report["link"] == [] and report["remove"] == []
    assert report["fetched_bytes"] == 0
    assert len(http_server.requests) == before
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha


def test_the_state_lists_each_models_paths_and_records_each_file_once(http_server, project, run):
    root, alpha, beta = two_models(http_server, project)
    assert run("sync", cwd=root).returncode == 0
    state = json.loads((root / ".modelsync" / "state.json").read_text())
    assert state["models"]["alpha"]["files"] == ["alpha.onnx"]
    assert state["models"]["beta"]["files"] == ["beta.bin"]
    view_file = root / "models" / "alpha" / "alpha.onnx"
    info = view_file.stat()
    assert state["placed"]["alpha/alpha.onnx"] == {"blake3": b3(alpha), "size": len(alpha), "mtime_ns": info.st_mtime_ns, "ino": info.st_ino}
    assert set(state["placed"]) == {"alpha/alpha.onnx", "beta/beta.bin"}


def test_a_state_from_before_placed_records_is_still_trusted(http_server, project, run):
    """A state of an earlier release kept the records under each model's files."""
    root, _, _ = two_models(http_server, project)
    assert run("sync", cwd=root).returncode == 0
    path = root / ".modelsync" / "state.json"
    state = json.loads(path.read_text())
    placed = state.pop("placed")
    for name, entry in state["models"].items():
        entry["files"] = {file: placed[f"{name}/{file}"] for file in entry["files"]}
    path.write_text(json.dumps(state))
    lock = lockfile.read(root / "models.lock")
    variants = dict.fromkeys(planning.models_in(lock))
    observed = planning.observe(lock, variants, Store(), root / "models", _runtime.read_state(root))
    assert observed.view_ok == {"alpha/alpha.onnx", "beta/beta.bin"}
    assert planning.make_plan(lock, variants, observed).empty


def test_plan_is_empty_after_sync(http_server, project, run):
    root, _, _ = two_models(http_server, project)
    assert run("sync", cwd=root).returncode == 0
    lock = lockfile.read(root / "models.lock")
    models = planning.models_in(lock)
    assert models == ("alpha", "beta")
    variants = dict.fromkeys(models)  # no variants: every model gets its one set of files
    observed = planning.observe(lock, variants, Store(), root / "models", _runtime.read_state(root))
    plan = planning.make_plan(lock, variants, observed)
    assert plan.empty, plan
    assert plan.fetch == () and plan.link == () and plan.remove == ()


def test_plan_after_lock_only_links_and_with_empty_cache_fetches(http_server, project, run, tmp_path, monkeypatch):
    root, alpha, beta = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    lock = lockfile.read(root / "models.lock")
    models = dict.fromkeys(planning.models_in(lock))
    # lock put the bytes in the store: nothing to fetch, two files to place
    plan = planning.make_plan(lock, models, planning.observe(lock, models, Store(), root / "models", None))
    assert plan.fetch == ()
    assert sorted(i.file.path for i in plan.link) == ["alpha.onnx", "beta.bin"]
    # an empty cache: both blobs must be fetched
    empty = Store(new_cache(monkeypatch, tmp_path))
    plan = planning.make_plan(lock, models, planning.observe(lock, models, empty, root / "models", None))
    assert sorted(i.file.path for i in plan.fetch) == ["alpha.onnx", "beta.bin"]
    assert plan.fetch_bytes == len(alpha) + len(beta)


# --------------------------------------------------------------------------
# lock


def test_lock_pins_size_and_blake3_in_a_generated_sorted_file(http_server, project, run):
    root, alpha, beta = two_models(http_server, project)
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    text = (root / "models.lock").read_text()
    assert text.startswith("# This file is @generated by modelsync.")
    data = tomllib.loads(text)
    assert data["version"] == 1
    assert data["manifest-hash"].startswith("blake3:")
    assert [m["name"] for m in data["model"]] == ["alpha", "beta"]
    (fa,) = data["model"][0]["files"]
    (fb,) = data["model"][1]["files"]
    assert (fa["path"], fa["size"], fa["blake3"]) == ("alpha.onnx", len(alpha), b3(alpha))
    assert (fb["path"], fb["size"], fb["blake3"]) == ("beta.bin", len(beta), b3(beta))
    assert data["model"][0]["description"] == "first"
    # one line per file
    assert sum(1 for line in text.splitlines() if '"alpha.onnx"' in line) == 1
    assert str(root) not in text


def test_lock_twice_is_byte_identical_and_makes_no_request(http_server, project, run):
    root, _, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    first = (root / "models.lock").read_bytes()
    mtime = (root / "models.lock").stat().st_mtime_ns
    before = len(http_server.requests)

    again = run("lock", cwd=root)
    assert again.returncode == 0, again.stderr
    assert (root / "models.lock").read_bytes() == first
    assert (root / "models.lock").stat().st_mtime_ns == mtime  # not even rewritten
    assert len(http_server.requests) == before


def test_changing_a_description_relocks_without_download(http_server, project, run):
    root, alpha, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    old = lock_blocks((root / "models.lock").read_text())
    before = len(http_server.requests)

    manifest = root / "models.toml"
    manifest.write_text(manifest.read_text().replace('description = "first"', 'description = "the first model"'))
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    assert len(http_server.requests) == before
    new = lock_blocks((root / "models.lock").read_text())
    assert tomllib.loads(new["alpha"])["description"] == "the first model"
    assert tomllib.loads(new["alpha"])["files"] == tomllib.loads(old["alpha"])["files"]
    assert new["beta"] == old["beta"]
    # and the lock is fresh again
    assert run("lock", "--check", cwd=root).returncode == 0


def test_changing_a_url_repins_only_that_model(http_server, project, run):
    root, _, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    old = lock_blocks((root / "models.lock").read_text())
    before = len(http_server.requests)

    alpha2 = payload("alpha-v2", 2500)
    url2 = http_server.add("files/v2/alpha.onnx", alpha2)
    manifest = root / "models.toml"
    manifest.write_text(manifest.read_text().replace(http_server.url("files/alpha.onnx"), url2))
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr

    new = lock_blocks((root / "models.lock").read_text())
    assert new["beta"] == old["beta"]
    (file,) = tomllib.loads(new["alpha"])["files"]
    assert (file["size"], file["blake3"], file["url"]) == (len(alpha2), b3(alpha2), url2)
    assert {r.path for r in http_server.requests[before:]} == {"/files/v2/alpha.onnx"}  # (a HEAD, then the GET)


def test_removing_a_model_drops_it_from_lock_and_view_but_keeps_user_files(http_server, project, run):
    root, alpha, beta = two_models(http_server, project)
    assert run("sync", cwd=root).returncode == 0
    # files the user put there themselves
    (root / "models" / "notes.txt").write_text("mine")
    (root / "models" / "beta" / "README.txt").write_text("mine too")
    (root / "other.bin").write_bytes(b"user data")

    manifest = root / "models.toml"
    text = manifest.read_text()
    manifest.write_text(text[: text.index("[models.beta]")])
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr

    lock = tomllib.loads((root / "models.lock").read_text())
    assert [m["name"] for m in lock["model"]] == ["alpha"]
    assert not (root / "models" / "beta" / "beta.bin").exists()
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha
    assert (root / "models" / "notes.txt").read_text() == "mine"
    assert (root / "models" / "beta" / "README.txt").read_text() == "mine too"
    assert (root / "other.bin").read_bytes() == b"user data"


def test_lock_of_removed_model_alone_then_sync_removes_view_file(http_server, project, run):
    root, _, _ = two_models(http_server, project)
    assert run("sync", cwd=root).returncode == 0
    manifest = root / "models.toml"
    text = manifest.read_text()
    manifest.write_text(text[: text.index("[models.beta]")])
    assert run("lock", cwd=root).returncode == 0
    assert "beta" not in lock_blocks((root / "models.lock").read_text())
    assert (root / "models" / "beta" / "beta.bin").exists()  # lock never touches the view
    assert run("sync", "--frozen", cwd=root).returncode == 0
    assert not (root / "models" / "beta").exists()


# --------------------------------------------------------------------------
# integrity


def test_hash_mismatch_fails_names_digests_and_keeps_nothing(http_server, project, run, cli, tmp_path, monkeypatch):
    root, alpha, beta = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    bad = payload("evil", len(alpha))  # same size, other bytes
    http_server.files["/files/alpha.onnx"] = bad
    cache = new_cache(monkeypatch, tmp_path)

    result = cli("sync", cwd=root)
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "alpha" in err and "alpha.onnx" in err
    assert b3(alpha) in err, err
    assert b3(bad) in err, err
    assert "Traceback" not in err

    assert not (root / "models" / "alpha" / "alpha.onnx").exists()
    assert not blob_path(cache, bad).exists()
    assert all(p.read_bytes() != bad for p in blob_files(cache).values())
    assert tmp_leftovers(cache) == []
    assert view_temp_files(root) == []
    # the other model was not held back by the failure
    assert (root / "models" / "beta" / "beta.bin").read_bytes() == beta


def test_hash_mismatch_is_retried_once(http_server, project, run, tmp_path, monkeypatch):
    """DESIGN §7: a hash mismatch is retried once, then fails."""
    root, alpha, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    new_cache(monkeypatch, tmp_path)
    served = {"n": 0}

    def corrupt_once(handler, body):
        served["n"] += 1
        return payload("flipped", len(body)) if served["n"] == 1 else body

    http_server.hooks["/files/alpha.onnx"] = corrupt_once
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha
    assert served["n"] == 2


def _no_length_body(extra: bytes):
    """A hook that answers without Content-Length and closes: the body runs until EOF."""

    def hook(handler, body):
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body + extra)
        handler.wfile.flush()
        handler.close_connection = True
        return None

    return hook


@pytest.mark.parametrize("how", ["longer", "shorter", "longer-no-length"])
def test_size_mismatch_fails_and_keeps_nothing(http_server, project, run, cli, tmp_path, monkeypatch, how):
    root, alpha, beta = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    if how == "longer":
        http_server.files["/files/alpha.onnx"] = alpha + b"x" * 100
    elif how == "shorter":
        http_server.files["/files/alpha.onnx"] = alpha[:1000]
    else:
        http_server.hooks["/files/alpha.onnx"] = _no_length_body(b"y" * 5000)
    cache = new_cache(monkeypatch, tmp_path)

    result = cli("sync", cwd=root)  # a subprocess: its stderr holds only modelsync's output
    assert result.returncode == 1, result.stderr
    assert "alpha" in result.stderr
    assert "size" in result.stderr
    assert str(len(alpha)) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "models" / "alpha" / "alpha.onnx").exists()
    assert set(blob_files(cache)) == {b3(beta)[:2] + "/" + b3(beta)[2:]}
    assert tmp_leftovers(cache) == []


# --------------------------------------------------------------------------
# flags


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_lists_every_missing_file_with_size_and_makes_no_request(http_server, project, run, cli, tmp_path, monkeypatch, how):
    root, alpha, beta = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    new_cache(monkeypatch, tmp_path)
    before = len(http_server.requests)

    if how == "flag":
        result = cli("sync", "--offline", cwd=root)
    else:
        result = cli("sync", cwd=root, env={"MODELSYNC_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr
    assert len(http_server.requests) == before
    lines = result.stderr.splitlines()
    line_a = next(line for line in lines if "alpha/alpha.onnx" in line)
    line_b = next(line for line in lines if "beta/beta.bin" in line)
    assert "2.9 KiB" in line_a or "3000" in line_a, line_a
    assert "1.5 KiB" in line_b or "1536" in line_b, line_b
    assert "Traceback" not in result.stderr
    assert not (root / "models" / "alpha").exists()


def test_offline_with_everything_cached_succeeds(http_server, project, run):
    root, alpha, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    before = len(http_server.requests)
    result = run("sync", "--offline", cwd=root)
    assert result.returncode == 0, result.stderr
    assert len(http_server.requests) == before
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha


def test_dry_run_lists_fetch_and_place_and_changes_nothing(http_server, project, run, tmp_path, monkeypatch):
    root, _, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    lock_before = (root / "models.lock").read_bytes()
    cache = new_cache(monkeypatch, tmp_path)
    before = len(http_server.requests)

    result = run("sync", "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^fetch\s+alpha/alpha\.onnx\s+2\.9 KiB", out, re.M), out
    assert re.search(r"^fetch\s+beta/beta\.bin\s+1\.5 KiB", out, re.M), out
    assert re.search(r"^place\s+alpha/alpha\.onnx", out, re.M), out
    assert re.search(r"^place\s+beta/beta\.bin", out, re.M), out

    assert len(http_server.requests) == before
    assert not (root / "models").exists()
    assert not _runtime.state_path(root).exists()
    assert (root / "models.lock").read_bytes() == lock_before
    assert blob_files(cache) == {}


def test_dry_run_without_lock_writes_no_lock_and_makes_no_request(http_server, project, run):
    root, _, _ = two_models(http_server, project)
    result = run("sync", "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^lock\s+alpha", result.stdout, re.M), result.stdout
    assert re.search(r"^lock\s+beta", result.stdout, re.M), result.stdout
    assert http_server.requests == []
    assert not (root / "models.lock").exists()
    assert not (root / "models").exists()


def test_json_report_holds_the_plan(http_server, project, run, tmp_path, monkeypatch):
    root, alpha, beta = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    new_cache(monkeypatch, tmp_path)
    result = run("sync", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["models"] == ["alpha", "beta"]
    assert sorted((f["model"], f["path"], f["size"]) for f in report["fetch"]) == [
        ("alpha", "alpha.onnx", len(alpha)),
        ("beta", "beta.bin", len(beta)),
    ]
    assert sorted((f["model"], f["path"]) for f in report["link"]) == [("alpha", "alpha.onnx"), ("beta", "beta.bin")]
    assert report["fetched_bytes"] == len(alpha) + len(beta)
    assert report["dry_run"] is False
    assert (root / "models" / "beta" / "beta.bin").read_bytes() == beta

    dry = run("sync", "--json", "--dry-run", cwd=root)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True


def test_quiet_prints_nothing_on_success(http_server, project, cli):
    root, alpha, _ = two_models(http_server, project)
    result = cli("sync", "-q", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha


@pytest.mark.parametrize(
    "edit",
    [
        lambda text, server: text.replace('description = "first"', 'description = "changed"'),
        lambda text, server: text + f'\n[models.gamma]\nurl = "{server.url("files/beta.bin")}"\nfilename = "gamma.bin"\n',
    ],
    ids=["description", "new-model"],
)
def test_locked_with_stale_lock_fails_and_leaves_lock(http_server, project, run, edit):
    root, _, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    lock_before = (root / "models.lock").read_bytes()
    manifest = root / "models.toml"
    manifest.write_text(edit(manifest.read_text(), http_server))
    before = len(http_server.requests)

    result = run("sync", "--locked", cwd=root)
    assert result.returncode == 1, result.stderr
    assert "modelsync lock" in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "models.lock").read_bytes() == lock_before
    assert len(http_server.requests) == before
    assert not (root / "models").exists()


def test_locked_with_fresh_lock_syncs(http_server, project, run):
    root, alpha, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    result = run("sync", "--locked", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha


def test_frozen_syncs_from_lock_without_manifest(http_server, project, run, tmp_path, monkeypatch):
    root, alpha, beta = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    (root / "models.toml").unlink()
    new_cache(monkeypatch, tmp_path)
    result = run("sync", "--frozen", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha
    assert (root / "models" / "beta" / "beta.bin").read_bytes() == beta
    assert not (root / "models.toml").exists()


def test_frozen_ignores_manifest_edits(http_server, project, run):
    root, alpha, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    lock_before = (root / "models.lock").read_bytes()
    manifest = root / "models.toml"
    manifest.write_text(manifest.read_text() + '\n[models.gamma]\nurl = "https://example.invalid/g.bin"\n')
    before = len(http_server.requests)
    result = run("sync", "--frozen", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models.lock").read_bytes() == lock_before
    assert len(http_server.requests) == before
    assert not (root / "models" / "gamma").exists()
    assert (root / "models" / "alpha" / "alpha.onnx").read_bytes() == alpha


def test_lock_check_exit_codes_and_never_writes(http_server, project, run):
    root, _, _ = two_models(http_server, project)
    missing = run("lock", "--check", cwd=root)
    assert missing.returncode == 1, missing.stderr
    assert not (root / "models.lock").exists()
    assert http_server.requests == []

    assert run("lock", cwd=root).returncode == 0
    text = (root / "models.lock").read_bytes()
    before = len(http_server.requests)
    fresh = run("lock", "--check", cwd=root)
    assert fresh.returncode == 0, fresh.stderr

    manifest = root / "models.toml"
    manifest.write_text(manifest.read_text().replace(http_server.url("files/alpha.onnx"), http_server.url("files/other.onnx")))
    stale = run("lock", "--check", cwd=root)
    assert stale.returncode == 1, stale.stderr
    assert "modelsync lock" in stale.stderr
    assert (root / "models.lock").read_bytes() == text
    assert len(http_server.requests) == before


def test_group_syncs_only_that_group(http_server, project, run):
    a, b, c = payload("a", 100), payload("b", 200), payload("c", 300)
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", a)}"
        group = "audio"

        [models.b]
        url = "{http_server.add("b.bin", b)}"
        group = ["vision", "audio"]

        [models.c]
        url = "{http_server.add("c.bin", c)}"
        group = "vision"
    ''')
    result = run("sync", "--group", "audio", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "a" / "a.bin").read_bytes() == a
    assert (root / "models" / "b" / "b.bin").read_bytes() == b
    assert not (root / "models" / "c").exists()


def test_unknown_group_is_a_usage_error(http_server, project, run):
    root, _, _ = two_models(http_server, project, extra="")
    manifest = root / "models.toml"
    manifest.write_text(manifest.read_text().replace('description = "first"', 'group = "audio"'))
    result = run("sync", "--group", "audoi", cwd=root)
    assert result.returncode == 2, result.stderr
    assert "audoi" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "models").exists()


# --------------------------------------------------------------------------
# link modes and the view


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_link_modes(http_server, project, run, isolated, mode):
    data = payload("linked", 4000)
    url = http_server.add("m/model.onnx", data)
    root = project(f'''
        [settings]
        link = "{mode}"

        [models.m]
        url = "{url}"
    ''')
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    view = root / "models" / "m" / "model.onnx"
    blob = blob_path(isolated, data)
    assert view.read_bytes() == data
    assert read_only(view)
    assert read_only(blob)
    if mode == "hardlink":
        assert not view.is_symlink()
        assert view.stat().st_ino == blob.stat().st_ino
    elif mode == "symlink":
        assert view.is_symlink()
        assert view.resolve() == blob.resolve()
    else:
        assert not view.is_symlink()
        assert view.stat().st_ino != blob.stat().st_ino
    # and a second sync is still a no-op in this mode
    before = len(http_server.requests)
    again = run("sync", "--json", cwd=root)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["link"] == []
    assert len(http_server.requests) == before


def test_deleted_view_file_is_restored_without_download(http_server, project, run):
    root, alpha, _ = two_models(http_server, project)
    assert run("sync", cwd=root).returncode == 0
    target = root / "models" / "alpha" / "alpha.onnx"
    target.unlink()
    before = len(http_server.requests)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == alpha
    assert len(http_server.requests) == before


@pytest.mark.parametrize("mode", ["copy", "hardlink"])
@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_edited_view_file_is_restored(http_server, project, run, isolated, mode, same_size):
    data = payload("orig", 5000)
    url = http_server.add("m/model.onnx", data)
    root = project(f'''
        [settings]
        link = "{mode}"

        [models.m]
        url = "{url}"
    ''')
    assert run("sync", cwd=root).returncode == 0
    target = root / "models" / "m" / "model.onnx"
    # the user makes the read-only file writable and edits it in place
    os.chmod(target, 0o644)
    edit = b"E" * 100 if same_size else b"appended by the user"
    with open(target, "r+b" if same_size else "ab") as handle:
        handle.write(edit)

    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == data
    assert read_only(target)
    assert blob_path(isolated, data).read_bytes() == data


def test_view_file_never_replaced_by_partial_file_on_failure(http_server, project, run, tmp_path, monkeypatch):
    """A failing download leaves no partial file at the final path (nor a temp file in the view)."""
    root, alpha, _ = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    new_cache(monkeypatch, tmp_path)

    calls = {"n": 0}

    def half_then_404(handler, body):
        calls["n"] += 1
        if calls["n"] > 1:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        return None

    http_server.hooks["/files/alpha.onnx"] = half_then_404
    result = run("sync", cwd=root)
    assert result.returncode == 1, result.stderr
    assert not (root / "models" / "alpha" / "alpha.onnx").exists()
    assert view_temp_files(root) == []


# --------------------------------------------------------------------------
# failures of the upstream


def test_optional_model_that_404s_warns_and_others_sync(http_server, project, run, tmp_path, monkeypatch):
    good = payload("good", 700)
    extra = payload("extra", 800)
    root = project(f'''
        [models.good]
        url = "{http_server.add("good.bin", good)}"

        [models.extra]
        url = "{http_server.add("extra.bin", extra)}"
        optional = true
    ''')
    assert run("lock", cwd=root).returncode == 0
    del http_server.files["/extra.bin"]  # the optional file disappears upstream
    new_cache(monkeypatch, tmp_path)

    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr.lower()
    assert "extra" in result.stderr
    assert (root / "models" / "good" / "good.bin").read_bytes() == good
    assert not (root / "models" / "extra" / "extra.bin").exists()


def test_required_model_that_404s_fails_naming_the_url(http_server, project, run):
    good = payload("good", 700)
    root = project(f'''
        [models.good]
        url = "{http_server.add("good.bin", good)}"

        [models.gone]
        url = "{http_server.url("nothing/here.bin")}"
    ''')
    result = run("sync", cwd=root)
    assert result.returncode == 1, result.stderr
    assert http_server.url("nothing/here.bin") in result.stderr
    assert "404" in result.stderr
    assert "Traceback" not in result.stderr


def test_required_model_that_404s_after_lock_fails_naming_the_url(http_server, project, run, tmp_path, monkeypatch):
    root, alpha, beta = two_models(http_server, project)
    assert run("lock", cwd=root).returncode == 0
    del http_server.files["/files/alpha.onnx"]
    new_cache(monkeypatch, tmp_path)
    result = run("sync", cwd=root)
    assert result.returncode == 1, result.stderr
    assert http_server.url("files/alpha.onnx") in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "models" / "beta" / "beta.bin").read_bytes() == beta
    assert not (root / "models" / "alpha" / "alpha.onnx").exists()


# --------------------------------------------------------------------------
# retries and resume (in-process: short backoff)


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("MODELSYNC_HTTP_BACKOFF", "0.01")


def _sync_in_process(root: Path, **options):
    from modelsync.syncer import SyncOptions, sync_project

    return sync_project(root, SyncOptions(**options))


def _lock_then_empty_cache(http_server, project, monkeypatch, tmp_path, size=3 * (1 << 20) + 123):
    data = payload("big", size)
    url = http_server.add("big/model.safetensors", data)
    root = project(f'''
        [models.big]
        url = "{url}"
    ''')
    _sync_in_process(root)  # lock (and first sync) with a healthy server
    shutil.rmtree(root / "models")
    (root / _runtime.STATE_DIR / _runtime.STATE_FILE).unlink()
    cache = new_cache(monkeypatch, tmp_path)
    return root, data, cache


def test_503_twice_then_success(http_server, project, monkeypatch, tmp_path, fast_retries):
    root, data, cache = _lock_then_empty_cache(http_server, project, monkeypatch, tmp_path, size=2000)
    calls = {"n": 0}

    def flaky(handler, body):
        calls["n"] += 1
        if calls["n"] <= 2:
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        return body

    http_server.hooks["/big/model.safetensors"] = flaky
    report = _sync_in_process(root)
    assert calls["n"] == 3
    assert report.outcome is not None and report.outcome.failures == []
    assert (root / "models" / "big" / "model.safetensors").read_bytes() == data
    assert blob_path(cache, data).read_bytes() == data


def test_503_until_attempts_run_out_fails_with_network_error(http_server, project, monkeypatch, tmp_path, fast_retries):
    from modelsync.errors import NetworkError

    root, data, cache = _lock_then_empty_cache(http_server, project, monkeypatch, tmp_path, size=2000)

    def always_503(handler, body):
        handler.send_response(503)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return None

    http_server.hooks["/big/model.safetensors"] = always_503
    with pytest.raises(NetworkError) as info:
        _sync_in_process(root)
    assert http_server.url("big/model.safetensors") in str(info.value)
    assert not (root / "models" / "big" / "model.safetensors").exists()
    assert not blob_path(cache, data).exists()


def _drop_first_response(state: dict):
    def hook(handler, body):
        if not state.get("dropped"):
            state["dropped"] = True
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return None
        return body

    return hook


def test_connection_dropped_mid_body_is_resumed(http_server, project, monkeypatch, tmp_path, fast_retries):
    root, data, cache = _lock_then_empty_cache(http_server, project, monkeypatch, tmp_path)
    state: dict = {}
    http_server.hooks["/big/model.safetensors"] = _drop_first_response(state)
    before = len(http_server.requests)
    _sync_in_process(root)
    assert state["dropped"]
    assert (root / "models" / "big" / "model.safetensors").read_bytes() == data
    assert blob_path(cache, data).read_bytes() == data
    assert tmp_leftovers(cache) == []
    retried = http_server.requests[before + 1 :]
    assert retried, "no second request after the drop"


def test_connection_dropped_and_server_ignores_range(http_server, project, monkeypatch, tmp_path, fast_retries):
    root, data, cache = _lock_then_empty_cache(http_server, project, monkeypatch, tmp_path)
    state: dict = {}
    drop = _drop_first_response(state)

    def no_range(handler, body):
        if "Range" in handler.headers:
            del handler.headers["Range"]  # answer 200 with the whole file
        return drop(handler, body)

    http_server.hooks["/big/model.safetensors"] = no_range
    _sync_in_process(root)
    assert state["dropped"]
    assert (root / "models" / "big" / "model.safetensors").read_bytes() == data
    assert tmp_leftovers(cache) == []


def test_connection_dropped_once_via_cli(http_server, project, run, cli, tmp_path, monkeypatch):
    """The same in a subprocess, with the real (short for one failure) backoff."""
    data = payload("cli-big", 2 * (1 << 20) + 17)
    url = http_server.add("x/model.bin", data)
    root = project(f'''
        [models.x]
        url = "{url}"
    ''')
    assert run("lock", cwd=root).returncode == 0
    cache = new_cache(monkeypatch, tmp_path)
    state: dict = {}
    http_server.hooks["/x/model.bin"] = _drop_first_response(state)
    result = cli("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert state["dropped"]
    assert (root / "models" / "x" / "model.bin").read_bytes() == data
    assert tmp_leftovers(cache) == []


# --------------------------------------------------------------------------
# plain HTTP


def test_plain_http_to_remote_host_is_refused(project, run):
    root = project('''
        [models.web]
        url = "http://example.com/model.onnx"
    ''')
    for args in (("lock",), ("sync",), ("sync", "--dry-run")):
        result = run(*args, cwd=root)
        assert result.returncode == 2, (args, result.stderr)
        assert "models.toml:3" in result.stderr
        assert "allow-http" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (root / "models.lock").exists()


def test_plain_http_to_remote_host_is_accepted_with_allow_http(project, run):
    root = project('''
        [models.web]
        url = "http://example.com/model.onnx"
        allow-http = true
    ''')
    # a dry run parses the manifest and plans the lock without touching the network
    result = run("sync", "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^lock\s+web", result.stdout, re.M), result.stdout


def test_plain_http_to_loopback_is_accepted(http_server, project, run):
    data = payload("loop", 10)
    root = project(f'''
        [models.loop]
        url = "http://localhost:{http_server.port}/loop.bin"
    ''')
    http_server.add("loop.bin", data)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "loop" / "loop.bin").read_bytes() == data
