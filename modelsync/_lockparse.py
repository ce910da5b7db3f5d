"""A fast reader for the TOML that ``lockfile.dumps`` writes, and nothing else.

tomllib reads a lock of 2000 files in about 170 ms, most of a sync of 2000
small files' set-up. The writer's layout is fixed: top-level ``key = value``
lines, ``[[model]]`` headers, one value per line, arrays of tables with one
table per line. Each value is a JSON text once its keys are quoted (the
writer writes strings with ``json.dumps``), so the C JSON decoder does the
work; the usual model (a name, a one-key source, one file) is read in one
regex match. About 12 ms for the same lock.

``read`` gives the reader (``lockfile``) the plainest models (no escape in
any string, one file without a source table) as the tuple of their values,
not as a table: it checks and builds the records from that tuple without
building and walking a table first (a lock of 2000 such models: ~45 ms of
reading down to ~20).

``parse`` returns what ``tomllib.loads`` would, or None for anything outside
that layout: comments after values, dotted keys, other tables, CRLF line
ends, escapes or characters JSON and TOML read differently. The caller then
uses tomllib, which also gives the error messages for bad input. So this
reader never accepts a text that tomllib refuses, nor reads one differently.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, TypeVar

_T = TypeVar("_T")

# A basic string: only escapes that mean the same in JSON and TOML (no \/, no \U),
# no raw control characters (TOML allows a raw tab, JSON does not: such a string goes
# to tomllib), no \u escape of a surrogate (JSON pairs them, TOML refuses them).
# Written as "plain* (escape plain*)*": the regex engine then runs through plain
# characters in one loop, not one alternation a character: a lock of 2000 files
# parses in 25 ms instead of 40.
_STRING = r'"[^"\\\x00-\x1f\x7f]*(?:\\(?:["\\bfnrt]|u(?![dD][89abAB])[0-9a-fA-F]{4})[^"\\\x00-\x1f\x7f]*)*"'
# One token of a one-line TOML value. Integers: no sign, underscore or leading zero
# (JSON cannot read those), but "-" (both can).


class Lazy:
    """A pattern compiled at its first use. Each pattern built on ``_STRING``
    takes ~0.5-2 ms to compile, at every sync if compiled at import; the lines
    they read (an escape, a model with several files, a comment after a value)
    are not in a plain lock or manifest, which then never pays for them."""

    __slots__ = ("_source", "_compiled")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def get(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self._source)
        return self._compiled


def token_pattern(*more: str) -> Lazy:
    """The tokens a value may hold, and ``more`` alternatives (each a named group
    that ``_value`` knows, starting with a character none of the others starts with)."""
    return Lazy(
        r"[ \t]*(?:"
        rf"(?P<string>{_STRING})(?P<string_key>[ \t]*=)?"
        r"|(?P<key>[A-Za-z0-9_-]+)[ \t]*="
        r"|(?P<word>true|false|-?(?:0|[1-9][0-9]*))(?![A-Za-z0-9_.:+-])"
        r"|(?P<punct>[{}\[\],])"
        + "".join(f"|{alternative}" for alternative in more)
        + r")"
    )


_TOKEN = token_pattern()
# The writer's most common line, a file without a `source` table, in one match.
_FILE = Lazy(
    rf"\{{ (?:variant = (?P<variant>{_STRING}), )?path = (?P<path>{_STRING})(?:, url = (?P<url>{_STRING}))?"
    rf", size = (?P<size>0|[1-9][0-9]*), blake3 = (?P<blake3>{_STRING})(?:, sha256 = (?P<sha256>{_STRING}))? \}}"
)
# The writer's most common model: a name, maybe a loader, a one-key source and one file.
_MODEL = Lazy(
    rf"name = (?P<name>{_STRING})\n"
    rf"(?:loader = (?P<loader>{_STRING})\n)?"
    rf"source = \{{ (?P<source_key>[A-Za-z0-9_-]+) = (?P<source_value>{_STRING}) \}}\n"
    r"files = \[\n  (?P<file>\{[^\n]*\}),\n\]\n"
)
# What the lock's reader (lockfile) accepts in a model's values, written here once
# for both: a model name, a hex digest, and the simple form of an http(s) URL (no
# quote or backslash in it, as in a plain string), which lockfile reads without
# urlsplit (``SIMPLE_URL``: the scheme and the host are its groups).
NAME = r"[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?"
HEX64 = r"[0-9a-f]{64}"
_URL_SCHEME, _URL_HOST, _URL_REST = r"https?", r"[a-z0-9.-]+", r"(?::[0-9]{1,5})?(?:[/?#][!#-\[\]-~]*)?"
SIMPLE_URL = rf"({_URL_SCHEME})://({_URL_HOST}){_URL_REST}"
# ``safe_relpath``'s rules for a path in a plain string: not absolute, no drive letter,
# no empty, "." or ".." component (a component ends at "/" or at the closing quote).
_SAFE_PATH = r'(?![A-Za-z]:)(?:(?!\.\.?/)[^/"\\\x00-\x1f\x7f]+/)*(?!\.\.?")[^/"\\\x00-\x1f\x7f]+'
# The plainest model, as the writer writes it: a name, maybe a loader, a one-key
# source and one file without a source table or variant, and no escape in any string
# (``_PLAIN``: so each value is its text between the quotes). Its name, digests, URL
# and path are also ones lockfile accepts, so that it builds the records from the
# values without checking each (a lock of 2000 models: ~10 ms less at every sync);
# any other model, valid or not, is read as a table, which lockfile checks key by key.
_PLAIN = r'"([^"\\\x00-\x1f\x7f]*)"'
_PLAIN_MODEL = re.compile(
    rf'name = "({NAME})"\n(?:loader = {_PLAIN}\n)?source = \{{ ([A-Za-z0-9_-]+) = {_PLAIN} \}}\n'
    rf'files = \[\n  \{{ path = "({_SAFE_PATH})"(?:, url = "({_URL_SCHEME}://{_URL_HOST}{_URL_REST})")?, '
    rf'size = (0|[1-9][0-9]*), blake3 = "({HEX64})"(?:, sha256 = "({HEX64})")? \}},\n\]\n'
)
_STRING_ONLY = re.compile(_STRING)
_STRING_TABLE = Lazy(rf"\{{ (?P<key>[A-Za-z0-9_-]+) = (?P<value>{_STRING}) \}}")
_COMMENT_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LINE = re.compile(r"(?P<key>[A-Za-z0-9_-]+)[ \t]*=[ \t]*(?P<value>.*?)[ \t]*")
_DECODER = json.JSONDecoder(object_pairs_hook=lambda pairs: _unique(pairs))


class _NotOurs(Exception):
    """The text is not in the writer's layout: tomllib must read it."""


