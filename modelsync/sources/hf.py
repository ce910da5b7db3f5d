"""``hf = "org/name"``: files of a Hugging Face repository, pinned to a commit.

Lock time asks the Hub's API (through huggingface_hub's client, so
``HF_ENDPOINT`` and the user's token work as usual) for the commit a revision
points to and the repository's files with their sizes and LFS sha256, then
fetches the chosen files into the store. The lock records the commit and, per
file, the immutable ``…/resolve/<commit>/<path>`` URL.

Sync downloads through modelsync's own engine, with the token as a Bearer
header that never enters the lock, the state, a log or an error message. A
file already in the user's Hugging Face cache (same LFS sha256, or the same
commit and path) is copied from there instead, and verified like a download.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .. import _env
from .._safepath import UnsafePathError, safe_relpath
from ..errors import IntegrityError, Mismatch, ModelsyncError, NetworkError, OfflineError, SourceError, UsageError
from ..http import redact
from ..lockfile import LockedFile
from ..manifest import HfSource, ModelSpec, is_loopback
from ..store import Expected
from ..transfer import fetch_blob
from . import Context, FetchItem, Resolution, match_globs

DEFAULT_ENDPOINT = "https://huggingface.co"
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_COPY_CHUNK = 1 << 20
_TOKEN_HINT = "set HF_TOKEN (or run `hf auth login`); the token is sent to the Hub only, never written anywhere"


# --------------------------------------------------------------------------
# Environment, read at call time


def endpoint() -> str:
    return (_env.get(_env.HF_ENDPOINT) or DEFAULT_ENDPOINT).rstrip("/")


def public_endpoint() -> str:
    """The endpoint without credentials (``https://user:secret@mirror``): what the lock may record."""
    parts = urlsplit(endpoint())
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def offline() -> bool:
    return _env.flag(_env.HF_HUB_OFFLINE)


def token() -> str | None:
    """The user's token, where huggingface_hub looks first: HF_TOKEN (or the older
    HUGGING_FACE_HUB_TOKEN), then the file `hf auth login` writes (HF_TOKEN_PATH,
    else HF_HOME/token). Read here rather than through huggingface_hub, whose
    import alone costs a sync ~130 ms."""
    value = _env.get(_env.HF_TOKEN) or _env.get(_env.HUGGING_FACE_HUB_TOKEN)
    if value is None:
        path = _env.get(_env.HF_TOKEN_PATH)
        file = Path(os.path.expandvars(path)).expanduser() if path else hf_home() / "token"
        try:
            value = file.read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError):
            value = None
    return value


