"""The local Hub of hfhub.py is faithful: the real huggingface_hub client, in-process, against it.

The client read HF_ENDPOINT when it was imported, so every call names the endpoint (and a
cache_dir) explicitly, as the module docstring of hfhub.py says tests should.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from hfhub import LFS_MIN_SIZE, HubServer

SMALL = b'{"hidden_size": 8}\n'
WEIGHTS = bytes(range(256)) * 40  # 10 KiB, LFS by its .safetensors suffix
BIG_TXT = b"x" * LFS_MIN_SIZE  # LFS by its size
TOKENIZER = b"tokenizer bytes"
ODD_NAME = "sub dir/ünï cödé.txt"
FILES = {
    "config.json": SMALL,
    "weights/model.safetensors": WEIGHTS,
    "weights/notes.txt": BIG_TXT,
    "tokenizer/tok.json": TOKENIZER,
    ODD_NAME: b"odd",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def api(hf_hub: HubServer) -> HfApi:
    return HfApi(endpoint=hf_hub.endpoint, token=False)


@pytest.fixture
def model(hf_hub: HubServer) -> str:
    return hf_hub.add_repo("org/model", FILES)


def download(hub: HubServer, cache: Path, filename: str, repo: str = "org/model", **kwargs) -> bytes:
    kwargs.setdefault("token", False)
    path = hf_hub_download(repo, filename, endpoint=hub.endpoint, cache_dir=cache, **kwargs)
    return Path(path).read_bytes()


# --------------------------------------------------------------------------
# metadata


def test_repo_info_with_files_metadata(hf_hub: HubServer, api: HfApi, model: str) -> None:
    info = api.repo_info("org/model", files_metadata=True)
    assert info.id == "org/model" and info.sha == model and len(model) == 40
    assert info.private is False and info.gated is False and info.last_modified is not None
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == set(FILES)
    small, weights, big = siblings["config.json"], siblings["weights/model.safetensors"], siblings["weights/notes.txt"]
    assert (small.size, small.blob_id, small.lfs) == (len(SMALL), git_oid(SMALL), None)
    assert weights.size == len(WEIGHTS) and weights.lfs is not None
    assert weights.lfs.sha256 == sha256(WEIGHTS) and weights.lfs.size == len(WEIGHTS)
    # an LFS file's blob id is the git sha1 of its pointer file
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        sha256(WEIGHTS).encode(),
        len(WEIGHTS),
    )
    assert weights.blob_id == git_oid(pointer) and weights.lfs.pointer_size == len(pointer)
    assert big.lfs is not None and big.lfs.sha256 == sha256(BIG_TXT)
    # without files_metadata: names only, as on the Hub
    bare = api.model_info("org/model")
    assert all(s.size is None and s.lfs is None for s in bare.siblings)
    assert any("blobs=" in r.path for r in hf_hub.requests)


def test_list_repo_tree(hf_hub: HubServer, api: HfApi, model: str) -> None:
    entries = list(api.list_repo_tree("org/model", recursive=True))
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    folders = {e.path for e in entries if isinstance(e, RepoFolder)}
    assert set(files) == set(FILES)
    assert folders == {"weights", "tokenizer", "sub dir"}
    assert files["weights/model.safetensors"].lfs.sha256 == sha256(WEIGHTS)
    assert files["weights/model.safetensors"].size == len(WEIGHTS)
    assert files["config.json"].lfs is None and files["config.json"].blob_id == git_oid(SMALL)

    top = {e.path for e in api.list_repo_tree("org/model")}
    assert top == {"config.json", "weights", "tokenizer", "sub dir"}
    inside = [e.path for e in api.list_repo_tree("org/model", "sub dir", revision=model)]
    assert inside == [ODD_NAME]
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree("org/model", "nope"))
    with pytest.raises(RemoteEntryNotFoundError):  # a file is not a tree, as on the Hub
        list(api.list_repo_tree("org/model", "config.json"))

    hf_hub.tree_page_size = 2  # pagination through the Link header
    assert {e.path for e in api.list_repo_tree("org/model", recursive=True)} == set(files) | folders
    assert sum("/tree/" in r.path for r in hf_hub.requests) > 5


def test_paths_info_and_refs(hf_hub: HubServer, api: HfApi, model: str) -> None:
    infos = api.get_paths_info("org/model", ["weights/model.safetensors", "tokenizer", "missing"])
    assert [type(i).__name__ for i in infos] == ["RepoFile", "RepoFolder"]
    assert infos[0].lfs.sha256 == sha256(WEIGHTS)
    hf_hub.tag("org/model", "v1", model)
    hf_hub.branch("org/model", "refs/pr/1", model)
    refs = api.list_repo_refs("org/model", include_pull_requests=True)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", model)]
    assert [(t.name, t.ref) for t in refs.tags] == [("v1", "refs/tags/v1")]
    assert [p.ref for p in refs.pull_requests] == ["refs/pr/1"]


# --------------------------------------------------------------------------
# downloads


def test_hf_hub_download_small_lfs_subfolder_and_odd_names(hf_hub: HubServer, tmp_path: Path, model: str) -> None:
    for name, data in FILES.items():
        assert download(hf_hub, tmp_path, name) == data
    # the client names cache blobs by ETag: git sha1 for regular files, sha256 for LFS ones
    blobs = {p.name for p in (tmp_path / "models--org--model" / "blobs").iterdir()}
    assert blobs == {git_oid(SMALL), sha256(WEIGHTS), sha256(BIG_TXT), git_oid(TOKENIZER), git_oid(b"odd")}
    assert (tmp_path / "models--org--model" / "refs" / "main").read_text() == model
    assert download(hf_hub, tmp_path, "model.safetensors", subfolder="weights") == WEIGHTS


def test_file_metadata_headers(hf_hub: HubServer, model: str) -> None:
    meta = get_hf_file_metadata(hf_hub.url("org/model", "weights/model.safetensors"), token=False)
    assert (meta.commit_hash, meta.etag, meta.size) == (model, sha256(WEIGHTS), len(WEIGHTS))
    meta = get_hf_file_metadata(hf_hub.url("org/model", "config.json"), token=False)
    assert (meta.commit_hash, meta.etag, meta.size) == (model, git_oid(SMALL), len(SMALL))

    head = httpx2.head(hf_hub.url("org/model", "weights/model.safetensors"))
    assert head.status_code == 200
    assert head.headers["X-Linked-Etag"] == f'"{sha256(WEIGHTS)}"'
    assert head.headers["X-Linked-Size"] == str(len(WEIGHTS)) == head.headers["Content-Length"]
    assert head.headers["Accept-Ranges"] == "bytes" and head.headers["X-Repo-Commit"] == model
    plain = httpx2.head(hf_hub.url("org/model", "config.json"))
    assert plain.headers["ETag"] == f'"{git_oid(SMALL)}"' and "X-Linked-Etag" not in plain.headers


def test_range_requests(hf_hub: HubServer, model: str) -> None:
    url = hf_hub.url("org/model", "weights/model.safetensors")
    r = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == WEIGHTS[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(WEIGHTS)}" and r.headers["Content-Length"] == "10"
    r = httpx2.get(url, headers={"Range": "bytes=10000-"})
    assert r.status_code == 206 and r.content == WEIGHTS[10000:]
    r = httpx2.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == WEIGHTS[-5:]
    r = httpx2.get(url, headers={"Range": f"bytes={len(WEIGHTS)}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(WEIGHTS)}"
    r = httpx2.get(url)
    assert r.status_code == 200 and r.content == WEIGHTS


def test_snapshot_download(hf_hub: HubServer, tmp_path: Path, model: str) -> None:
    folder = Path(snapshot_download("org/model", endpoint=hf_hub.endpoint, cache_dir=tmp_path, token=False))
    assert folder.name == model
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == FILES
    only = Path(
        snapshot_download(
            "org/model", endpoint=hf_hub.endpoint, cache_dir=tmp_path / "b", token=False, allow_patterns=["weights/*"]
        )
    )
    assert sorted(p.relative_to(only).as_posix() for p in only.rglob("*") if p.is_file()) == [
        "weights/model.safetensors",
        "weights/notes.txt",
    ]


def test_moved_branch_and_old_commit(hf_hub: HubServer, api: HfApi, tmp_path: Path, model: str) -> None:
    new = hf_hub.commit("org/model", {"config.json": b"{}", "tokenizer/tok.json": None})
    assert new != model and hf_hub.resolve("org/model", "main") == new
    assert api.repo_info("org/model").sha == new
    assert api.repo_info("org/model", revision=model).sha == model
    assert download(hf_hub, tmp_path / "a", "config.json") == b"{}"
    assert download(hf_hub, tmp_path / "a", "config.json", revision=model) == SMALL
    assert download(hf_hub, tmp_path / "a", "weights/model.safetensors", revision=new) == WEIGHTS  # carried over
    with pytest.raises(RemoteEntryNotFoundError):
        download(hf_hub, tmp_path / "a", "tokenizer/tok.json")  # deleted on main
    assert download(hf_hub, tmp_path / "a", "tokenizer/tok.json", revision=model) == TOKENIZER

    old = Path(snapshot_download("org/model", revision=model, endpoint=hf_hub.endpoint, cache_dir=tmp_path / "b"))
    assert (old / "config.json").read_bytes() == SMALL and (old / "tokenizer/tok.json").exists()
    hf_hub.tag("org/model", "v1.0", model)
    assert download(hf_hub, tmp_path / "c", "config.json", revision="v1.0") == SMALL


def test_pr_ref_revision_is_encoded_and_decoded(hf_hub: HubServer, api: HfApi, tmp_path: Path, model: str) -> None:
    pr = hf_hub.commit("org/model", {"config.json": b"pr"}, branch="refs/pr/1")
    assert hf_hub.resolve("org/model", "main") == model  # branched off main, main did not move
    assert api.repo_info("org/model", revision="refs/pr/1").sha == pr
    assert download(hf_hub, tmp_path, "config.json", revision="refs/pr/1") == b"pr"
    assert any("/resolve/refs%2Fpr%2F1/" in r.path for r in hf_hub.requests)
    # unencoded, as some clients send it
    r = httpx2.get(f"{hf_hub.endpoint}/org/model/resolve/refs/pr/1/config.json")
    assert r.status_code == 200 and r.content == b"pr" and r.headers["X-Repo-Commit"] == pr


def test_dataset_and_space_repos(hf_hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    sha = hf_hub.add_repo("org/data", {"data/train.parquet": b"PAR1", "README.md": b"# data"}, repo_type="dataset")
    info = api.dataset_info("org/data", files_metadata=True)
    assert info.sha == sha and {s.rfilename for s in info.siblings} == {"data/train.parquet", "README.md"}
    assert next(s for s in info.siblings if s.rfilename.endswith(".parquet")).lfs.sha256 == sha256(b"PAR1")
    assert download(hf_hub, tmp_path, "data/train.parquet", repo="org/data", repo_type="dataset") == b"PAR1"
    folder = snapshot_download("org/data", repo_type="dataset", endpoint=hf_hub.endpoint, cache_dir=tmp_path)
    assert (Path(folder) / "README.md").read_bytes() == b"# data"
    assert any(r.path.startswith("/datasets/org/data/resolve/") for r in hf_hub.requests)
    with pytest.raises(RepositoryNotFoundError):  # a dataset is not a model
        api.model_info("org/data")

    hf_hub.add_repo("org/app", {"app.py": b"print()"}, repo_type="space")
    assert api.space_info("org/app").sha == hf_hub.resolve("org/app", repo_type="space")
    assert download(hf_hub, tmp_path, "app.py", repo="org/app", repo_type="space") == b"print()"


# --------------------------------------------------------------------------
# access and errors


def test_gated_repo(hf_hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    hf_hub.add_repo("org/gated", {"model.safetensors": WEIGHTS}, gated=True)
    assert api.model_info("org/gated").gated == "auto"  # metadata is public, as on the Hub
    with pytest.raises(GatedRepoError):
        download(hf_hub, tmp_path, "model.safetensors", repo="org/gated")
    with pytest.raises(GatedRepoError):
        snapshot_download("org/gated", endpoint=hf_hub.endpoint, cache_dir=tmp_path, token=False)
    with pytest.raises(GatedRepoError) as denied:
        download(hf_hub, tmp_path, "model.safetensors", repo="org/gated", token=HubServer.denied_token)
    assert denied.value.response.status_code == 403
    assert download(hf_hub, tmp_path, "model.safetensors", repo="org/gated", token=HubServer.token) == WEIGHTS
    sent = [r.headers.get("Authorization") for r in hf_hub.requests if r.path.endswith("model.safetensors")]
    assert sent[-1] == f"Bearer {HubServer.token}"


def test_private_and_missing_repos(hf_hub: HubServer, api: HfApi, tmp_path: Path) -> None:
    hf_hub.add_repo("org/private", {"a.txt": b"a"}, private=True)
    for repo in ("org/private", "org/missing"):
        with pytest.raises(RepositoryNotFoundError) as err:
            api.model_info(repo)
        assert not isinstance(err.value, GatedRepoError) and err.value.response.status_code == 401
        with pytest.raises(RepositoryNotFoundError):
            download(hf_hub, tmp_path, "a.txt", repo=repo)
    with pytest.raises(RepositoryNotFoundError) as err:
        api.model_info("org/missing", token=HubServer.token)
    assert err.value.response.status_code == 404
    assert api.model_info("org/private", token=HubServer.token).private is True
    assert download(hf_hub, tmp_path, "a.txt", repo="org/private", token=HubServer.token) == b"a"
    # an unknown token is refused as such, not as a missing repository
    with pytest.raises(HfHubHTTPError) as bad:
        api.model_info("org/private", token="hf_wrong")
    assert not isinstance(bad.value, RepositoryNotFoundError) and bad.value.response.status_code == 401


def test_bad_revision_and_missing_file(hf_hub: HubServer, api: HfApi, tmp_path: Path, model: str) -> None:
    with pytest.raises(RevisionNotFoundError):
        api.repo_info("org/model", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        download(hf_hub, tmp_path, "config.json", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        download(hf_hub, tmp_path, "config.json", revision="0" * 40)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("org/model", revision="nope", endpoint=hf_hub.endpoint, cache_dir=tmp_path, token=False)
    with pytest.raises(RemoteEntryNotFoundError):
        download(hf_hub, tmp_path, "nope.bin")
    # the client caches the absence under the commit the 404 named
    assert (tmp_path / "models--org--model" / ".no_exist" / model / "nope.bin").exists()


# --------------------------------------------------------------------------
# the CDN redirect, hooks, the fixture's environment


def test_lfs_redirect_to_cdn(hf_hub: HubServer, tmp_path: Path) -> None:
    hf_hub.add_repo("org/gated", {"model.safetensors": WEIGHTS, "config.json": SMALL}, gated=True)
    hf_hub.lfs_redirect = True
    auth = {"Authorization": f"Bearer {HubServer.token}"}
    head = httpx2.head(hf_hub.url("org/gated", "model.safetensors"), headers=auth)
    assert head.status_code == 302 and head.headers["Location"].startswith(hf_hub.cdn_endpoint)
    assert head.headers["X-Linked-Size"] == str(len(WEIGHTS))
    assert download(hf_hub, tmp_path, "model.safetensors", repo="org/gated", token=HubServer.token) == WEIGHTS
    # not LFS: served by the Hub itself
    assert download(hf_hub, tmp_path, "config.json", repo="org/gated", token=HubServer.token) == SMALL
    cdn = [r for r in hf_hub.requests if r.path.startswith("/cdn-lfs/")]
    assert [r.method for r in cdn] == ["GET"]  # the client took the metadata from the 302 itself
    assert "Authorization" not in cdn[0].headers  # and did not send the token off the Hub
    assert httpx2.get(head.headers["Location"], headers={"Authorization": "Bearer x"}).status_code == 400


def test_hooks_can_corrupt_a_download(hf_hub: HubServer, tmp_path: Path, model: str) -> None:
    def truncate(handler, body: bytes) -> bytes:
        return body[:100] if handler.command == "GET" else body

    hf_hub.hooks["weights/model.safetensors"] = truncate
    with pytest.raises(OSError, match="Consistency check failed"):
        download(hf_hub, tmp_path, "weights/model.safetensors")

    def unavailable(handler, body: bytes) -> None:
        handler.send_response(503)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    hf_hub.hooks["/revision/main"] = unavailable
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hf_hub.endpoint).repo_info("org/model", revision="main", timeout=5)
    assert err.value.response.status_code == 503


def test_fixture_environment_reaches_a_subprocess(hf_hub: HubServer, model: str) -> None:
    assert os.environ["HF_ENDPOINT"] == hf_hub.endpoint and "HF_TOKEN" not in os.environ
    code = (
        "from huggingface_hub import hf_hub_download; "
        "import sys; sys.stdout.write(open(hf_hub_download('org/model', 'config.json'), 'rb').read().decode())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == SMALL.decode()
    assert (Path(os.environ["HF_HUB_CACHE"]) / "models--org--model" / "refs" / "main").read_text() == model
    # and in-process code that forgets endpoint= still lands here (the fixture patched the constants)
    assert HfApi().model_info("org/model").sha == model
