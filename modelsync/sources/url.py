"""``url = "https://…"``: one file from an HTTPS server."""

from __future__ import annotations

from ..errors import IntegrityError
from ..http import download
from ..lockfile import LockedFile
from ..manifest import ModelSpec, UrlSource
from ..store import Expected
from . import Context, FetchItem, Resolution


def resolve(spec: ModelSpec, ctx: Context) -> Resolution:
    source = spec.source
    assert isinstance(source, UrlSource)
    with ctx.store.writer(Expected(blake3=spec.blake3, sha256=spec.sha256)) as writer:
        try:
            with ctx.slots:
                download(ctx.session, source.url, writer, progress=ctx.progress, check_cancelled=ctx.check_cancelled)
            digests = writer.commit()
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
    # Corruption in transit is retried once from scratch (DESIGN §7); a second
    # mismatch means the upstream changed, and the error says so.
    for attempt in (1, 2):
        with ctx.store.writer(Expected(size=file.size, blake3=file.blake3, sha256=file.sha256)) as writer:
            try:
                with ctx.slots:
                    download(ctx.session, file.url, writer, progress=ctx.progress, check_cancelled=ctx.check_cancelled)
                writer.commit()
                return
            except IntegrityError as error:
                ctx.progress(-writer.size)
                if attempt == 2:
                    raise error.for_file(item.model, file.path) from None
