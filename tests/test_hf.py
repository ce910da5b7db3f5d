"""The Hugging Face source (`hf = "org/name"`), against the local Hub of hfhub.py: what a user sees.

Most tests run the CLI's ``main()`` in-process (``run``) for speed; a few run
``python -m modelsync`` in a subprocess (``cli``), where the environment
(HF_ENDPOINT, HF_HOME, HF_TOKEN) must reach a fresh interpreter as it does for
a user. ``hub.requests`` is the network: a test that says "no request" means
that list did not grow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tomllib
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Result
from helpers import b3, payload
from hfhub import Blob, HubServer
from huggingface_hub import snapshot_download

import modelsync

# --------------------------------------------------------------------------
# helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CONFIG = b'{"hidden_size": 8}\n'
WEIGHTS = payload("weights", 40_000)  # LFS by its suffix
TOKENIZER = b'{"vocab": ["a", "b"]}\n'
NOTES = b"plain text in a folder with a space\n"
FILES = {
    "config.json": CONFIG,
    "weights/model.safetensors": WEIGHTS,
    "tokenizer/tok.json": TOKENIZER,
    "sub dir/notes.txt": NOTES,
}
LFS_PATHS = {"weights/model.safetensors"}


def read_lock(root: Path) -> dict:
    return tomllib.loads((root / "models.lock").read_text(encoding="utf-8"))


def locked(root: Path, name: str) -> dict:
    return next(m for m in read_lock(root)["model"] if m["name"] == name)


def lock_blocks(text: str) -> dict[str, str]:
    """model name -> the exact text of its [[model]] entry in models.lock."""
    return {tomllib.loads(part)["name"]: part for part in text.split("\n[[model]]\n")[1:]}


def resolve_gets(hub: HubServer, since: int = 0) -> list:
    """GETs of file bytes (the Hub's /resolve/ or the CDN) made after request number ``since``."""
    return [r for r in hub.requests[since:] if r.method == "GET" and ("/resolve/" in r.path or r.path.startswith("/cdn-lfs/"))]


def view_files(root: Path, name: str) -> dict[str, bytes]:
    folder = root / "models" / name
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def new_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str = "cache2") -> Path:
    cache = tmp_path / name
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(cache))
    return cache


def fresh_machine(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str = "cache2") -> Path:
    """The same project (models.toml and models.lock) on another machine: an empty cache and no view."""
    for folder in (root / "models", root / ".modelsync"):
        if folder.exists():
            shutil.rmtree(folder)
    return new_cache(monkeypatch, tmp_path, name)


def hf_cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


def fill_hf_cache(hub: HubServer, repo: str, revision: str = "main", repo_type: str = "model") -> Path:
    """What a user's earlier `from_pretrained` / `snapshot_download` left in the HF cache."""
    return Path(
        snapshot_download(repo, revision=revision, repo_type=repo_type, endpoint=hub.endpoint, cache_dir=hf_cache(), token=False)
    )


def corrupt_hf_cache_blobs(repo_folder: Path) -> int:
    """Flip the first byte of every blob of a repository in the HF cache (same size); return how many."""
    count = 0
    for blob in (repo_folder / "blobs").iterdir():
        os.chmod(blob, stat.S_IRUSR | stat.S_IWUSR)
        data = bytearray(blob.read_bytes())
        data[0] ^= 0xFF
        blob.write_bytes(bytes(data))
        count += 1
    return count


_SERVER_NOISE = re.compile(r"^-{40}\nException occurred during processing of request.*?^-{40}\n", re.DOTALL | re.MULTILINE)


def no_crash(result: Result) -> None:
    """An expected error: a message, no traceback. (In-process runs also capture the test servers'
    own socketserver reports of a client that hung up; those are not modelsync's.)"""
    own = _SERVER_NOISE.sub("", result.stderr)
    assert "Traceback" not in own, result.stderr
    assert "crashed" not in own, result.stderr
    assert "error:" in own, result.stderr


@pytest.fixture
def hub(hf_hub: HubServer) -> HubServer:  # noqa: F811
    return hf_hub


@pytest.fixture
def repo(hub: HubServer) -> str:
    """The commit id of "org/model" (FILES) on main."""
    return hub.add_repo("org/model", FILES)


