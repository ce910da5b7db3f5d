"""A fast reader for hand-written TOML in the simple layout most models.toml use.

tomllib reads a models.toml of 2000 models in about 30 ms: as long as the
whole of `sync --frozen` takes to plan those models' downloads, for a command
that only needs the [settings] table (and `sync` and `lock`, which need all of
it, pay the same). Most manifests are plain: ``[a.b]`` table headers of bare
keys, ``key = value`` lines whose values fit on one line (or are arrays of one
item a line, as ``_lockparse`` reads them), comments and blank lines. Such a
document is read here with the lock's reader's value tokenizer and the C JSON
decoder, several times faster.

``parse`` returns what ``tomllib.loads`` would, or None for anything outside
that layout: dotted or quoted keys before ``=``, arrays of tables, a table
defined twice or after its sub-tables, multi-line strings, floats, dates, and
every value the lock's reader declines. The caller then uses tomllib, which
also gives the located error messages for bad input. So this reader never
accepts a text that tomllib refuses, nor reads one differently
(tests/test_manifestparse.py fuzzes it).
"""

from __future__ import annotations

import re
from typing import Any

from ._lockparse import _COMMENT_CONTROL, _PLAIN, _STRING, Lazy, _key_value, _NotOurs, _string, fast_or_none, token_pattern

_BARE_KEY = r"[A-Za-z0-9_-]+"
_LITERAL = r"'[^'\x00-\x08\x0a-\x1f\x7f]*'"
_KEY = rf"(?:{_BARE_KEY}|{_STRING}|{_LITERAL})"  # `[models."a.b"]`: a model name with a dot is quoted
# A table header, maybe spaced out, maybe followed by a comment.
_HEADER = Lazy(rf"\[[ \t]*(?P<keys>{_KEY}(?:[ \t]*\.[ \t]*{_KEY})*)[ \t]*\][ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?")
_HEADER_KEY = Lazy(_KEY)
# The usual lines, each in one match: a `[models.name]` header of bare keys, and a
# `key = "string"` line whose string has no escape (its value: the text between the
# quotes). Anything else takes the general path (a manifest of 2000 models: ~20 -> ~10 ms).
_BARE_HEADER = re.compile(rf"\[({_BARE_KEY})\.({_BARE_KEY})\]")
_PLAIN_LINE = re.compile(rf"({_BARE_KEY})[ \t]*=[ \t]*{_PLAIN}[ \t]*")
# The lock reader's tokens, plus what people write by hand: literal strings and a comment at the end.
_TOKEN = token_pattern(rf"(?P<literal>{_LITERAL})(?P<literal_key>[ \t]*=)?", r"(?P<comment>#[^\x00-\x08\x0a-\x1f\x7f]*)")


def parse(text: str) -> dict[str, Any] | None:
    return fast_or_none(_parse, text)


def _parse(text: str) -> dict[str, Any]:
    if "\r" in text or text.startswith("\ufeff"):
        raise _NotOurs
    root: dict[str, Any] = {}
    table = root
    # Tables a header made, explicitly or as a parent (by id: each dict lives as
    # long as the document). Only these may get sub-tables from a header: an
    # inline table or a value may not, and a table is defined once.
    made = {id(root)}
    lines = iter(text.split("\n"))
    for raw in lines:
        line = raw.lstrip(" \t")
        if not line:
            continue
        if line[0] == "#":
            if _COMMENT_CONTROL.search(line):
                raise _NotOurs  # TOML refuses control characters (but tab) in a comment
            continue
        if line[0] == "[":
            table = _table(root, made, line)
            continue
        if (plain := _PLAIN_LINE.fullmatch(line)) is not None:
            key, value = plain.groups()
            if key in table:
                raise _NotOurs
            table[key] = value
            continue
        _key_value(table, line, lines, _TOKEN)
    return root


def _table(root: dict[str, Any], made: set[int], line: str) -> dict[str, Any]:
    """The new table a ``[a.b]`` header opens (its parents made as needed)."""
    if (bare := _BARE_HEADER.fullmatch(line)) is not None:
        keys = list(bare.groups())
    else:
        match = _HEADER.get().fullmatch(line)
        if match is None:  # `[[array]]`, a bad header: tomllib's to read or refuse
            raise _NotOurs
        keys = [_key(token) for token in _HEADER_KEY.get().findall(match["keys"])]
    node = root
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:  # a parent, made by this header
            child = node[key] = {}
            made.add(id(child))
        elif not isinstance(child, dict) or id(child) not in made:  # a value, or an inline table
            raise _NotOurs
        node = child
    if keys[-1] in node:  # defined already, or made as a parent: tomllib has the rules for that
        raise _NotOurs
    table: dict[str, Any] = {}
    node[keys[-1]] = table
    made.add(id(table))
    return table


def _key(token: str) -> str:
    if token[0] == '"':
        return _string(token)
    return token[1:-1] if token[0] == "'" else token
