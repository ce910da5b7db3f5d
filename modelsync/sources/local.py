"""``path = "assets/model.onnx"``: a local file (or folder), copied into the store and pinned.

Paths are relative to models.toml and stay relative in the lock: no absolute
local path ever enters it, so the lock works on every clone.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from .._safepath import UnsafePathError, safe_relpath
from ..errors import IntegrityError, SourceError, UsageError
from ..lockfile import LockedFile
from ..manifest import ModelSpec, PathSource
from ..store import Expected
from . import Context, FetchItem, Resolution, match_globs


def _members(spec: ModelSpec, root: Path) -> dict[str, str]:
    """view path -> path relative to models.toml, for every file the entry selects."""
    source = spec.source
    assert isinstance(source, PathSource)
    local = root / source.path
    if local.is_file():
        return {local.name: source.path}
    if not local.is_dir():
        raise UsageError(f"models.{spec.name}.path: {source.path!r} is neither a file nor a folder")
    inside = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    chosen = inside
    if source.files is not None:
        chosen = match_globs(
            inside, source.files, model=spec.name, inside=repr(source.path), hint="fix the glob; it is relative to the folder"
        )
    if not chosen:
        raise UsageError(f"models.{spec.name}.path: the folder {source.path!r} holds no file")
    for relative in chosen:
        try:
            safe_relpath(relative)
        except UnsafePathError as error:
            raise UsageError(f"models.{spec.name}: cannot use {relative!r}: {error}") from None
    return {relative: posixpath.join(source.path.rstrip("/"), relative) for relative in sorted(chosen)}


def _copy(local: Path, expected: Expected, ctx: Context) -> tuple[int, str]:
    try:
        handle = open(local, "rb")
    except OSError as error:
        raise SourceError(f"cannot read local file {local}: {error.strerror}", hint="restore the file, or change models.toml and run `modelsync lock`") from None
    with handle:
        digests = ctx.store_stream(handle, expected)
    return digests.size, digests.blake3


def resolve(spec: ModelSpec, ctx: Context) -> Resolution:
    files = []
    members = _members(spec, ctx.project_root)
    assert isinstance(spec.source, PathSource)
    single = (ctx.project_root / spec.source.path).is_file()
    if not single and (spec.sha256 or spec.blake3):
        raise UsageError(
            f"models.{spec.name}: sha256/blake3 pins one file, but {spec.source.path!r} is a folder of {len(members)} file(s)",
            hint="drop the digest: the lock pins every file of the folder",
        )
    for view_path, relative in members.items():
        expected = Expected(blake3=spec.blake3 if single else None, sha256=spec.sha256 if single else None)
        try:
            size, blake3 = _copy(ctx.project_root / relative, expected, ctx)
        except IntegrityError as error:
            raise error.for_file(spec.name, view_path) from None
        files.append(LockedFile(path=view_path, size=size, blake3=blake3, source={"path": relative}))
    return Resolution(tuple(files))


def unchanged(spec: ModelSpec, locked: tuple[LockedFile, ...], root: Path) -> bool:
    """Do the local files still hold the pinned bytes? (size first, then blake3)"""
    import blake3

    try:
        members = _members(spec, root)
    except UsageError:
        return False
    pinned = {file.path: file for file in locked}
    if set(members) != set(pinned) or any(pinned[p].source != {"path": r} for p, r in members.items()):
        return False
    for view_path, relative in members.items():
        local = root / relative
        try:
            if local.stat().st_size != pinned[view_path].size:
                return False
            digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
            if pinned[view_path].size:  # mmap refuses empty files
                digest.update_mmap(local)
        except OSError:
            return False
        if digest.hexdigest() != pinned[view_path].blake3:
            return False
    return True


def task_key(item: FetchItem) -> str:
    return f"path:{item.file.blake3}"


def fetch(items: list[FetchItem], ctx: Context) -> None:
    item = items[0]
    relative = (item.file.source or {})["path"]
    expected = Expected(size=item.file.size, blake3=item.file.blake3)
    try:
        _copy(ctx.project_root / relative, expected, ctx)
    except IntegrityError as error:
        raise IntegrityError(
            error.mismatch,
            model=item.model,
            file=item.file.path,
            hint=f"{relative} changed since it was locked; run `modelsync lock` to pin the new content",
        ) from None
