"""A local, in-memory Hugging Face Hub for the tests: the API and resolve endpoints the client reads.

Usage::

    from hfhub import HubServer  # the `hf_hub` fixture is registered by tests/conftest.py

    def test_something(hf_hub: HubServer) -> None:
        sha = hf_hub.add_repo("org/model", {"config.json": b"{}", "weights/model.safetensors": data})
        ...

or, without the fixture, ``with HubServer() as hub: ...``.

What it serves (for model, dataset and space repositories; dataset and space URLs carry the
``datasets/`` and ``spaces/`` prefix, their API routes ``/api/datasets/`` and ``/api/spaces/``)::

    GET  /api/{models,datasets,spaces}/{repo}[/revision/{rev}][?blobs=true]   repo info (ModelInfo & co.)
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}][?recursive=true]          tree listing, paginated by Link
    POST /api/{type}s/{repo}/paths-info/{rev}                              paths info (form: paths=..)
    GET  /api/{type}s/{repo}/refs[?include_prs=1]                          branches, tags, PR refs
    GET|HEAD /[{datasets,spaces}/]{repo}/resolve/{rev}/{path}              the file (Range, ETag, X-Repo-Commit..)
    GET|HEAD {cdn_endpoint}/cdn-lfs/{sha256}/{name}                        LFS bytes, when ``lfs_redirect``

``HubServer(lfs_redirect=False, tree_page_size=1000)``: both can also be set on a running server;
a tree listing longer than ``tree_page_size`` is split into pages linked by ``Link: <..>; rel="next"``
as the Hub does (``?cursor=N``). ``?expand=true`` is accepted and ignored (no lastCommit/security).

Revisions are a branch (``main``, ``refs/pr/1``), a tag, or a full 40-hex commit id, URL-encoded
or not. Repository ids are ``name`` or ``namespace/name``.

The LFS rule: a file is stored with LFS when its name ends with one of ``LFS_SUFFIXES``
(``.safetensors .onnx .bin .pt .pth .ckpt .gguf .h5 .msgpack .parquet``) or it is at least
``LFS_MIN_SIZE`` (1 MiB) long; ``lfs=`` given to ``add_repo``/``commit`` replaces the rule for the
files of that call: exactly the paths it names are LFS. As on the Hub:

- a regular file's id (``blobId`` / tree ``oid`` / ``ETag``) is its git blob sha1;
- an LFS file's ``blobId``/``oid`` is the git sha1 of its pointer file, its ``size`` the real size,
  and its metadata carries the sha256: ``lfs: {sha256, size, pointerSize}`` in the siblings of
  repo info, but ``lfs: {oid, size, pointerSize}`` in tree and paths-info entries (that is what
  the real Hub sends and what huggingface_hub parses); resolve answers with
  ``X-Linked-Etag: "<sha256>"`` and ``X-Linked-Size``, and ``ETag: "<sha256>"``.
- With ``hub.lfs_redirect = True`` a resolve of an LFS file answers ``302`` to a second port
  (``hub.cdn_endpoint``), like the Hub's redirect to its CDN: the client takes the metadata from
  the 302 and fetches the bytes there, without the Authorization header. Like a presigned S3 URL,
  the CDN refuses (400) a request that carries one.

Access, answered the way the Hub answers, so that huggingface_hub raises the same errors:

- a private or missing repo, no token: 401 ``X-Error-Code: RepoNotFound`` (RepositoryNotFoundError);
  with a token: 404 RepoNotFound;
- a gated repo's files, no token: 401 ``GatedRepo`` (GatedRepoError); with ``DENIED_TOKEN`` (valid,
  not granted): 403 GatedRepo. A gated repo's info, tree and refs are public, as on the Hub;
- an unknown token: 401 ``X-Error-Message: Invalid credentials in Authorization header``;
- a missing revision: 404 ``RevisionNotFound`` (RevisionNotFoundError); a missing file or tree
  path: 404 ``EntryNotFound`` (EntryNotFoundError), with ``X-Repo-Commit`` as the Hub sends it.

The valid token is ``HubServer.token`` (``TOKEN``), sent as ``Authorization: Bearer <token>``.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE``, the token path and the
``HF_HUB_DISABLE_*`` switches into ``huggingface_hub.constants`` once, when it is first imported.
Setting the environment in a test therefore reaches subprocesses (the CLI run by ``cli``) but not
a client that is already imported. In-process tests of the real client must pass the endpoint
explicitly -- ``HfApi(endpoint=hub.endpoint)``, ``hf_hub_download(..., endpoint=hub.endpoint,
cache_dir=tmp)``, ``snapshot_download(..., endpoint=hub.endpoint, cache_dir=tmp)``. The ``hf_hub``
fixture also patches those constants for the test's duration (the endpoint, the URL template,
cache, token paths, offline/telemetry/xet switches), as a safety net so that in-process code that
forgets ``endpoint=`` still talks to this server and a developer's stored token is never sent.

Fault hooks: ``hub.hooks[suffix] = hook``; a hook runs where bytes are served (a 200/206 of a
resolve or CDN request, or a JSON API answer) whose URL path, percent-decoded and without the
query, ends with ``suffix``. ``hook(handler, body) -> bytes | None``, as in conftest's
FileServer: it returns the body to serve (changed to corrupt or truncate it; Content-Length
follows, the metadata headers do not), or sends its own response and returns None.
``hub.requests`` records ``Request(method, path, headers)`` (a named tuple; ``path`` raw, with
the query; ``headers`` a dict as sent -- httpx sends lowercase names -- that looks names up
case-insensitively) for every request, CDN ones included.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlencode

import pytest

TOKEN = "hf_test_token"
DENIED_TOKEN = "hf_test_denied_token"  # a valid user without access to gated repos
LFS_SUFFIXES = (".safetensors", ".onnx", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".parquet")
LFS_MIN_SIZE = 1 << 20

# repo type -> (API collection, URL prefix)
REPO_TYPES = {"model": ("models", ""), "dataset": ("datasets", "datasets/"), "space": ("spaces", "spaces/")}
_API_TYPES = {api: kind for kind, (api, _) in REPO_TYPES.items()}
_PREFIX_TYPES = {"datasets": "dataset", "spaces": "space"}
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


class Headers(dict):
    """A request's headers as sent (a plain dict), looked up case-insensitively."""

    def _key(self, name: object) -> object:
        if isinstance(name, str) and not dict.__contains__(self, name):
            return next((k for k in self if k.lower() == name.lower()), name)
        return name

    def __getitem__(self, name: object) -> str:
        return dict.__getitem__(self, self._key(name))

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, self._key(name))

    def get(self, name: object, default: object = None) -> object:
        return dict.get(self, self._key(name), default)


