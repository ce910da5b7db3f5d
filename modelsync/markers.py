"""The `when` marker language: hardware conditions on a model variant.

A marker is a small boolean expression over facts about a machine, in the
shape of PEP 508 environment markers::

    >>> marker = parse("accelerator == 'cuda' and vram_gib >= 8")
    >>> marker.evaluate({"accelerator": "cuda", "vram_gib": 24.0})
    True
    >>> marker.evaluate({"accelerator": "cpu"})
    False
    >>> str(parse("8 <= vram_gib"))
    'vram_gib >= 8'

Our own tokenizer and recursive-descent parser: no ``eval``, no ``ast``.
Every fact has a type (``FACT_TYPES``) that is checked when the marker is
parsed, so a typo or a nonsensical comparison fails at ``modelsync lock``,
not silently on some machine later. A fact the machine lacks makes every
comparison that uses it false. The grammar and semantics are documented in
docs/hardware.md. Standard-library only.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from .errors import UsageError

__all__ = [
    "ACCELERATORS",
    "FACT_TYPES",
    "Clause",
    "Marker",
    "MarkerError",
    "Version",
    "coerce",
    "parse",
]

FACT_TYPES: dict[str, str] = {
    "accelerator": "string",
    "cuda": "version",
    "cuda_arch": "version",
    "vram_gib": "number",
    "gpu_count": "number",
    "gpu_name": "string",
    "ram_gib": "number",
    "os": "string",
    "arch": "string",
    "cpu_flags": "set",
    "ort_providers": "set",
}

ACCELERATORS = ("cpu", "cuda", "rocm", "mps")

# Facts whose values (and the literals compared with them) are lowercased and
# de-aliased, so that 'Linux', 'AMD64' or 'CUDA' mean what the user meant.
_ALIASES: dict[str, dict[str, str]] = {
    "accelerator": {},
    "os": {"macos": "darwin", "osx": "darwin", "win32": "windows", "nt": "windows"},
    "arch": {"amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64", "aarch64": "arm64", "armv8": "arm64"},
    "cpu_flags": {},
}

# Names people will try first (PEP 508's among them), and ours.
_OTHER_NAMES = {
    "platform_system": "os",
    "sys_platform": "os",
    "os_name": "os",
    "platform_machine": "arch",
    "machine": "arch",
    "cuda_version": "cuda",
    "compute_capability": "cuda_arch",
    "device": "accelerator",
    "gpu": "accelerator",
    "vram": "vram_gib",
    "ram": "ram_gib",
    "memory": "ram_gib",
    "flags": "cpu_flags",
    "providers": "ort_providers",
}

_MAX_DEPTH = 64  # nested parentheses and `not`s; keeps recursion far from Python's limit
_MAX_VERSION_DIGITS = 30


class MarkerError(UsageError, ValueError):
    """A marker (or a fact value) that cannot be parsed or does not type-check.

    ``expression`` is the marker text (None when the error is about a fact
    value rather than an expression) and ``position`` the 0-based index of the
    offending character in it (None when the error is about the whole).
    ``str()`` shows the expression with a caret under the position.
    """

    def __init__(
        self,
        message: str,
        *,
        expression: str | None = None,
        position: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.expression = expression
        self.position = position
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        lines = [self.located()]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def located(self) -> str:
        """The message with the expression and a caret under the position (no hint)."""
        lines = [self.message]
        if self.expression is not None:
            # One printable character per input character keeps the caret aligned.
            lines.append("    " + "".join(c if c.isprintable() else " " for c in self.expression))
            if self.position is not None:
                lines.append("    " + " " * self.position + "^")
        return "\n".join(lines)


# --------------------------------------------------------------------------
# Values


class Version:
    """A dotted version of non-negative integers, compared component-wise.

    Missing components count as zero, so ``12.4 == 12.4.0`` and
    ``12.10 > 12.9``.
    """

    __slots__ = ("parts",)
    parts: tuple[int, ...]

    _RULE = re.compile(r"[0-9]+(?:\.[0-9]+)*", re.ASCII)

    def __init__(self, parts: Iterable[int]) -> None:
        parts = tuple(parts)
        if not parts or any(type(part) is not int or part < 0 for part in parts):
            raise ValueError(f"a version needs non-negative integer parts, not {parts!r}")
        object.__setattr__(self, "parts", parts)

    @classmethod
    def parse(cls, text: str) -> Version:
        """``Version.parse("12.4")``; raises ValueError unless the text is digits and dots."""
        if not cls._RULE.fullmatch(text):
            raise ValueError(f"{text!r} is not a version like 12.4")
        pieces = text.split(".")
        if any(len(piece) > _MAX_VERSION_DIGITS for piece in pieces):
            raise ValueError(f"{text!r} has a version component longer than {_MAX_VERSION_DIGITS} digits")
        return cls(int(piece) for piece in pieces)

    def _key(self) -> tuple[int, ...]:
        parts = self.parts
        while len(parts) > 1 and parts[-1] == 0:
            parts = parts[:-1]
        return parts

    def _cmp(self, other: object, op: Callable[[tuple[int, ...], tuple[int, ...]], bool]) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        width = max(len(self.parts), len(other.parts))
        return op(self.parts + (0,) * (width - len(self.parts)), other.parts + (0,) * (width - len(other.parts)))

    def __eq__(self, other: object) -> bool:
        return self._cmp(other, operator.eq)

    def __lt__(self, other: object) -> bool:
        return self._cmp(other, operator.lt)

    def __le__(self, other: object) -> bool:
        return self._cmp(other, operator.le)

    def __gt__(self, other: object) -> bool:
        return self._cmp(other, operator.gt)

    def __ge__(self, other: object) -> bool:
        return self._cmp(other, operator.ge)

    def __hash__(self) -> int:
        return hash(("Version", self._key()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Version is immutable")

    def __reduce__(self) -> tuple[object, ...]:  # copy and pickle despite __setattr__
        return (Version, (self.parts,))

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))

    def __repr__(self) -> str:
        return f"Version('{self}')"


_NUMBER_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_EXPECTED = {
    "string": "a string",
    "version": "a version like '12.4'",
    "number": "a non-negative number like 24 or 7.5",
    "set": "a list of strings or a comma-separated string like 'avx2,fma'",
}


def _normal_string(fact: str, text: str) -> str:
    if fact not in _ALIASES:
        return text
    text = text.lower()
    return _ALIASES[fact].get(text, text)


def _convert(fact: str, kind: str, raw: object) -> object:
    """``raw`` as the fact's typed value; TypeError/ValueError when it cannot be."""
    if kind == "string":
        if not isinstance(raw, str):
            raise TypeError("not a string")
        return _normal_string(fact, raw.strip())
    if kind == "set":
        if isinstance(raw, str):
            items: Iterable[object] = re.split(r"[\s,]+", raw)
        elif isinstance(raw, (list, tuple, set, frozenset)):
            items = raw
        else:
            raise TypeError("not a list of strings")
        if not all(isinstance(item, str) for item in items):
            raise TypeError("not a list of strings")
        return frozenset(_normal_string(fact, item.strip()) for item in items if item.strip())  # type: ignore[union-attr]
    if isinstance(raw, bool):
        raise TypeError("a boolean")
    if kind == "version":
        if isinstance(raw, Version):
            return raw
        if isinstance(raw, int):
            return Version((raw,))
        if isinstance(raw, str):
            return Version.parse(raw.strip())
        raise TypeError("a float; quote it, since a float loses trailing zeros: 12.10 reads as 12.1")
    # number
    if isinstance(raw, str):
        if not _NUMBER_TEXT.fullmatch(raw.strip()):
            raise ValueError("not a number")
        raw = Decimal(raw.strip())
    if not isinstance(raw, (int, float, Decimal)):
        raise TypeError("not a number")
    if fact == "gpu_count":
        if raw != int(raw):
            raise ValueError("not a whole number")
        return int(raw)
    return float(raw)


