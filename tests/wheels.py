"""Build small wheels for the tests, with the standard library only.

A wheel here is what pip expects to find on an index or in a find-links
folder: ``NAME-VERSION-TAG.whl`` holding the package files and a
``NAME-VERSION.dist-info/`` with METADATA, WHEEL and a RECORD whose sha256
digests are urlsafe base64 without padding (PEP 376 / PEP 427). A test can
ask for wrong RECORD digests, or for member names that no honest wheel has
(``../../evil.onnx``, ``/abs/evil.onnx``): zipfile writes names as given.
"""

from __future__ import annotations

import base64
import csv
import io
import hashlib
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path


def escape(name: str) -> str:
    """The distribution name as it appears in wheel and dist-info file names."""
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_name(name: str, version: str, tag: str = "py3-none-any") -> str:
    return f"{escape(name)}-{version}-{tag}.whl"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_digest(data: bytes) -> str:
    """``sha256=<urlsafe base64, no padding>`` as RECORD writes it."""
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def build_wheel(
    folder: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    tag: str = "py3-none-any",
    wrong_record: Iterable[str] = (),
    omit_from_record: Iterable[str] = (),
    filename: str | None = None,
) -> Path:
    """Write a wheel with ``files`` (member path -> bytes) into ``folder``; return its path.

    ``wrong_record``: members whose RECORD digest is deliberately wrong (the
    digest of other bytes, still well formed). ``omit_from_record``: members
    RECORD does not list at all. ``filename`` overrides the wheel's file name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wrong = set(wrong_record)
    omitted = set(omit_from_record)
    unknown = (wrong | omitted) - set(files)
    if unknown:
        raise ValueError(f"not members of the wheel: {sorted(unknown)}")
    dist_info = f"{escape(name)}-{version}.dist-info"
    python_tag, abi_tag, platform_tag = tag.split("-")
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: a test wheel\n\n".encode()
    wheel_meta = (
        "Wheel-Version: 1.0\n"
        "Generator: modelsync-tests\n"
        f"Root-Is-Purelib: {'true' if platform_tag == 'any' else 'false'}\n"
        f"Tag: {tag}\n"
    ).encode()
    entries: list[tuple[str, bytes]] = list(files.items())
    entries += [(f"{dist_info}/METADATA", metadata), (f"{dist_info}/WHEEL", wheel_meta)]
    record = io.StringIO()
    writer = csv.writer(record, delimiter=",", quotechar='"', lineterminator="\n")  # as the `wheel` tool writes it
    for member, data in entries:
        if member in omitted:
            continue
        digest = record_digest(b"not the member's bytes: " + data) if member in wrong else record_digest(data)
        writer.writerow((member, digest, len(data)))
    writer.writerow((f"{dist_info}/RECORD", "", ""))
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    target = folder / (filename or wheel_name(name, version, tag))
    temp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in entries:
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))  # names kept exactly as given
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    os.replace(temp, target)
    return target


def pip_env(find_links: Path) -> dict[str, str]:
    """Environment that makes pip see only ``find_links``: no index, no config file."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(find_links),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "https://invalid.invalid/simple",  # never used: PIP_NO_INDEX wins
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