MULTI = """
    [models.m]
    hf = "org/model"
    files = ["*.json", "weights/*", "sub dir/*"]
"""


# --------------------------------------------------------------------------
# lock: what it records


def test_lock_pins_commit_sizes_hashes_and_immutable_urls(hub, repo, project, run):
    root = project(MULTI)
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr

    model = locked(root, "m")
    assert model["source"]["hf"] == "org/model"
    assert model["source"]["revision"] == "main"  # the default shows in the lock
    assert model["source"]["commit"] == repo
    files = {f["path"]: f for f in model["files"]}
    # '*.json' crosses folders (fnmatch): config.json and tokenizer/tok.json
    assert sorted(files) == sorted(FILES)
    for path, data in FILES.items():
        entry = files[path]
        assert entry["size"] == len(data)
        assert entry["blake3"] == b3(data)
        assert entry["url"] == f"{hub.endpoint}/org/model/resolve/{repo}/{quote(path)}"
        if path in LFS_PATHS:
            assert entry["sha256"] == sha256(data) == hub.blob("org/model", path).sha256
        else:
            assert "sha256" not in entry
    assert [f["path"] for f in model["files"]] == sorted(files)


def test_sync_after_lock_makes_no_request_and_builds_the_repository_layout(hub, repo, project, run):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    before = len(hub.requests)

    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert hub.requests[before:] == []  # lock downloaded into the store already
    assert view_files(root, "m") == FILES  # sub-folders kept, as from_pretrained expects

    folder = modelsync.path("m", project=root)
    assert folder == root / "models" / "m" and folder.is_dir()
    assert (folder / "config.json").read_bytes() == CONFIG
    assert modelsync.path("m", "weights/model.safetensors", project=root).read_bytes() == WEIGHTS
    assert modelsync.path("m", "sub dir/notes.txt", project=root).read_bytes() == NOTES


def test_one_file_model_path_is_the_file(hub, repo, project, run):
    root = project("""
        [models.w]
        hf = "org/model"
        file = "weights/model.safetensors"
    """)
    assert run("sync", cwd=root).returncode == 0
    target = modelsync.path("w", project=root)
    assert target.is_file() and target.read_bytes() == WEIGHTS
    assert [f["path"] for f in locked(root, "w")["files"]] == ["weights/model.safetensors"]


def test_sync_downloads_with_modelsync_and_a_second_sync_makes_zero_requests(hub, repo, project, run, tmp_path, monkeypatch):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    fresh_machine(root, monkeypatch, tmp_path)  # a fresh machine with the committed lock
    before = len(hub.requests)

    assert run("sync", cwd=root).returncode == 0
    gets = resolve_gets(hub, before)
    assert sorted(r.path for r in gets) == sorted(f"/org/model/resolve/{repo}/{quote(p)}" for p in FILES)
    assert all(r.headers.get("User-Agent", "").startswith("modelsync/") for r in gets)  # our engine, not the HF client
    assert view_files(root, "m") == FILES
    assert not hf_cache().exists() or not any(hf_cache().rglob("*.safetensors"))  # the HF cache is not ours to fill

    before = len(hub.requests)
    second = run("sync", cwd=root)
    assert second.returncode == 0, second.stderr
    assert hub.requests[before:] == []


def test_lock_twice_is_byte_identical_and_makes_no_resolve_request(hub, repo, project, run):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    first = (root / "models.lock").read_bytes()
    before = len(hub.requests)
    assert run("lock", cwd=root).returncode == 0
    assert (root / "models.lock").read_bytes() == first
    assert resolve_gets(hub, before) == []


# --------------------------------------------------------------------------
# revisions and pins


def test_relock_after_branch_moved_keeps_the_pinned_commit(hub, repo, project, run, tmp_path, monkeypatch):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    text = (root / "models.lock").read_text()
    hub.commit("org/model", {"config.json": b'{"hidden_size": 16}\n'})

    assert run("lock", cwd=root).returncode == 0
    assert (root / "models.lock").read_text() == text
    assert locked(root, "m")["source"]["commit"] == repo

    fresh_machine(root, monkeypatch, tmp_path)
    assert run("sync", cwd=root).returncode == 0
    assert view_files(root, "m")["config.json"] == CONFIG  # the pinned bytes, not the branch's new ones