def parse(text: str) -> dict[str, Any] | None:
    """What ``tomllib.loads(text)`` gives, or None when the text is not in the writer's layout."""
    layout = read(text)
    if layout is None:
        return None
    root, models = layout
    if models:
        root["model"] = [plain_table(model) if model.__class__ is tuple else model for model in models]
    return root


def read(text: str) -> tuple[dict[str, Any], list[tuple | dict[str, Any]]] | None:
    """The top-level table and the ``[[model]]`` entries of a lock in the writer's
    layout, or None for any other text. An entry is a model's table, or a plain
    model's values: (name, loader, source key, source value, path, url, size,
    blake3, sha256), None for an absent one, size still a string."""
    return fast_or_none(_read, text)


def plain_table(values: tuple) -> dict[str, Any]:
    """A plain model's table, as tomllib reads it."""
    name, loader, source_key, source_value, path, url, size, blake3, sha256 = values
    table: dict[str, Any] = {"name": name}
    if loader is not None:
        table["loader"] = loader
    table["source"] = {source_key: source_value}
    file = {"path": path, "url": url, "size": int(size), "blake3": blake3, "sha256": sha256}
    table["files"] = [{key: value for key, value in file.items() if value is not None}]
    return table


def fast_or_none(reader: Callable[[str], _T], text: str) -> _T | None:
    """``reader(text)``, or None when the text is outside the reader's layout (tomllib's to read)."""
    try:
        return reader(text)
    except (_NotOurs, ValueError, RecursionError):
        return None


def _read(text: str) -> tuple[dict[str, Any], list[tuple | dict[str, Any]]]:
    if "\r" in text:
        raise _NotOurs
    # The writer puts a blank line and `[[model]]` before each model; no value can
    # hold a line break (strings escape theirs), so the text splits into models there.
    head, *blocks = text.split("\n[[model]]\n")
    root = _lines(head)
    if blocks and "model" in root:
        raise _NotOurs
    plain = _PLAIN_MODEL.fullmatch
    return root, [match.groups() if (match := plain(block)) is not None else _model(block) for block in blocks]