class Request(NamedTuple):
    method: str
    path: str
    headers: Headers


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _header_safe(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


@dataclass(frozen=True)
class Blob:
    """One file's content and the ids the Hub derives from it."""

    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"
        ).encode()

    @property
    def oid(self) -> str:
        """The git blob sha1: of the content, or of the LFS pointer file."""
        stored = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid

    def lfs_info(self, key: str) -> dict | None:
        if not self.lfs:
            return None
        return {key: self.sha256, "size": self.size, "pointerSize": len(self.pointer)}


@dataclass(frozen=True)
class Commit:
    sha: str
    files: Mapping[str, Blob]
    parent: str | None
    date: datetime
    title: str

    def dirs(self) -> set[str]:
        out: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out

    def tree_oid(self, folder: str) -> str:
        digest = hashlib.sha1(f"tree {folder}\0".encode())
        for path in sorted(self.files):
            if path.startswith(folder + "/"):
                digest.update(f"{path}\0{self.files[path].oid}\n".encode())
        return digest.hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    gated: bool | str = False  # False, "auto" or "manual"
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        for prefix, names in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix) and revision[len(prefix):] in names:
                revision = revision[len(prefix):]
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if _COMMIT_RE.fullmatch(revision) and revision in self.commits:
            return revision
        return None


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise ValueError(f"bad repository path {path!r}")
    return path