def coerce(fact: str, raw: object) -> object:
    """Turn a raw value into the fact's typed value, or raise MarkerError.

    Raw values come from an ``[environments]`` table (TOML types) or a
    ``MODELSYNC_OVERRIDE_*`` variable (strings). Results: ``str`` for string
    facts (accelerator, os and arch lowercased, amd64/aarch64 normalised),
    ``Version`` for version facts, ``float`` for numbers (``int`` for
    gpu_count), ``frozenset[str]`` for sets (cpu_flags lowercased)::

        >>> coerce("vram_gib", "24")
        24.0
        >>> coerce("cpu_flags", "avx2, FMA")
        frozenset({'avx2', 'fma'})
    """
    kind = _fact_type(fact)
    try:
        value = _convert(fact, kind, raw)
    except (TypeError, ValueError, ArithmeticError) as error:
        raise MarkerError(
            f"{fact} must be {_EXPECTED[kind]}, found {raw!r} ({error})", hint=_value_hint(fact, kind)
        ) from None
    if isinstance(value, (int, float)) and (not math.isfinite(value) or value < 0):
        raise MarkerError(f"{fact} must be {_EXPECTED[kind]}, found {raw!r}", hint=_value_hint(fact, kind))
    if fact == "accelerator" and value not in ACCELERATORS:
        raise MarkerError(
            f"accelerator must be one of {', '.join(ACCELERATORS)}, found {raw!r}", hint=_accelerator_hint(str(value))
        )
    return value