def _model(block: str) -> dict[str, Any]:
    """One model's table: the usual shape in one regex match, any other by its lines."""
    match = _MODEL.get().fullmatch(block)
    if match is None:
        return _lines(block)
    table = {"name": _string(match["name"])}
    if match["loader"] is not None:
        table["loader"] = _string(match["loader"])
    table["source"] = {match["source_key"]: _string(match["source_value"])}
    table["files"] = [_item(match["file"])]
    return table


def _lines(text: str) -> dict[str, Any]:
    """``key = value`` lines (and comments and blank lines) as a table; a header is not ours."""
    table: dict[str, Any] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        if line.startswith("#"):
            if _COMMENT_CONTROL.search(line):
                raise _NotOurs  # TOML refuses control characters (but tab) in a comment
            continue
        _key_value(table, line, lines)  # `[[model]]` or `[x]` is no `key = value`: not ours
    return table


def _key_value(table: dict[str, Any], line: str, lines, tokens: Lazy = _TOKEN) -> None:  # type: ignore[no-untyped-def]
    """A ``key = value`` line into ``table``; for a multi-line array, its lines too."""
    match = _LINE.fullmatch(line)
    if match is None:
        raise _NotOurs
    key, value = match["key"], match["value"]
    if key in table:
        raise _NotOurs
    if value == "[":
        table[key] = [_item(item[:-1]) for item in _array_items(lines)]
    else:
        table[key] = _value(value, tokens)


def _array_items(lines) -> list[str]:  # type: ignore[no-untyped-def]
    """The lines of a multi-line array, up to its closing ``]``: one value and a comma each."""
    items = []
    for line in lines:
        if line == "]":
            return items
        if not line.startswith("  ") or not line.endswith(","):
            raise _NotOurs
        items.append(line[2:])
    raise _NotOurs  # no closing bracket


def _item(text: str) -> Any:
    """An element of a multi-line array: a file's table in one regex match where it can be."""
    match = _FILE.get().fullmatch(text)
    if match is None:
        return _value(text)
    table: dict[str, Any] = {}
    for key, found in match.groupdict().items():
        if found is not None:
            table[key] = int(found) if key == "size" else _string(found)
    return table


def _string(token: str) -> str:
    return token[1:-1] if "\\" not in token else json.loads(token)


def _value(text: str, tokens: Lazy = _TOKEN) -> Any:
    """One TOML value as JSON, read by the JSON decoder. ``tokens``: what a value
    may hold (a hand-written document's also has literal strings and a comment)."""
    if _STRING_ONLY.fullmatch(text):
        return _string(text)
    if text.isdigit() and text.isascii() and (text[0] != "0" or text == "0"):  # `version = 1`
        return int(text)
    if text[:1] == "{" and (match := _STRING_TABLE.get().fullmatch(text)) is not None:  # `{ url = "…" }`: most sources
        return {match["key"]: _string(match["value"])}
    out = []
    tokens_pattern = tokens.get()
    position, end = 0, len(text)
    while position < end:
        match = tokens_pattern.match(text, position)
        if match is None or match.end() == position:
            raise _NotOurs
        position = match.end()
        kind = match.lastgroup
        if kind == "string" or kind == "string_key":
            out.append(match["string"])
            if match["string_key"]:
                out.append(":")
        elif kind == "literal" or kind == "literal_key":
            out.append(json.dumps(match["literal"][1:-1]))  # no escapes in a literal string: its text, quoted
            if match["literal_key"]:
                out.append(":")
        elif kind == "comment":
            continue  # to the end of the line (a control character in it stops the match: not ours)
        elif kind == "key":
            out.append(f'"{match["key"]}":')
        elif kind == "word":
            out.append(match["word"])
        else:
            out.append(match["punct"])
    if not out:
        raise _NotOurs
    return _DECODER.decode(" ".join(out))  # apart: `[1 2]` must not read as [12]


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    table = dict(pairs)
    if len(table) != len(pairs):
        raise _NotOurs  # TOML refuses a key twice in a table; JSON would keep the last
    return table
