"""Find the line of a table or key in TOML text, for error messages.

tomllib gives values but no positions. This scanner reads the text line by
line, follows table headers (``[a.b]``, ``[[a.b]]``, quoted keys) and finds the
line where a key of a given table is set. It is best-effort by design: when
it cannot place a key it returns the table's line, then None — an error
message is never lost because a position could not be found.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterator

_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\]|\\.)*"'
_LITERAL = r"'[^']*'"
_KEY_PART = re.compile(rf"\s*({_BARE}|{_BASIC}|{_LITERAL})\s*")
_HEADER = re.compile(r"^\s*(\[\[?)(.*?)(\]\]?)\s*(#.*)?$")


def _decode_basic(inner: str) -> str:
    """A TOML basic string's content; never raises (an odd escape stays as written)."""
    import json

    try:
        return json.loads(f'"{inner}"')
    except ValueError:
        return inner


def _split_key(text: str) -> tuple[str, ...] | None:
    """'models."a.b".url' -> ('models', 'a.b', 'url'); None when not a key."""
    parts: list[str] = []
    position = 0
    while True:
        match = _KEY_PART.match(text, position)
        if not match:
            return None
        token = match.group(1)
        if token[0] == '"':
            token = _decode_basic(token[1:-1])
        elif token[0] == "'":
            token = token[1:-1]
        parts.append(token)
        position = match.end()
        if position == len(text):
            return tuple(parts)
        if text[position] != ".":
            return None
        position += 1


def _assignment_key(line: str) -> tuple[str, ...] | None:
    """The dotted key a 'key = value' line assigns, or None."""
    depth_quote = None
    for index, char in enumerate(line):
        if depth_quote:
            if char == depth_quote:
                depth_quote = None
        elif char in "\"'":
            depth_quote = char
        elif char == "=":
            return _split_key(line[:index])
        elif char == "#":
            return None
    return None


def _opens_multiline(line: str) -> str | None:
    """The delimiter of a multi-line string that this line opens and leaves open."""
    for delimiter in ('"""', "'''"):
        if line.count(delimiter) % 2 == 1:
            return delimiter
    return None


def _scan(text: str) -> "Iterator[tuple[int, str, tuple[str, ...] | None, int]]":
    """(line number, line, header path or None, array index) for every line
    outside multi-line strings; the index counts ``[[array]]`` entries of a path
    (0 for a plain table)."""
    seen_array: dict[tuple[str, ...], int] = {}
    open_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if open_string is not None:  # inside a multi-line string: nothing here is a key
            if line.count(open_string) % 2 == 1:
                open_string = None
            continue
        header = _HEADER.match(line)
        path = _split_key(header.group(2)) if header else None
        if header and path is not None:
            index = 0
            if header.group(1) == "[[":
                index = seen_array.get(path, -1) + 1
                seen_array[path] = index
            yield number, line, path, index
            continue
        open_string = _opens_multiline(line)
        yield number, line, None, 0


@lru_cache(maxsize=4)
def _header_lines(text: str) -> dict[tuple[tuple[str, ...], int | None], int]:
    """Every table header's line, in one pass: (path, None) for the first header
    of a path, (path, n) for the n-th entry of an array of tables.

    A manifest asks for the line of each of its models; scanning the text once
    per model would make loading a manifest of N models O(N²)."""
    lines: dict[tuple[tuple[str, ...], int | None], int] = {}
    for number, line, path, index in _scan(text):
        if path is not None:
            lines.setdefault((path, None), number)
            if line.lstrip().startswith("[["):
                lines[(path, index)] = number
    return lines


def locate(text: str, table: tuple[str | int, ...], key: str | None = None) -> int | None:
    """1-based line where ``key`` is set in ``table`` (or the table starts).

    ``table`` is a path of names (``()`` is the top level); an int component
    picks the n-th (0-based) ``[[array.of.tables]]`` entry, e.g.
    ``("models", "vad", "variant", 1)``.
    """
    names = tuple(part for part in table if isinstance(part, str))
    wanted_index = next((part for part in reversed(table) if isinstance(part, int)), None)
    if key is None and names:
        line = _header_lines(text).get((names, wanted_index))
        if line is not None:
            return line  # the common case, and the one asked once per model
    current: tuple[str, ...] = ()
    table_line: int | None = None
    parent_line: int | None = None
    in_table = not names and wanted_index is None

    for number, line, path, index in _scan(text):
        if path is not None:
            current = path
            in_table = current == names and (wanted_index is None or index == wanted_index)
            if in_table:
                table_line = number
                if key is None:
                    return number
            elif key is not None and wanted_index is None and current[: len(names) + 1] == (*names, key):
                return number  # the key is itself a table: [models.vad] for ("models",), "vad"
            continue
        assigned = _assignment_key(line)
        if assigned is None:
            continue
        full = current + assigned
        if in_table and key is not None and assigned[:1] == (key,):
            return number
        # Inline or dotted forms, seen from a parent table:
        # models.vad = { url = ... } / models.vad.url = ...
        if names and current != names and full[: len(names)] == names:
            if key is not None and full[len(names) : len(names) + 1] == (key,):
                return number
            inline = line.split("=", 1)[1]
            if key is not None and parent_line is None and re.search(rf"\b{re.escape(key)}\s*=", inline):
                parent_line = number
            table_line = table_line or number
    return parent_line or table_line