def _fact_type(fact: str, *, expression: str | None = None, position: int | None = None) -> str:
    kind = FACT_TYPES.get(fact)
    if kind is None:
        shown = fact if len(fact) <= 40 else fact[:40] + "..."
        raise MarkerError(f"unknown fact {shown!r}", expression=expression, position=position, hint=_fact_hint(fact))
    return kind


def _fact_hint(name: str) -> str:
    if name.lower() in ("and", "or", "not", "in"):
        return f"keywords are lowercase: {name.lower()!r}"
    if name.lower() in _OTHER_NAMES:
        return f"did you mean {_OTHER_NAMES[name.lower()]!r}?"
    close = difflib.get_close_matches(name, list(FACT_TYPES), n=3, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name.lower(), list(FACT_TYPES), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "known facts: " + ", ".join(FACT_TYPES)


_EXAMPLES = {
    "accelerator": '"cuda"',
    "cuda": '"12.4"',
    "cuda_arch": '"8.6"',
    "vram_gib": "24",
    "gpu_count": "2",
    "gpu_name": '"NVIDIA A100-SXM4-80GB"',
    "ram_gib": "32",
    "os": '"linux"',
    "arch": '"x86_64"',
    "cpu_flags": '"avx2,fma"',
    "ort_providers": '"CUDAExecutionProvider,CPUExecutionProvider"',
}


def _value_hint(fact: str, kind: str) -> str:
    return f"for example {fact} = {_EXAMPLES[fact]}"


def _accelerator_hint(value: str) -> str:
    close = difflib.get_close_matches(value, ACCELERATORS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return hint + "for any GPU write accelerator != 'cpu'"


# --------------------------------------------------------------------------
# Syntax tree (structural equality and hashing come from the dataclasses)


@dataclass(frozen=True)
class _Compare:
    fact: str
    op: str  # == != < <= > >= in "not in"
    value: object  # str (string and set facts), Decimal (numbers), Version
    fact_first: bool  # orientation; matters for `in`, canonical (True) otherwise


@dataclass(frozen=True)
class _Not:
    operand: _Node


@dataclass(frozen=True)
class _And:
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _Or:
    operands: tuple[_Node, ...]


_Node = _Compare | _Not | _And | _Or

_ORDER = ("==", "!=", "<", "<=", ">", ">=")
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPS: dict[str, Callable[[object, object], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PRECEDENCE = {_Or: 1, _And: 2, _Not: 3, _Compare: 4}


def _literal_text(node: _Compare) -> str:
    value = node.value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Version):
        return str(value)
    text = str(value)
    return f'"{text}"' if "'" in text else f"'{text}'"


def _text(node: _Node, parent: int = 0) -> str:
    if isinstance(node, _Compare):
        literal = _literal_text(node)
        return f"{node.fact} {node.op} {literal}" if node.fact_first else f"{literal} {node.op} {node.fact}"
    own = _PRECEDENCE[type(node)]
    if isinstance(node, _Not):  # `not (cuda >= 12)` reads better than `not cuda >= 12`
        operand = node.operand
        text = "not " + (f"({_text(operand)})" if isinstance(operand, _Compare) else _text(operand, own))
    else:
        joiner = " or " if isinstance(node, _Or) else " and "
        text = joiner.join(_text(child, own + 1) for child in node.operands)
    return f"({text})" if own < parent else text


def _comparisons(node: _Node) -> Iterable[_Compare]:
    if isinstance(node, _Compare):
        yield node
    elif isinstance(node, _Not):
        yield from _comparisons(node.operand)
    else:
        for child in node.operands:
            yield from _comparisons(child)


# --------------------------------------------------------------------------
# Evaluation


def _fact_value(facts: Mapping[str, object], fact: str) -> object | None:
    """The fact's typed value, or None when missing or not convertible (then its clauses are false)."""
    raw = facts.get(fact)
    if raw is None:
        return None
    try:
        return _convert(fact, FACT_TYPES[fact], raw)
    except (TypeError, ValueError, ArithmeticError):
        return None


def _compare(node: _Compare, value: object | None) -> bool:
    if value is None:
        return False
    kind = FACT_TYPES[node.fact]
    literal = node.value
    if kind == "number":
        return _OPS[node.op](float(value), float(literal))  # type: ignore[arg-type]
    if kind == "version":
        return _OPS[node.op](value, literal)
    if node.op in ("==", "!="):
        return _OPS[node.op](value, literal)
    # `gpu_name in 'A100 H100'`: the fact is a substring of the literal; `'avx2' in cpu_flags` the reverse
    found = value in literal if node.fact_first else literal in value  # type: ignore[operator]
    return found if node.op == "in" else not found


def _evaluate(node: _Node, facts: Mapping[str, object]) -> bool:
    if isinstance(node, _Compare):
        return _compare(node, _fact_value(facts, node.fact))
    if isinstance(node, _Not):
        return not _evaluate(node.operand, facts)
    if isinstance(node, _And):
        return all(_evaluate(child, facts) for child in node.operands)
    return any(_evaluate(child, facts) for child in node.operands)


@dataclass(frozen=True)
class Clause:
    """One comparison of a marker, evaluated: for `modelsync explain`."""

    text: str  # the comparison, canonical: "vram_gib >= 8"
    fact: str
    value: object | None  # the fact's value on the machine; None when it lacks the fact
    result: bool


class Marker:
    """A parsed marker: immutable, hashable, equal when the structure is equal.

    ``facts`` names the facts it uses; ``str()`` is the canonical text and
    ``parse(str(marker)) == marker``.
    """

    __slots__ = ("_node", "facts")
    _node: _Node
    facts: frozenset[str]

    def __init__(self, node: _Node) -> None:
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "facts", frozenset(c.fact for c in _comparisons(node)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Marker is immutable")

    def __reduce__(self) -> tuple[object, ...]:  # copy and pickle despite __setattr__
        return (parse, (str(self),))

    def evaluate(self, facts: Mapping[str, object]) -> bool:
        """True when the marker holds for these facts. Never raises; a missing fact's clauses are false."""
        return _evaluate(self._node, facts)

    def explain(self, facts: Mapping[str, object]) -> list[Clause]:
        """Every comparison in source order with the fact's value and its own result (all evaluated)."""
        clauses = []
        for node in _comparisons(self._node):
            value = _fact_value(facts, node.fact)
            clauses.append(Clause(_text(node), node.fact, value, _compare(node, value)))
        return clauses

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Marker) and self._node == other._node

    def __hash__(self) -> int:
        return hash(self._node)

    def __str__(self) -> str:
        return _text(self._node)

    def __repr__(self) -> str:
        return f"Marker({str(self)!r})"


# --------------------------------------------------------------------------
# Tokens and the parser


@dataclass(frozen=True)
class _Token:
    kind: str  # name string number op ( ) and or not in end
    text: str
    position: int


_TOKEN = re.compile(
    r"""
     (?P<space>\s+)
    |(?P<op>==|!=|<=|>=|<|>)
    |(?P<paren>[()])
    |(?P<string>'[^']*'|"[^"]*")
    |(?P<number>[0-9][0-9A-Za-z_.]*)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE | re.ASCII,
)
_KEYWORDS = ("and", "or", "not", "in")
_BAD_CHARACTERS = {
    "=": "'=' is not an operator; use '=='",
    "&": "use 'and'",
    "|": "use 'or'",
    "!": "use 'not', or '!=' to compare",
}


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            if char in "'\"":
                raise MarkerError(
                    "unterminated string", expression=text, position=position, hint=f"close it with {char}"
                )
            problem = _BAD_CHARACTERS.get(char)
            message = f"unexpected character {char!r}" + (f": {problem}" if problem else "")
            raise MarkerError(message, expression=text, position=position)
        kind = match.lastgroup or ""
        word = match.group()
        if kind == "number" and not Version._RULE.fullmatch(word):
            raise MarkerError(
                f"invalid number {word!r}", expression=text, position=position, hint="numbers look like 8, 12.4 or 0.5"
            )
        if kind == "name" and word in _KEYWORDS:
            kind = word
        if kind == "paren":
            kind = word
        if kind != "space":
            tokens.append(_Token(kind, word, position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _describe(token: _Token) -> str:
    return "the end of the marker" if token.kind == "end" else repr(token.text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def error(self, message: str, position: int, hint: str | None = None) -> MarkerError:
        return MarkerError(message, expression=self.text, position=position, hint=hint)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"marker nested deeper than {_MAX_DEPTH} levels", token.position)

    def marker(self) -> _Node:
        if self.peek().kind == "end":
            raise self.error("empty marker", 0, hint="write a condition such as accelerator == 'cuda'")
        node = self.or_expr()
        token = self.peek()
        if token.kind == ")":
            raise self.error("unmatched ')'", token.position)
        if token.kind != "end":
            raise self.error(f"expected 'and', 'or' or the end of the marker, found {_describe(token)}", token.position)
        return node

    def or_expr(self) -> _Node:
        operands = [self.and_expr()]
        while self.peek().kind == "or":
            self.take()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def and_expr(self) -> _Node:
        operands = [self.not_expr()]
        while self.peek().kind == "and":
            self.take()
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def not_expr(self) -> _Node:
        if self.peek().kind != "not":
            return self.atom()
        self.enter(self.take())
        node = _Not(self.not_expr())
        self.depth -= 1
        return node

    def atom(self) -> _Node:
        opening = self.peek()
        if opening.kind != "(":
            return self.comparison()
        self.enter(self.take())
        node = self.or_expr()
        closing = self.peek()
        if closing.kind == "end":
            raise self.error("'(' is never closed", opening.position, hint="add ')'")
        if closing.kind != ")":
            raise self.error(f"expected 'and', 'or' or ')', found {_describe(closing)}", closing.position)
        self.take()
        self.depth -= 1
        return node

    def operand(self, expected: str) -> _Token:
        token = self.peek()
        if token.kind not in ("name", "string", "number"):
            raise self.error(f"expected {expected}, found {_describe(token)}", token.position)
        if token.kind == "name":
            _fact_type(token.text, expression=self.text, position=token.position)
        return self.take()

    def comparison(self) -> _Compare:
        left = self.operand("a comparison such as vram_gib >= 8")
        token = self.take()
        if token.kind == "op":
            op = token.text
        elif token.kind == "in":
            op = "in"
        elif token.kind == "not" and self.peek().kind == "in":
            self.take()
            op = "not in"
        else:
            raise self.error(
                f"expected an operator (== != < <= > >= in, not in) after {left.text!r}, found {_describe(token)}",
                token.position,
            )
        right = self.operand(f"a fact or a value after {op!r}")
        return self.build(left, token, op, right)

    def build(self, left: _Token, op_token: _Token, op: str, right: _Token) -> _Compare:
        if left.kind == "name" and right.kind == "name":
            raise self.error(
                f"compares two facts ({left.text} and {right.text})",
                right.position,
                hint="compare a fact with a quoted string or a number",
            )
        if left.kind != "name" and right.kind != "name":
            raise self.error(
                f"compares two values ({left.text} and {right.text})",
                left.position,
                hint="one side must be a fact: " + ", ".join(FACT_TYPES),
            )
        fact_first = left.kind == "name"
        fact, literal = (left, right) if fact_first else (right, left)
        kind = FACT_TYPES[fact.text]
        if op in _ORDER:
            op = op if fact_first else _FLIP[op]
            fact_first = True
        self.check_operator(kind, fact.text, op, fact_first, op_token)
        value = self.literal(kind, fact.text, op, literal)
        return _Compare(fact.text, op, value, fact_first)

    def check_operator(self, kind: str, fact: str, op: str, fact_first: bool, token: _Token) -> None:
        if kind == "set":
            if op in ("in", "not in") and not fact_first:
                return
            raise self.error(
                f"{fact} is a set: only 'VALUE in {fact}' and 'VALUE not in {fact}' apply",
                token.position,
                hint=f"for example {_SET_EXAMPLE[fact]} in {fact}",
            )
        if kind == "string":
            if op in ("==", "!=", "in", "not in"):
                return
            raise self.error(f"{fact} is a string: '{op}' does not apply; use == != in or not in", token.position)
        if op not in _ORDER:
            raise self.error(f"{fact} is a {kind}: '{op}' does not apply; use == != < <= > >=", token.position)

    def literal(self, kind: str, fact: str, op: str, token: _Token) -> object:
        if kind in ("string", "set"):
            if token.kind != "string":
                raise self.error(f"{fact} is a {kind}: quote the value", token.position, hint=f"write '{token.text}'")
            value = _normal_string(fact, token.text[1:-1])
            if fact == "accelerator" and op in ("==", "!=") and value not in ACCELERATORS:
                raise self.error(
                    f"accelerator is one of {', '.join(ACCELERATORS)}, not {token.text}",
                    token.position,
                    hint=_accelerator_hint(str(value)),
                )
            return value
        text = token.text[1:-1] if token.kind == "string" else token.text
        if kind == "number":
            if token.kind != "number":
                raise self.error(
                    f"{fact} is a number: write it without quotes", token.position, hint=f"for example {fact} >= 8"
                )
            if not _NUMBER_TEXT.fullmatch(text):
                raise self.error(f"{text!r} is not a number", token.position, hint="numbers look like 8 or 12.4")
            return Decimal(_canonical_number(text))
        try:
            return Version.parse(text)
        except ValueError as error:
            raise self.error(f"{fact} is a version: {error}", token.position) from None


def _canonical_number(text: str) -> str:
    """'007.50' -> '7.5', '8.0' -> '8': one spelling per value, exactly (no float rounding)."""
    whole, _, fraction = text.partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


_SET_EXAMPLE = {"cpu_flags": "'avx2'", "ort_providers": "'CUDAExecutionProvider'"}


def parse(text: str) -> Marker:
    """Parse a `when` marker; raises MarkerError (with a position) and nothing else.

    >>> parse("not (cuda >= 12)").evaluate({"accelerator": "cpu"})
    True
    """
    if not isinstance(text, str):
        raise MarkerError(f"a marker is a string, not {type(text).__name__}")
    return Marker(_Parser(text).marker())