def test_upgrade_name_moves_only_that_model_and_upgrade_moves_all(hub, project, run):
    a1 = hub.add_repo("org/a", {"config.json": b"a1"})
    b1 = hub.add_repo("org/b", {"config.json": b"b1"})
    root = project("""
        [models.a]
        hf = "org/a"
        file = "config.json"

        [models.b]
        hf = "org/b"
        file = "config.json"
    """)
    assert run("lock", cwd=root).returncode == 0
    block_a = lock_blocks((root / "models.lock").read_text())["a"]
    a2 = hub.commit("org/a", {"config.json": b"a2"})
    b2 = hub.commit("org/b", {"config.json": b"b2"})

    result = run("lock", "--upgrade", "b", cwd=root)
    assert result.returncode == 0, result.stderr
    assert locked(root, "b")["source"]["commit"] == b2 != b1
    assert locked(root, "b")["files"][0]["blake3"] == b3(b"b2")
    assert lock_blocks((root / "models.lock").read_text())["a"] == block_a
    assert locked(root, "a")["source"]["commit"] == a1

    assert run("lock", "--upgrade", cwd=root).returncode == 0
    assert locked(root, "a")["source"]["commit"] == a2
    assert run("sync", cwd=root).returncode == 0
    assert modelsync.path("a", project=root).read_bytes() == b"a2"
    assert modelsync.path("b", project=root).read_bytes() == b"b2"


def test_changing_globs_reresolves_only_that_model(hub, project, run):
    hub.add_repo("org/a", {"config.json": b"a", "extra.txt": b"extra"})
    hub.add_repo("org/b", {"config.json": b"b"})
    manifest = """
        [models.a]
        hf = "org/a"
        files = [{globs}]

        [models.b]
        hf = "org/b"
        files = ["*.json"]
    """
    root = project(manifest.replace("{globs}", '"*.json"'))
    assert run("lock", cwd=root).returncode == 0
    block_b = lock_blocks((root / "models.lock").read_text())["b"]
    before = len(hub.requests)

    (root / "models.toml").write_text(manifest.replace("{globs}", '"*.json", "*.txt"'))
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    assert sorted(f["path"] for f in locked(root, "a")["files"]) == ["config.json", "extra.txt"]
    assert lock_blocks((root / "models.lock").read_text())["b"] == block_b
    assert hub.requests[before:], "model a was re-resolved"
    assert not [r for r in hub.requests[before:] if "org/b" in r.path]


def test_tag_revision_pins_the_tagged_commit(hub, repo, project, run, tmp_path, monkeypatch):
    hub.tag("org/model", "v1.0", "main")
    hub.commit("org/model", {"config.json": b"moved on"})
    root = project("""
        [models.c]
        hf = "org/model"
        revision = "v1.0"
        file = "config.json"
    """)
    assert run("lock", cwd=root).returncode == 0
    source = locked(root, "c")["source"]
    assert source["revision"] == "v1.0" and source["commit"] == repo
    assert locked(root, "c")["files"][0]["url"] == f"{hub.endpoint}/org/model/resolve/{repo}/config.json"
    fresh_machine(root, monkeypatch, tmp_path)
    assert run("sync", cwd=root).returncode == 0
    assert modelsync.path("c", project=root).read_bytes() == CONFIG


def test_commit_revision_pins_that_commit(hub, repo, project, run):
    newer = hub.commit("org/model", {"config.json": b"newer"})
    root = project(f"""
        [models.c]
        hf = "org/model"
        revision = "{repo}"
        file = "config.json"
    """)
    assert run("sync", cwd=root).returncode == 0
    assert locked(root, "c")["source"]["commit"] == repo != newer
    assert modelsync.path("c", project=root).read_bytes() == CONFIG


def test_pull_request_ref_as_revision(hub, repo, project, run):
    pr = hub.commit("org/model", {"config.json": b"from a PR"}, branch="refs/pr/1", parent="main")
    root = project("""
        [models.c]
        hf = "org/model"
        revision = "refs/pr/1"
        file = "config.json"
    """)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert locked(root, "c")["source"]["commit"] == pr != repo
    assert modelsync.path("c", project=root).read_bytes() == b"from a PR"