class _Answer(Exception):
    """An HTTP error answer, raised from deep in a route."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class HubServer:
    """An in-memory Hub on 127.0.0.1 (a second port plays the LFS CDN). See the module docstring."""

    token = TOKEN
    denied_token = DENIED_TOKEN

    def __init__(self, *, host: str = "127.0.0.1", lfs_redirect: bool = False, tree_page_size: int = 1000) -> None:
        self.host = host
        self.lfs_redirect = lfs_redirect
        self.tree_page_size = tree_page_size
        self.requests: list[Request] = []
        self.hooks: dict[str, Callable] = {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self._lfs_store: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._counter = 0
        self._servers: list[ThreadingHTTPServer] = []
        self.endpoint = ""
        self.cdn_endpoint = ""

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "HubServer":
        if self._servers:
            return self
        for cdn in (False, True):
            httpd = ThreadingHTTPServer((self.host, 0), _make_handler(self, cdn=cdn))
            httpd.daemon_threads = True
            threading.Thread(target=lambda h=httpd: h.serve_forever(poll_interval=0.05), daemon=True).start()
            self._servers.append(httpd)
        self.endpoint = f"http://{self.host}:{self._servers[0].server_address[1]}"
        self.cdn_endpoint = f"http://{self.host}:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()
        self._servers = []

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- content

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        repo_type: str = "model",
        branch: str = "main",
        lfs: set[str] | None = None,
        gated: bool | str = False,
        private: bool = False,
        message: str = "initial commit",
    ) -> str:
        """Create a repository with one commit on ``branch`` (its default branch); return the commit id."""
        if repo_type not in REPO_TYPES:
            raise ValueError(f"unknown repo type {repo_type!r}")
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise ValueError(f"{repo_type} {repo_id} exists already")
            self.repos[(repo_type, repo_id)] = Repo(
                repo_type, repo_id, private=private, gated=("auto" if gated is True else gated), default_branch=branch
            )
            return self.commit(repo_id, files, branch=branch, repo_type=repo_type, lfs=lfs, message=message)

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | None],
        *,
        branch: str = "main",
        repo_type: str = "model",
        lfs: set[str] | None = None,
        parent: str | None = None,
        message: str | None = None,
    ) -> str:
        """Commit on ``branch`` and move it; return the new commit id.

        ``files`` adds or replaces files of the parent commit; a ``None`` value deletes that path.
        The parent is the branch's head, or for a new branch ``parent`` (a revision; default: the
        default branch). Older commits stay reachable by their id.
        """
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            if parent is not None:
                base = repo.resolve(parent)
                if base is None:
                    raise ValueError(f"unknown revision {parent!r}")
            else:
                base = repo.branches.get(branch) or repo.branches.get(repo.default_branch)
            tree = dict(repo.commits[base].files) if base else {}
            for path, data in files.items():
                _check_path(path)
                if data is None:
                    if tree.pop(path, None) is None:
                        raise ValueError(f"cannot delete {path!r}: not in the repository")
                    continue
                is_lfs = path in lfs if lfs is not None else (path.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE)
                tree[path] = Blob(bytes(data), is_lfs)
            paths = set(tree)
            for path in paths:
                if any(other.startswith(path + "/") for other in paths):
                    raise ValueError(f"{path!r} is both a file and a folder")
            self._counter += 1
            digest = hashlib.sha1(f"{repo_type}/{repo_id}\0{branch}\0{base}\0{self._counter}\0".encode())
            for path in sorted(tree):
                digest.update(f"{path}\0{tree[path].oid}\n".encode())
            sha = digest.hexdigest()
            repo.commits[sha] = Commit(
                sha, tree, base, _EPOCH + timedelta(minutes=self._counter), message or f"update {branch}"
            )
            repo.branches[branch] = sha
            for blob in tree.values():
                if blob.lfs:
                    self._lfs_store[blob.sha256] = blob.data
            return sha

    def tag(self, repo_id: str, name: str, revision: str, *, repo_type: str = "model") -> str:
        """Point tag ``name`` at ``revision`` (a commit id, branch or tag); return the commit id."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            sha = repo.resolve(revision)
            if sha is None:
                raise ValueError(f"unknown revision {revision!r}")
            repo.tags[name] = sha
            return sha

    def branch(self, repo_id: str, name: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """Create or move branch ``name`` (e.g. ``refs/pr/1``) to ``revision``; return the commit id."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            sha = repo.resolve(revision)
            if sha is None:
                raise ValueError(f"unknown revision {revision!r}")
            repo.branches[name] = sha
            return sha

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """The repository's record (its ``private`` and ``gated`` may be changed in place)."""
        try:
            return self.repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repository {repo_id!r}") from None

    def resolve(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> str:
        sha = self.repo(repo_id, repo_type).resolve(revision)
        if sha is None:
            raise KeyError(f"unknown revision {revision!r}")
        return sha

    def blob(self, repo_id: str, path: str, revision: str = "main", *, repo_type: str = "model") -> Blob:
        """The file at ``path`` in ``revision`` (``.sha256``, ``.oid``, ``.size``, ``.lfs``, ``.data``)."""
        repo = self.repo(repo_id, repo_type)
        return repo.commits[self.resolve(repo_id, revision, repo_type=repo_type)].files[path]

    def url(self, repo_id: str, path: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """The resolve URL, as huggingface_hub.hf_hub_url builds it."""
        prefix = REPO_TYPES[repo_type][1]
        return f"{self.endpoint}/{prefix}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


# ==========================================================================
# HTTP


def _make_handler(hub: HubServer, *, cdn: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "hfhub-test"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        # -------------------------------------------------------- plumbing

        def _send(self, status: int, body: bytes, headers: Mapping[str, str], *, head: bool) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _error(self, err: _Answer, head: bool) -> None:
            headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": _header_safe(err.message)}
            if err.code:
                headers["X-Error-Code"] = err.code
            headers.update(err.headers)
            self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head=head)

        def _hook(self, body: bytes) -> bytes | None:
            path = unquote(self.path.split("?", 1)[0])
            for suffix, hook in list(hub.hooks.items()):
                if path.endswith(suffix):
                    return hook(self, body)
            return body

        def _json(self, payload: object, head: bool, extra: Mapping[str, str] | None = None) -> None:
            body = self._hook(json.dumps(payload).encode())
            if body is None:
                return
            headers = {"Content-Type": "application/json; charset=utf-8", **(extra or {})}
            self._send(200, body, headers, head=head)

        def _handle(self, head: bool) -> None:
            hub.requests.append(Request(self.command, self.path, Headers(self.headers.items())))
            body_len = int(self.headers.get("Content-Length") or 0)
            self._form = parse_qs(self.rfile.read(body_len).decode("utf-8", "replace")) if body_len else {}
            raw, _, query = self.path.partition("?")
            self._query = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
            parts = raw.split("/")[1:]
            try:
                if cdn:
                    self._cdn(parts, head)
                elif parts and parts[0] == "api":
                    self._api(parts[1:], head)
                else:
                    self._resolve(parts, head)
            except _Answer as err:
                self._error(err, head)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # a bug in this server: make it loud
                traceback.print_exc(file=sys.stderr)
                self._error(_Answer(500, None, f"hfhub test server error: {exc!r}"), head)

        def do_GET(self) -> None:
            self._handle(head=False)

        def do_HEAD(self) -> None:
            self._handle(head=True)

        def do_POST(self) -> None:
            self._handle(head=False)

        # -------------------------------------------------------- access

        def _bearer(self) -> str | None:
            value = self.headers.get("Authorization")
            if value is None:
                return None
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in (hub.token, hub.denied_token):
                raise _Answer(401, None, "Invalid credentials in Authorization header")
            return token.strip()

        def _find_repo(self, repo_type: str, segments: list[str]) -> tuple[Repo, list[str]]:
            """Split raw URL segments into a repository (1 or 2 segments) and the rest; check access."""
            token = self._bearer()
            names = [unquote(s) for s in segments[:2]]
            repo = None
            if len(names) == 2:
                repo, rest = hub.repos.get((repo_type, "/".join(names))), segments[2:]
            if repo is None and names:
                repo, rest = hub.repos.get((repo_type, names[0])), segments[1:]
            if repo is None or (repo.private and token != hub.token):
                raise _Answer(404 if token else 401, "RepoNotFound", "Repository not found")
            return repo, rest

        def _check_gate(self, repo: Repo) -> None:
            token = self._bearer()
            if not repo.gated or token == hub.token:
                return
            kind = repo.repo_type
            if token is None:
                raise _Answer(
                    401,
                    "GatedRepo",
                    f"Access to {kind} {repo.repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.",
                )
            if token != hub.token:
                raise _Answer(
                    403,
                    "GatedRepo",
                    f"Access to {kind} {repo.repo_id} is restricted and you are not in the authorized list. "
                    f"Visit https://huggingface.co/{repo.repo_id} to ask for access.",
                )

        @staticmethod
        def _revision(repo: Repo, segments: list[str]) -> tuple[str, list[str]]:
            """The commit a revision segment names (encoded ``refs%2Fpr%2F1`` or plain ``refs/pr/1``)."""
            if not segments or not segments[0]:
                raise _Answer(404, "RevisionNotFound", "Invalid rev id: ")
            rev = unquote(segments[0])
            with hub._lock:
                sha = repo.resolve(rev)
                if sha is None and rev == "refs" and len(segments) >= 3:
                    joined = "/".join(unquote(s) for s in segments[:3])
                    sha = repo.resolve(joined)
                    if sha is not None:
                        return sha, segments[3:]
            if sha is None:
                raise _Answer(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return sha, segments[1:]

        # -------------------------------------------------------- /api

        def _api(self, parts: list[str], head: bool) -> None:
            if not parts or parts[0] not in _API_TYPES:
                raise _Answer(404, None, "Not Found")
            repo, rest = self._find_repo(_API_TYPES[parts[0]], parts[1:])
            if self.command == "POST":
                if len(rest) >= 2 and rest[0] == "paths-info":
                    sha, _ = self._revision(repo, rest[1:])
                    return self._paths_info(repo, sha, head)
                raise _Answer(404, None, "Not Found")
            if not rest or rest == [""]:
                return self._info(repo, repo.resolve(repo.default_branch), head)
            if rest[0] == "revision" and len(rest) >= 2:
                rev = unquote("/".join(rest[1:]))
                sha = repo.resolve(rev)
                if sha is None:
                    raise _Answer(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return self._info(repo, sha, head)
            if rest[0] == "tree" and len(rest) >= 2:
                sha, path_segments = self._revision(repo, rest[1:])
                folder = "/".join(unquote(s) for s in path_segments).strip("/")
                return self._tree(repo, sha, folder, head)
            if rest == ["refs"]:
                return self._refs(repo, head)
            raise _Answer(404, None, "Not Found")

        def _info(self, repo: Repo, sha: str | None, head: bool) -> None:
            if sha is None:
                raise _Answer(404, "RevisionNotFound", f"Invalid rev id: {repo.default_branch}")
            commit = repo.commits[sha]
            blobs = _truthy(self._query.get("blobs"))
            siblings = []
            for path in sorted(commit.files):
                entry: dict = {"rfilename": path}
                if blobs:
                    blob = commit.files[path]
                    entry.update(size=blob.size, blobId=blob.oid)
                    if blob.lfs:
                        entry["lfs"] = blob.lfs_info("sha256")
                siblings.append(entry)
            first = min(c.date for c in repo.commits.values())
            author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
            payload: dict = {
                "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": author,
                "sha": sha,
                "lastModified": _iso(commit.date),
                "createdAt": _iso(first),
                "private": repo.private,
                "gated": repo.gated,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum({b.oid: b.size for b in commit.files.values()}.values()),
            }
            if repo.repo_type == "model":
                payload["modelId"] = repo.repo_id
            if repo.repo_type == "space":
                payload["sdk"] = "static"
            self._json(payload, head)

        @staticmethod
        def _entry(commit: Commit, path: str) -> dict:
            blob = commit.files.get(path)
            if blob is None:
                return {"type": "directory", "oid": commit.tree_oid(path), "size": 0, "path": path}
            entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = blob.lfs_info("oid")
            return entry

        def _tree(self, repo: Repo, sha: str, folder: str, head: bool) -> None:
            commit = repo.commits[sha]
            dirs = commit.dirs()
            if folder and folder not in dirs:
                raise _Answer(404, "EntryNotFound", f"{folder} does not exist on \"{sha}\"", {"X-Repo-Commit": sha})
            prefix = folder + "/" if folder else ""
            recursive = _truthy(self._query.get("recursive"))
            names = [
                p for p in [*commit.files, *dirs] if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])
            ]
            names.sort(key=lambda p: p + "/" if p in dirs else p)  # git order
            start = int(self._query.get("cursor") or 0)
            page = names[start : start + hub.tree_page_size]
            extra = {}
            if start + hub.tree_page_size < len(names):
                query = {**self._query, "cursor": str(start + hub.tree_page_size)}
                extra["Link"] = f'<{hub.endpoint}{self.path.split("?", 1)[0]}?{urlencode(query)}>; rel="next"'
            self._json([self._entry(commit, p) for p in page], head, extra)

        def _paths_info(self, repo: Repo, sha: str, head: bool) -> None:
            commit = repo.commits[sha]
            dirs = commit.dirs()
            wanted = [p.strip("/") for p in self._form.get("paths", [])]
            self._json([self._entry(commit, p) for p in wanted if p in commit.files or p in dirs], head)

        def _refs(self, repo: Repo, head: bool) -> None:
            with hub._lock:
                branches, tags = dict(repo.branches), dict(repo.tags)

            def ref(name: str, full: str, sha: str) -> dict:
                return {"name": name, "ref": full, "targetCommit": sha}

            payload = {
                "branches": [ref(n, f"refs/heads/{n}", s) for n, s in branches.items() if not n.startswith("refs/")],
                "converts": [
                    ref(n[len("refs/convert/"):], n, s) for n, s in branches.items() if n.startswith("refs/convert/")
                ],
                "tags": [ref(n, f"refs/tags/{n}", s) for n, s in tags.items()],
            }
            if _truthy(self._query.get("include_prs")):
                payload["pullRequests"] = [ref(n, n, s) for n, s in branches.items() if n.startswith("refs/pr/")]
            self._json(payload, head)

        # -------------------------------------------------------- /resolve and the CDN

        def _resolve(self, parts: list[str], head: bool) -> None:
            repo_type = "model"
            if parts and parts[0] in _PREFIX_TYPES:
                repo_type, parts = _PREFIX_TYPES[parts[0]], parts[1:]
            at = [i for i in (2, 1) if len(parts) > i and parts[i] == "resolve"]
            if not at:
                raise _Answer(404, None, "Not Found")
            # a repository named by the segments before "resolve"; prefer one that exists
            i = next((i for i in at if (repo_type, "/".join(unquote(s) for s in parts[:i])) in hub.repos), at[0])
            repo, _ = self._find_repo(repo_type, parts[:i])
            self._check_gate(repo)
            sha, path_segments = self._revision(repo, parts[i + 1 :])
            path = "/".join(unquote(s) for s in path_segments)
            blob = repo.commits[sha].files.get(path)
            if blob is None:
                raise _Answer(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": sha})
            headers = {"X-Repo-Commit": sha, "ETag": f'"{blob.etag}"'}
            if blob.lfs:
                headers["X-Linked-Etag"] = f'"{blob.sha256}"'
                headers["X-Linked-Size"] = str(blob.size)
            if blob.lfs and hub.lfs_redirect:
                name = path.rsplit("/", 1)[-1]
                location = f"{hub.cdn_endpoint}/cdn-lfs/{blob.sha256}/{quote(name)}?" + urlencode(
                    {"response-content-disposition": f"inline; filename*=UTF-8''{quote(name)}", "Expires": "9999999999"}
                )
                headers["Location"] = location
                self._send(302, b"", headers, head=head)
                return
            self._serve_bytes(blob.data, path, headers, head)

        def _cdn(self, parts: list[str], head: bool) -> None:
            if len(parts) < 2 or parts[0] != "cdn-lfs" or parts[1] not in hub._lfs_store:
                raise _Answer(404, None, "NoSuchKey")
            if self.headers.get("Authorization") is not None:
                raise _Answer(400, None, "Only one auth mechanism allowed")
            sha256 = parts[1]
            name = unquote(parts[2]) if len(parts) > 2 else sha256
            self._serve_bytes(hub._lfs_store[sha256], name, {"ETag": f'"{sha256}"'}, head)

        def _serve_bytes(self, data: bytes, path: str, headers: dict[str, str], head: bool) -> None:
            body = self._hook(data)
            if body is None:
                return
            name = path.rsplit("/", 1)[-1]
            headers = {
                **headers,
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
                "Content-Disposition": (
                    f"inline; filename*=UTF-8''{quote(name)}; filename=\"{_header_safe(name).replace(chr(34), '')}\""
                ),
            }
            total = len(body)
            status = 200
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", (self.headers.get("Range") or "").strip())
            if match and (match[1] or match[2]):
                if match[1]:
                    start = int(match[1])
                    end = min(int(match[2]) + 1, total) if match[2] else total
                else:  # suffix range: the last N bytes
                    start, end = max(total - int(match[2]), 0), total
                if start >= total or end <= start:
                    headers["Content-Range"] = f"bytes */{total}"
                    self._send(416, b"", headers, head=head)
                    return
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
                body, status = body[start:end], 206
            self._send(status, body, headers, head=head)

    return Handler


# ==========================================================================
# The pytest fixture, registered for every test module by tests/conftest.py.


@pytest.fixture
def hf_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started HubServer, with HF_ENDPOINT pointing at it and a fresh HF_HOME / HF_HUB_CACHE."""
    hub = HubServer().start()
    home = tmp_path_factory.mktemp("hf_home")
    cache = home / "hub"
    env = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    # The in-process client read its settings at import time: point them here too (see the docstring).
    from huggingface_hub import constants

    patched = {
        "ENDPOINT": hub.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,
    }
    for name, value in patched.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    try:
        yield hub
    finally:
        hub.stop()
