"""``url = "https://…"``: one file from an HTTPS server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import IntegrityError
from ..lockfile import LockedFile
from ..store import Expected
from ..transfer import fetch_blob
from . import Context, FetchItem, Resolution

if TYPE_CHECKING:  # the manifest is read by `lock`, not by `sync --frozen`, which imports this module too
    from ..manifest import ModelSpec


def resolve(spec: ModelSpec, ctx: Context) -> Resolution:
    from ..manifest import UrlSource

    source = spec.source
    assert isinstance(source, UrlSource)
    try:
        # Size and blake3 are not known yet: the download pins them.
        digests = fetch_blob(ctx, source.url, Expected(blake3=spec.blake3, sha256=spec.sha256))
    except IntegrityError as error:
        raise error.for_file(spec.name, source.filename) from None
    file = LockedFile(path=source.filename, size=digests.size, blake3=digests.blake3, sha256=spec.sha256, url=source.url)
    return Resolution((file,))


def task_key(item: FetchItem) -> str:
    return f"url:{item.file.url}:{item.file.blake3}"


def fetch(items: list[FetchItem], ctx: Context) -> None:
    item = items[0]  # one task per (URL, blob)
    file = item.file
    assert file.url is not None
    try:
        fetch_blob(ctx, file.url, Expected(size=file.size, blake3=file.blake3))
    except IntegrityError as error:
        raise error.for_file(item.model, file.path) from None