def test_sync_downloads_from_todays_hf_endpoint(hub, repo, project, run, tmp_path, monkeypatch):
    """A lock made against one endpoint syncs through the mirror HF_ENDPOINT names now."""
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    with HubServer() as mirror:
        assert mirror.add_repo("org/model", FILES) == repo  # the same repository, the same commit
        fresh_machine(root, monkeypatch, tmp_path)
        before = len(hub.requests)
        monkeypatch.setenv("HF_ENDPOINT", mirror.endpoint)
        result = run("sync", cwd=root)
        assert result.returncode == 0, result.stderr
        assert hub.requests[before:] == []
        assert len(resolve_gets(mirror)) == len(FILES)
    assert view_files(root, "m") == FILES


@pytest.mark.parametrize("repo_type, prefix", [("dataset", "datasets/"), ("space", "spaces/")])
def test_dataset_and_space_repositories(hub, project, run, tmp_path, monkeypatch, repo_type, prefix):
    data = payload("rows", 5000)
    sha = hub.add_repo("org/data", {"data/train.parquet": data, "README.md": b"# card"}, repo_type=repo_type)
    hub.add_repo("org/data", {"data/train.parquet": b"wrong repo type"})  # a model of the same name
    root = project(f"""
        [models.d]
        hf = "org/data"
        repo-type = "{repo_type}"
        files = ["data/*"]
    """)
    assert run("lock", cwd=root).returncode == 0
    model = locked(root, "d")
    assert model["source"]["repo-type"] == repo_type and model["source"]["commit"] == sha
    assert model["files"][0]["url"] == f"{hub.endpoint}/{prefix}org/data/resolve/{sha}/data/train.parquet"
    assert model["files"][0]["sha256"] == sha256(data)
    fresh_machine(root, monkeypatch, tmp_path)
    before = len(hub.requests)
    assert run("sync", cwd=root).returncode == 0
    assert [r.path for r in resolve_gets(hub, before)] == [f"/{prefix}org/data/resolve/{sha}/data/train.parquet"]
    assert view_files(root, "d") == {"data/train.parquet": data}


# --------------------------------------------------------------------------
# errors


def test_repository_not_found(hub, project, cli):
    root = project("""
        [models.x]
        hf = "org/nope"
        file = "config.json"
    """)
    result = cli("lock", cwd=root)
    assert result.returncode == 1, result.stderr
    assert "org/nope" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "models.lock").exists()