def hf_home() -> Path:
    home = _env.get(_env.HF_HOME) or os.path.join(_env.get(_env.XDG_CACHE_HOME) or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser()


def hub_cache() -> Path:
    configured = _env.get(_env.HF_HUB_CACHE)
    if configured:
        return Path(os.path.expandvars(configured)).expanduser()
    return hf_home() / "hub"


def file_url(repo_type: str, repo: str, commit: str, path: str, base: str | None = None) -> str:
    return f"{base or endpoint()}/{_URL_PREFIX[repo_type]}{repo}/resolve/{commit}/{quote(path)}"


def _auth_headers(url: str) -> dict[str, str]:
    """A Bearer token for the Hub's own host only (requests drops it on redirects
    elsewhere), and never over plain HTTP to another machine."""
    secret = token()
    parts = urlsplit(url)
    encrypted = parts.scheme.lower() == "https" or is_loopback(parts.hostname or "")
    if secret and encrypted and parts.netloc == urlsplit(endpoint()).netloc:
        return {"Authorization": f"Bearer {secret}"}
    return {}


# --------------------------------------------------------------------------
# Lock time


def _repo_info(source: HfSource) -> Any:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    base = endpoint()
    page = f"{public_endpoint()}/{_URL_PREFIX[source.repo_type]}{source.repo}"
    secret = token()
    try:
        return HfApi(endpoint=base, token=secret or False).repo_info(
            source.repo, repo_type=source.repo_type, revision=source.revision, files_metadata=True
        )
    except GatedRepoError:
        hint = f"accept its conditions at {page}, then {_TOKEN_HINT}"
        if secret:
            hint = f"your token has no access yet: accept the repository's conditions at {page}"
        raise SourceError(f"{source.repo} is a gated repository", hint=hint) from None
    except RepositoryNotFoundError:
        hint = "check the name" + ("" if secret else f"; if the repository is private, {_TOKEN_HINT}")
        raise SourceError(f"repository {source.repo!r} ({source.repo_type}) not found on {redact(base)}", hint=hint) from None
    except RevisionNotFoundError:
        raise SourceError(
            f"revision {source.revision!r} not found in {source.repo}", hint="use a branch, a tag or a 40-hex commit that exists"
        ) from None
    except HfHubHTTPError as error:
        raise NetworkError(f"the Hub answered an error for {source.repo}: {_first_line(error)}", hint="try again later") from None
    except Exception as error:
        # huggingface_hub's transport (httpx) raises its own connection errors.
        if type(error).__module__.split(".")[0] in {"httpx", "httpcore", "requests", "urllib3"} or isinstance(error, OSError):
            raise NetworkError(
                f"cannot reach {redact(base)}: {_first_line(error)}", hint="check the network, proxy settings and HF_ENDPOINT"
            ) from None
        raise


def _first_line(error: BaseException) -> str:
    return redact((str(error).strip().splitlines() or [type(error).__name__])[0][:300])


def _select(source: HfSource, paths: list[str], name: str) -> list[str]:
    if source.file is not None:
        if source.file not in paths:
            close = [p for p in paths if p.rsplit("/", 1)[-1] == source.file.rsplit("/", 1)[-1]]
            hint = f"did you mean {close[0]!r}?" if close else f"the repository has {len(paths)} file(s); check the path"
            raise UsageError(f"models.{name}.file: {source.file!r} is not in {source.repo} at {source.revision!r}", hint=hint)
        return [source.file]
    chosen = match_globs(
        paths,
        source.files or (),
        model=name,
        inside=f"{source.repo} at {source.revision!r}",
        hint="fix the glob; it matches repository paths such as 'onnx/model.onnx' ('*' also crosses '/')",
    )
    return sorted(chosen)


def resolve(spec: ModelSpec, ctx: Context) -> Resolution:
    source = spec.source
    assert isinstance(source, HfSource)
    if offline():
        raise OfflineError(
            f"HF_HUB_OFFLINE is set, so {source.repo}@{source.revision} cannot be resolved", missing=[], hint="unset HF_HUB_OFFLINE to lock"
        )
    info = _repo_info(source)
    commit = info.sha
    siblings = {sibling.rfilename: sibling for sibling in info.siblings or ()}
    files: dict[str, LockedFile] = {}
    errors: list[ModelsyncError] = []

    def pin(path: str) -> None:
        sibling = siblings[path]
        lfs_sha256 = sibling.lfs.sha256 if sibling.lfs else None
        if spec.sha256 and lfs_sha256 and spec.sha256 != lfs_sha256:
            errors.append(IntegrityError(Mismatch("sha256", spec.sha256, lfs_sha256), model=spec.name, file=path))
            return
        expected = Expected(size=sibling.size, blake3=spec.blake3, sha256=spec.sha256 or lfs_sha256)
        url = file_url(source.repo_type, source.repo, commit, path)
        recorded = file_url(source.repo_type, source.repo, commit, path, base=public_endpoint())
        try:
            # Nothing is pinned yet, so a copy in the Hugging Face cache must be
            # vouched for by the Hub: an LFS file by its sha256, any other by its git blob id.
            git_oid = None if lfs_sha256 else getattr(sibling, "blob_id", None)
            size, digest = _fetch(ctx, source.repo_type, source.repo, commit, path, expected, url, git_oid=git_oid, at_lock=True)
        except IntegrityError as error:
            errors.append(error.for_file(spec.name, path))
            return
        except ModelsyncError as error:
            errors.append(error)
            return
        files[path] = LockedFile(path=path, size=size, blake3=digest, sha256=expected.sha256, url=recorded)

    from ..engine import run_parallel

    chosen = _select(source, sorted(siblings), spec.name)
    for path in chosen:
        try:
            safe_relpath(path)
        except UnsafePathError as error:
            raise SourceError(f"refusing {source.repo}'s file: {error}", hint="the server's file list is malformed or malicious") from None
    run_parallel([lambda path=path: pin(path) for path in chosen], ctx)
    if errors:
        raise errors[0]
    return Resolution(tuple(files[path] for path in chosen), {"commit": commit})


# --------------------------------------------------------------------------
# Fetching (lock and sync)


def _from_hf_cache(
    ctx: Context, repo_type: str, repo: str, commit: str, path: str, expected: Expected, git_oid: str | None = None
) -> tuple[int, str] | None:
    """Copy the file from the user's Hugging Face cache if it is there and verifies."""
    folder = hub_cache() / f"{repo_type}s--{repo.replace('/', '--')}"
    candidates = [folder / "snapshots" / commit / path]
    if expected.sha256:
        candidates.insert(0, folder / "blobs" / expected.sha256)  # LFS blobs are named by their sha256
    for candidate in candidates:
        if git_oid is not None and _git_blob_sha1(candidate) != git_oid:
            continue  # absent, or not the bytes the Hub lists for this commit
        try:
            handle = open(candidate, "rb")
        except OSError:
            continue
        try:
            with handle:
                digests = ctx.store_stream(handle, expected)
            return digests.size, digests.blake3
        except IntegrityError:
            continue  # not the bytes we want: download them instead
    return None


def _git_blob_sha1(path: Path) -> str | None:
    """The git object id of a file's content (what the Hub lists as a non-LFS file's blobId)."""
    import hashlib

    try:
        size = path.stat().st_size
        digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        with open(path, "rb") as handle:
            while block := handle.read(_COPY_CHUNK):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _fetch(
    ctx: Context,
    repo_type: str,
    repo: str,
    commit: str,
    path: str,
    expected: Expected,
    url: str,
    *,
    git_oid: str | None = None,
    at_lock: bool = False,
) -> tuple[int, str]:
    # At sync the blake3 pin vouches for a cached copy; at lock, the LFS sha256 or the git blob id.
    trusted = not at_lock or expected.sha256 is not None or git_oid is not None
    reused = _from_hf_cache(ctx, repo_type, repo, commit, path, expected, git_oid) if trusted else None
    if reused is not None:
        return reused
    if offline() or ctx.offline:
        raise OfflineError(
            f"offline, and {repo}/{path} is in neither modelsync's cache nor the Hugging Face cache",
            missing=[],
            hint="sync once with the network on (and HF_HUB_OFFLINE unset)",
        )
    digests = fetch_blob(
        ctx,
        url,
        expected,
        headers=_auth_headers(url),
        auth_hint=_TOKEN_HINT + "; a gated repository also needs its conditions accepted on the website",
    )
    return digests.size, digests.blake3


def in_hf_cache(item: FetchItem) -> bool:
    """Is a copy of this file in the user's Hugging Face cache? (stat only; it is verified when copied)"""
    origin = item.origin
    folder = hub_cache() / f"{origin.get('repo-type', 'model')}s--{origin['hf'].replace('/', '--')}"
    candidates = [folder / "snapshots" / origin["commit"] / item.file.path]
    if item.file.sha256:
        candidates.append(folder / "blobs" / item.file.sha256)
    return any(candidate.is_file() for candidate in candidates)


def task_key(item: FetchItem) -> str:
    return f"hf:{item.file.blake3}"


def fetch(items: list[FetchItem], ctx: Context) -> None:
    item = items[0]
    origin = item.origin
    repo, commit, repo_type = origin["hf"], origin["commit"], origin.get("repo-type", "model")
    path = safe_relpath(item.file.path)
    url = file_url(repo_type, repo, commit, path)  # today's HF_ENDPOINT, not the one that locked
    expected = Expected(size=item.file.size, blake3=item.file.blake3, sha256=item.file.sha256)
    try:
        _fetch(ctx, repo_type, repo, commit, path, expected, url)
    except IntegrityError as error:
        raise error.for_file(item.model, item.file.path) from None