def test_private_repository_needs_a_token_and_works_with_hf_token_or_the_token_file(hub, project, run, tmp_path, monkeypatch):
    hub.add_repo("org/private", {"config.json": CONFIG, "model.onnx": WEIGHTS}, private=True)
    root = project("""
        [models.p]
        hf = "org/private"
        files = ["*"]
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 1
    no_crash(result)
    assert "org/private" in result.stderr
    assert "private" in result.stderr and "HF_TOKEN" in result.stderr
    assert not (root / "models.lock").exists()

    result = run("sync", cwd=root, env={"HF_TOKEN": hub.token})
    assert result.returncode == 0, result.stderr
    assert view_files(root, "p") == {"config.json": CONFIG, "model.onnx": WEIGHTS}

    # another machine: the token from `hf auth login` (the token file), an empty cache
    fresh_machine(root, monkeypatch, tmp_path)
    (Path(os.environ["HF_HOME"]) / "token").write_text(hub.token)
    before = len(hub.requests)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    gets = resolve_gets(hub, before)
    assert len(gets) == 2 and all(r.headers.get("Authorization") == f"Bearer {hub.token}" for r in gets)


def test_gated_repository_without_token_says_so_and_mentions_hf_token(hub, project, run):
    hub.add_repo("org/gated", {"model.onnx": WEIGHTS}, gated=True)
    root = project("""
        [models.g]
        hf = "org/gated"
        file = "model.onnx"
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 1
    no_crash(result)
    assert "gated" in result.stderr.lower() and "HF_TOKEN" in result.stderr
    assert "org/gated" in result.stderr
    assert not (root / "models.lock").exists()

    result = run("sync", cwd=root, env={"HF_TOKEN": hub.token})
    assert result.returncode == 0, result.stderr
    assert modelsync.path("g", project=root).read_bytes() == WEIGHTS


def test_revision_not_found(hub, repo, project, run):
    root = project("""
        [models.x]
        hf = "org/model"
        revision = "v9.9"
        file = "config.json"
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 1
    no_crash(result)
    assert "v9.9" in result.stderr and "org/model" in result.stderr
    assert not (root / "models.lock").exists()


def test_glob_matching_nothing_is_a_usage_error_naming_the_glob(hub, repo, project, run):
    root = project("""
        [models.x]
        hf = "org/model"
        files = ["*.json", "*.gguf"]
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 2
    no_crash(result)
    assert "*.gguf" in result.stderr and "org/model" in result.stderr
    assert not (root / "models.lock").exists()
    assert not (root / "models").exists()


def test_file_not_in_the_repository_is_a_usage_error(hub, repo, project, run):
    root = project("""
        [models.x]
        hf = "org/model"
        file = "model.safetensors"
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 2
    no_crash(result)
    assert "model.safetensors" in result.stderr and "weights/model.safetensors" in result.stderr  # the close match


def test_unsafe_file_in_manifest_is_refused(hub, repo, project, run):
    root = project("""
        [models.x]
        hf = "org/model"
        file = "../evil"
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 2
    assert "models.toml" in result.stderr and "file" in result.stderr
    assert hub.requests == []


def _escape_via_repository(hub: HubServer, name: str) -> None:
    """A repository whose content holds ``name`` (the test Hub refuses it in add_repo, so put it in afterwards)."""
    sha = hub.add_repo("org/evil", {"config.json": b"{}"})
    hub.repo("org/evil").commits[sha].files[name] = Blob(b"pwned", False)


def _escape_via_listing(hub: HubServer, name: str) -> None:
    """A Hub (or a proxy in front of it) whose file listing names ``name``."""
    hub.add_repo("org/evil", {"config.json": b"{}"})

    def hook(handler, body: bytes) -> bytes:
        info = json.loads(body)
        info["siblings"].append({"rfilename": name, "size": 5, "blobId": "0" * 40})
        return json.dumps(info).encode()

    hub.hooks["/api/models/org/evil/revision/main"] = hook


@pytest.mark.parametrize(
    "how, name",
    [
        (_escape_via_repository, "../evil.txt"),
        (_escape_via_listing, "../../../evil.txt"),
        (_escape_via_listing, "a/../../../../evil.txt"),
        (_escape_via_listing, "/tmp/evil.txt"),
        (_escape_via_listing, "..\\..\\..\\evil.txt"),
    ],
)
def test_repository_path_escaping_the_view_is_refused(hub, project, run, tmp_path, how, name):
    how(hub, name)
    root = project("""
        [models.x]
        hf = "org/evil"
        files = ["*"]
    """)
    result = run("sync", cwd=root)
    assert result.returncode == 1, result.stderr
    no_crash(result)
    assert "evil.txt" in result.stderr and "refus" in result.stderr.lower()
    assert resolve_gets(hub) == []  # refused before fetching anything
    assert not (root / "models.lock").exists()
    assert [p for p in tmp_path.rglob("*evil*")] == []
    assert not Path("/tmp/evil.txt").exists() or Path("/tmp/evil.txt").read_bytes() != b"pwned"


# --------------------------------------------------------------------------
# integrity


def test_lfs_bytes_whose_sha256_differs_fail_lock_naming_both_digests(hub, repo, project, run):
    bad = bytes([WEIGHTS[0] ^ 1]) + WEIGHTS[1:]
    hub.hooks["weights/model.safetensors"] = lambda handler, body: bad
    root = project("""
        [models.w]
        hf = "org/model"
        file = "weights/model.safetensors"
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 1
    no_crash(result)
    assert "sha256" in result.stderr
    assert sha256(WEIGHTS) in result.stderr and sha256(bad) in result.stderr
    assert not (root / "models.lock").exists()


def test_corrupted_download_at_sync_fails_naming_both_digests_and_keeps_nothing(hub, repo, project, run, tmp_path, monkeypatch):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    cache = fresh_machine(root, monkeypatch, tmp_path)
    bad = bytes([WEIGHTS[0] ^ 1]) + WEIGHTS[1:]
    hub.hooks["weights/model.safetensors"] = lambda handler, body: bad

    result = run("sync", cwd=root)
    assert result.returncode == 1
    no_crash(result)
    assert "weights/model.safetensors" in result.stderr
    assert (b3(WEIGHTS) in result.stderr and b3(bad) in result.stderr) or (
        sha256(WEIGHTS) in result.stderr and sha256(bad) in result.stderr
    ), result.stderr
    assert not (root / "models" / "m" / "weights" / "model.safetensors").exists()
    stored = [p.read_bytes() for p in (cache / "blobs").rglob("*") if p.is_file()]
    assert bad not in stored
    assert view_files(root, "m")["config.json"] == CONFIG  # the other files are still placed


def test_manifest_sha256_is_checked_against_the_lfs_oid(hub, repo, project, run):
    wrong = sha256(b"something else")
    root = project(f"""
        [models.w]
        hf = "org/model"
        file = "weights/model.safetensors"
        sha256 = "{wrong}"
    """)
    result = run("lock", cwd=root)
    assert result.returncode == 1
    no_crash(result)
    assert wrong in result.stderr and sha256(WEIGHTS) in result.stderr
    assert not (root / "models.lock").exists()


# --------------------------------------------------------------------------
# the token


@pytest.fixture
def cdn_hub(tmp_path_factory, monkeypatch):
    """A Hub that redirects LFS downloads to its CDN port (which refuses Authorization headers)."""
    hub = HubServer(lfs_redirect=True).start()
    home = tmp_path_factory.mktemp("hf_home_cdn")
    for name, value in {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }.items():
        monkeypatch.setenv(name, value)
    from huggingface_hub import constants

    for name, value in {
        "ENDPOINT": hub.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
    }.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    try:
        yield hub
    finally:
        hub.stop()


def test_token_goes_to_the_hub_but_not_to_the_cdn_after_a_redirect(cdn_hub, project, run, tmp_path, monkeypatch):
    hub = cdn_hub
    sha = hub.add_repo("org/private", FILES, private=True)
    root = project("""
        [models.p]
        hf = "org/private"
        files = ["*"]
    """)
    env = {"HF_TOKEN": hub.token}
    for step in ("lock", "sync"):  # lock downloads; then a fresh machine syncs
        before = len(hub.requests)
        result = run(step, cwd=root, env=env)
        assert result.returncode == 0, result.stderr
        gets = resolve_gets(hub, before)
        hub_gets = [r for r in gets if "/resolve/" in r.path]
        cdn_gets = [r for r in gets if r.path.startswith("/cdn-lfs/")]
        assert sorted(r.path for r in hub_gets) == sorted(f"/org/private/resolve/{sha}/{quote(p)}" for p in FILES)
        assert all(r.headers.get("Authorization") == f"Bearer {hub.token}" for r in hub_gets)
        assert [r.path.split("/")[2] for r in cdn_gets] == [sha256(WEIGHTS)]
        assert all("Authorization" not in r.headers for r in cdn_gets)
        assert all(hub.token not in value for r in cdn_gets for value in r.headers.values())
        if step == "sync":
            assert view_files(root, "p") == FILES
        fresh_machine(root, monkeypatch, tmp_path, f"cache-{step}")


def test_token_never_enters_the_lock_the_state_the_output_or_errors(hub, project, cli, tmp_path, monkeypatch, isolated):
    hub.add_repo("org/private", FILES, private=True)
    root = project("""
        [models.p]
        hf = "org/private"
        files = ["*"]
    """)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    outputs = []
    for args in (("lock",), ("sync",), ("sync", "--json"), ("status", "--json"), ("path", "p"), ("lock", "--upgrade", "-v")):
        result = cli(*args, cwd=root)
        assert result.returncode == 0, (args, result.stderr)
        outputs.append(result)
    # a failure with the token set: the file is gone upstream (403 from the hub), shown with -v
    fresh_machine(root, monkeypatch, tmp_path)

    def deny(handler, body):
        handler.send_response(403)
        handler.send_header("Content-Length", "0")
        handler.send_header("X-Error-Message", "Forbidden")
        handler.end_headers()

    hub.hooks["config.json"] = deny
    failed = cli("sync", "-v", cwd=root)
    assert failed.returncode == 1 and "config.json" in failed.stderr
    outputs.append(failed)

    for result in outputs:
        assert hub.token not in result.stdout and hub.token not in result.stderr
    for folder in (root, isolated, tmp_path / "cache2"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert hub.token.encode() not in path.read_bytes(), path
    assert (root / ".modelsync" / "state.json").exists()


def test_cli_end_to_end_in_a_subprocess_with_the_token_file(hub, project, cli):
    """HF_ENDPOINT and HF_HOME (its token file) reach a fresh interpreter; lock, sync, path as a user types them."""
    sha = hub.add_repo("org/secret", FILES, private=True)
    (Path(os.environ["HF_HOME"]) / "token").write_text(hub.token + "\n")  # as `hf auth login` leaves it
    root = project(MULTI.replace("org/model", "org/secret"))
    lock = cli("lock", cwd=root)
    assert lock.returncode == 0, lock.stderr
    assert locked(root, "m")["source"]["commit"] == sha
    sync = cli("sync", cwd=root)
    assert sync.returncode == 0, sync.stderr
    path = cli("path", "m", "weights/model.safetensors", cwd=root)
    assert path.returncode == 0
    assert Path(path.stdout.strip()).read_bytes() == WEIGHTS
    assert Path(cli("path", "m", cwd=root).stdout.strip()) == root / "models" / "m"


# --------------------------------------------------------------------------
# reuse of the user's Hugging Face cache


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_files_in_the_hf_cache_are_reused_without_download(hub, project, run, repo_type):
    sha = hub.add_repo("org/model", FILES, repo_type=repo_type)
    fill_hf_cache(hub, "org/model", repo_type=repo_type)
    before = len(hub.requests)
    root = project(MULTI + f'repo-type = "{repo_type}"\n')

    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert resolve_gets(hub, before) == []
    assert view_files(root, "m") == FILES
    model = locked(root, "m")
    assert model["source"]["commit"] == sha
    assert {f["path"]: f["blake3"] for f in model["files"]} == {p: b3(d) for p, d in FILES.items()}


def test_files_in_the_hf_cache_are_reused_at_sync_on_a_fresh_machine(hub, repo, project, run, tmp_path, monkeypatch):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    fresh_machine(root, monkeypatch, tmp_path)
    fill_hf_cache(hub, "org/model")
    before = len(hub.requests)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert hub.requests[before:] == []
    assert view_files(root, "m") == FILES


@pytest.mark.parametrize("where", ["HF_HUB_CACHE", "HF_HOME"])
def test_hf_cache_location_follows_hf_hub_cache_then_hf_home(hub, repo, project, run, tmp_path, monkeypatch, where):
    if where == "HF_HUB_CACHE":  # a cache outside HF_HOME
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    else:  # no HF_HUB_CACHE: HF_HOME/hub
        monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("HF_HUB_CACHE")
    cache_dir = tmp_path / "elsewhere" if where == "HF_HUB_CACHE" else tmp_path / "home" / "hub"
    snapshot_download("org/model", endpoint=hub.endpoint, cache_dir=cache_dir, token=False)
    before = len(hub.requests)
    root = project(MULTI)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert resolve_gets(hub, before) == []
    assert view_files(root, "m") == FILES


def test_lfs_blob_is_reused_by_its_sha256_from_another_commit(hub, repo, project, run):
    fill_hf_cache(hub, "org/model")  # the HF cache holds the first commit
    new = hub.commit("org/model", {"config.json": b'{"hidden_size": 32}\n'})
    before = len(hub.requests)
    root = project(MULTI)

    assert run("sync", cwd=root).returncode == 0
    assert locked(root, "m")["source"]["commit"] == new
    fetched = sorted(r.path for r in resolve_gets(hub, before))
    # the LFS file comes from models--org--model/blobs/<sha256>; the others changed commit, so they download
    assert fetched == sorted(f"/org/model/resolve/{new}/{quote(p)}" for p in FILES if p not in LFS_PATHS)
    assert view_files(root, "m")["weights/model.safetensors"] == WEIGHTS
    assert view_files(root, "m")["config.json"] == b'{"hidden_size": 32}\n'


def test_corrupted_hf_cache_files_are_not_used_at_sync(hub, repo, project, run, tmp_path, monkeypatch):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    fresh_machine(root, monkeypatch, tmp_path)
    snapshot = fill_hf_cache(hub, "org/model")
    assert corrupt_hf_cache_blobs(snapshot.parent.parent) == len(FILES)
    before = len(hub.requests)

    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert len(resolve_gets(hub, before)) == len(FILES)  # every file downloaded instead
    assert view_files(root, "m") == FILES


@pytest.mark.parametrize("path", ["weights/model.safetensors", "config.json"], ids=["lfs", "regular"])
def test_corrupted_hf_cache_file_is_not_used_at_lock(hub, repo, project, run, path):
    """Lock pins what it copies: a damaged HF cache file must not become the pinned bytes."""
    snapshot = fill_hf_cache(hub, "org/model")
    target = (snapshot / path).resolve()
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF
    target.write_bytes(bytes(data))
    root = project(f"""
        [models.f]
        hf = "org/model"
        file = "{path}"
    """)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert locked(root, "f")["files"][0]["blake3"] == b3(FILES[path])
    assert modelsync.path("f", project=root).read_bytes() == FILES[path]


# --------------------------------------------------------------------------
# offline


@pytest.mark.parametrize("how", ["--offline", "HF_HUB_OFFLINE"])
def test_offline_with_the_blobs_cached_works_without_the_network(hub, repo, project, run, how):
    root = project(MULTI)
    assert run("sync", cwd=root).returncode == 0
    for path in (root / "models" / "m").rglob("*"):
        if path.is_file():
            path.unlink()
    before = len(hub.requests)
    args, env = (["sync", "--offline"], {}) if how == "--offline" else (["sync"], {"HF_HUB_OFFLINE": "1"})
    result = run(*args, cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    assert hub.requests[before:] == []
    assert view_files(root, "m") == FILES


@pytest.mark.parametrize("how", ["--offline", "HF_HUB_OFFLINE"])
def test_offline_with_missing_files_fails_listing_them_without_the_network(hub, repo, project, run, tmp_path, monkeypatch, how):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    fresh_machine(root, monkeypatch, tmp_path)
    before = len(hub.requests)
    args, env = (["sync", "--offline"], {}) if how == "--offline" else (["sync"], {"HF_HUB_OFFLINE": "1"})
    result = run(*args, cwd=root, env=env)
    assert result.returncode == 1
    no_crash(result)
    assert hub.requests[before:] == []
    for path in FILES:
        assert f"m/{path}" in result.stderr, result.stderr
    assert view_files(root, "m") == {}


def test_offline_lists_missing_files_with_their_sizes(hub, project, run, tmp_path, monkeypatch):
    hub.add_repo("org/big", {"model.onnx": payload("big", 3 * 1024 * 1024), "config.json": CONFIG})
    root = project("""
        [models.big]
        hf = "org/big"
        files = ["*"]
    """)
    assert run("lock", cwd=root).returncode == 0
    fresh_machine(root, monkeypatch, tmp_path)
    result = run("sync", "--offline", cwd=root)
    assert result.returncode == 1
    assert "big/model.onnx" in result.stderr and "3.0 MiB" in result.stderr
    assert "big/config.json" in result.stderr


def test_hf_hub_offline_syncs_from_the_hf_cache(hub, repo, project, run, tmp_path, monkeypatch):
    root = project(MULTI)
    assert run("lock", cwd=root).returncode == 0
    fresh_machine(root, monkeypatch, tmp_path)
    fill_hf_cache(hub, "org/model")
    before = len(hub.requests)
    result = run("sync", cwd=root, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert hub.requests[before:] == []
    assert view_files(root, "m") == FILES


def test_hf_hub_offline_lock_needs_the_network_and_says_so(hub, repo, project, run):
    root = project(MULTI)
    result = run("lock", cwd=root, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    no_crash(result)
    assert "HF_HUB_OFFLINE" in result.stderr
    assert hub.requests == []
    assert not (root / "models.lock").exists()
