"""The `when` marker language: grammar, types, semantics, errors, and properties."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelsync.errors import UsageError
from modelsync.markers import ACCELERATORS, FACT_TYPES, Clause, Marker, MarkerError, Version, coerce, parse

GPU = {
    "accelerator": "cuda",
    "cuda": Version.parse("12.4"),
    "cuda_arch": Version.parse("8.6"),
    "vram_gib": 24.0,
    "gpu_count": 2,
    "gpu_name": "NVIDIA GeForce RTX 3090",
    "ram_gib": 62.7,
    "os": "linux",
    "arch": "x86_64",
    "cpu_flags": frozenset({"avx", "avx2", "fma", "sse4_2"}),
    "ort_providers": frozenset({"CUDAExecutionProvider", "CPUExecutionProvider"}),
}
CPU = {
    "accelerator": "cpu",
    "gpu_count": 0,
    "ram_gib": 15.5,
    "os": "linux",
    "arch": "arm64",
    "cpu_flags": frozenset({"asimd", "fp"}),
}


def holds(text: str, facts: dict) -> bool:
    return parse(text).evaluate(facts)


# --------------------------------------------------------------------------
# Grammar and operators


@pytest.mark.parametrize(
    ("text", "on_gpu", "on_cpu"),
    [
        ("accelerator == 'cuda'", True, False),
        ('accelerator == "cuda"', True, False),
        ("accelerator != 'cuda'", False, True),
        ("'cuda' == accelerator", True, False),
        ("vram_gib >= 24", True, False),
        ("vram_gib > 24", False, False),
        ("vram_gib <= 24", True, False),
        ("vram_gib < 24.5", True, False),
        ("vram_gib == 24.0", True, False),
        ("vram_gib != 8", True, False),
        ("gpu_count >= 2", True, False),
        ("gpu_count == 0", False, True),
        ("ram_gib > 16", True, False),
        ("ram_gib < 16", False, True),
        ("cuda >= 12", True, False),
        ("cuda < 12.4.1", True, False),
        ("cuda_arch >= 8.0", True, False),
        ("'avx2' in cpu_flags", True, False),
        ("'avx2' not in cpu_flags", False, True),
        ("'asimd' in cpu_flags", False, True),
        ("'CUDAExecutionProvider' in ort_providers", True, False),
        ("'RTX' in gpu_name", True, False),
        ("'RTX' not in gpu_name", False, False),
        ("gpu_name in 'NVIDIA GeForce RTX 3090 / NVIDIA A100'", True, False),
        ("accelerator in 'cuda rocm'", True, False),
        ("accelerator not in 'cuda rocm'", False, True),
        ("os == 'linux' and arch == 'arm64'", False, True),
        ("arch == 'x86_64' or accelerator == 'cpu'", True, True),
        ("not accelerator == 'cuda'", False, True),
        ("not (accelerator == 'cuda' and vram_gib >= 8)", False, True),
    ],
)
def test_operators_on_a_gpu_and_a_cpu_machine(text: str, on_gpu: bool, on_cpu: bool) -> None:
    assert holds(text, GPU) is on_gpu
    assert holds(text, CPU) is on_cpu


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("vram_gib>=8", "vram_gib >= 8"),
        ("  vram_gib\t>=\n8  ", "vram_gib >= 8"),
        ("8 <= vram_gib", "vram_gib >= 8"),
        ("8 < vram_gib", "vram_gib > 8"),
        ("8 > vram_gib", "vram_gib < 8"),
        ("8 == vram_gib", "vram_gib == 8"),
        ("'cuda' != accelerator", "accelerator != 'cuda'"),
        ("vram_gib >= 8.0", "vram_gib >= 8"),
        ("vram_gib >= 007.50", "vram_gib >= 7.5"),
        ("cuda >= '12.4'", "cuda >= 12.4"),
        ('cuda >= "12.10"', "cuda >= 12.10"),
        ("accelerator == 'CUDA'", "accelerator == 'cuda'"),
        ("os == 'Linux'", "os == 'linux'"),
        ("os == 'macOS'", "os == 'darwin'"),
        ("arch == 'AMD64'", "arch == 'x86_64'"),
        ("arch == 'aarch64'", "arch == 'arm64'"),
        ("'AVX2' in cpu_flags", "'avx2' in cpu_flags"),
        ('gpu_name == "it\'s"', 'gpu_name == "it\'s"'),
        ("gpu_name == 'say \"hi\"'", "gpu_name == 'say \"hi\"'"),
        ("not (cuda >= 12)", "not (cuda >= 12)"),
        ("not cuda >= 12", "not (cuda >= 12)"),
        ("not not os == 'linux'", "not not (os == 'linux')"),
        ("(((os == 'linux')))", "os == 'linux'"),
        ("os == 'linux' or os == 'darwin' and arch == 'arm64'", "os == 'linux' or os == 'darwin' and arch == 'arm64'"),
        (
            "(os == 'linux' or os == 'darwin') and arch == 'arm64'",
            "(os == 'linux' or os == 'darwin') and arch == 'arm64'",
        ),
        ("not (os == 'linux' or os == 'darwin')", "not (os == 'linux' or os == 'darwin')"),
        (
            "os == 'linux' and (arch == 'arm64' and gpu_count > 1)",
            "os == 'linux' and (arch == 'arm64' and gpu_count > 1)",
        ),
    ],
)
def test_canonical_text_round_trips(text: str, canonical: str) -> None:
    marker = parse(text)
    assert str(marker) == canonical
    assert parse(canonical) == marker
    assert hash(parse(canonical)) == hash(marker)


def test_precedence_not_binds_tighter_than_and_tighter_than_or() -> None:
    assert parse("os == 'a' or os == 'b' and os == 'c'") == parse("os == 'a' or (os == 'b' and os == 'c')")
    assert parse("os == 'a' or os == 'b' and os == 'c'") != parse("(os == 'a' or os == 'b') and os == 'c'")
    assert parse("not os == 'a' and os == 'b'") == parse("(not os == 'a') and os == 'b'")
    # a true `or` before a false `and`: precedence decides the result
    facts = {"os": "a"}
    assert holds("os == 'a' or os == 'b' and os == 'c'", facts) is True
    assert holds("(os == 'a' or os == 'b') and os == 'c'", facts) is False
    assert holds("not os == 'b' and os == 'a'", facts) is True


def test_keywords_need_spaces_only_where_words_touch() -> None:
    assert parse("(os=='linux')and(arch=='arm64')") == parse("os == 'linux' and arch == 'arm64'")
    assert parse("'avx2'in cpu_flags") == parse("'avx2' in cpu_flags")


def test_marker_is_immutable_hashable_and_knows_its_facts() -> None:
    marker = parse("accelerator == 'cuda' and (vram_gib >= 8 or 'avx2' in cpu_flags)")
    assert isinstance(marker, Marker)
    assert marker.facts == frozenset({"accelerator", "vram_gib", "cpu_flags"})
    assert repr(marker) == "Marker(\"accelerator == 'cuda' and (vram_gib >= 8 or 'avx2' in cpu_flags)\")"
    with pytest.raises(AttributeError):
        marker.facts = frozenset()  # type: ignore[misc]
    assert len({marker, parse(str(marker))}) == 1
    assert marker != "accelerator == 'cuda'"
    assert parse("os == 'a' and os == 'b'") != parse("os == 'a' or os == 'b'")
    assert parse("'a' in gpu_name") != parse("gpu_name in 'a'")
    assert copy.deepcopy(marker) == marker and pickle.loads(pickle.dumps(marker)) == marker
    version = Version.parse("12.10")
    assert copy.copy(version) == version and str(pickle.loads(pickle.dumps(version))) == "12.10"


# --------------------------------------------------------------------------
# Types and values


def test_versions_compare_component_wise_not_as_floats() -> None:
    assert holds("cuda >= 12.10", {"cuda": Version.parse("12.10")})
    assert not holds("cuda >= 12.10", {"cuda": Version.parse("12.9")})
    assert holds("cuda > 12.9", {"cuda": Version.parse("12.10")})
    assert parse("cuda >= 12.10") != parse("cuda >= 12.1")
    assert str(parse("cuda >= 12.10")) == "cuda >= 12.10"
    assert holds("cuda == 12.4", {"cuda": Version.parse("12.4.0")})
    assert holds("cuda_arch < 9", {"cuda_arch": Version.parse("8.9")})
    assert parse("cuda >= 12.4") == parse("cuda >= '12.4'") == parse("cuda >= 12.4.0")


def test_version_value_type() -> None:
    assert Version.parse("12.10") > Version.parse("12.9")
    assert Version.parse("12.4") == Version.parse("12.4.0") and hash(Version.parse("12.4")) == hash(Version((12, 4, 0)))
    assert sorted([Version.parse(v) for v in ("11.8", "12.10", "12.4", "9")]) == [
        Version.parse(v) for v in ("9", "11.8", "12.4", "12.10")
    ]
    assert str(Version.parse("12.04")) == "12.4" and repr(Version.parse("8.6")) == "Version('8.6')"
    assert Version.parse("1") != "1"
    for bad in ("", "12.", ".4", "v12", "12.4a", "1" * 31):
        with pytest.raises(ValueError):
            Version.parse(bad)


def test_numbers_compare_as_floats_and_strings_case_sensitively() -> None:
    assert holds("vram_gib >= 7.5", {"vram_gib": 7.5})
    assert holds("vram_gib >= 8", {"vram_gib": 8})  # an int is a number too
    assert not holds("vram_gib >= 8", {"vram_gib": 7.99})
    assert not holds("'rtx' in gpu_name", {"gpu_name": "NVIDIA GeForce RTX 3090"})
    assert not holds("'avx2' in ort_providers", {"ort_providers": frozenset({"AVX2"})})
    # accelerator, os and arch values are normalised like their literals
    assert holds(
        "accelerator == 'cuda' and os == 'windows' and arch == 'x86_64'",
        {"accelerator": "CUDA", "os": "Windows", "arch": "AMD64"},
    )
    assert holds("'avx2' in cpu_flags", {"cpu_flags": frozenset({"AVX2"})})


def test_a_missing_fact_makes_every_comparison_false() -> None:
    comparisons = [
        "cuda >= 12",
        "cuda < 12",
        "cuda == 12",
        "cuda != 12",
        "vram_gib >= 0",
        "vram_gib != 1",
        "gpu_name == 'x'",
        "gpu_name != 'x'",
        "'x' in gpu_name",
        "'x' not in gpu_name",
        "gpu_name in 'x'",
        "'avx2' in cpu_flags",
        "'avx2' not in cpu_flags",
        "'CPUExecutionProvider' not in ort_providers",
    ]
    for text in comparisons:
        assert holds(text, {}) is False, text
        assert holds(text, {next(iter(parse(text).facts)): None}) is False, text
        assert holds(f"not ({text})", {}) is True, text
    assert holds("not (cuda >= 12)", CPU)
    assert holds("accelerator == 'cpu' or cuda >= 12", CPU)


def test_values_of_the_wrong_type_count_as_missing_and_never_raise() -> None:
    odd = {"cuda": 12.4, "vram_gib": "lots", "gpu_count": object(), "cpu_flags": 3, "os": 7, "ram_gib": True}
    for text in ("cuda >= 12", "vram_gib >= 1", "gpu_count > 0", "'avx' in cpu_flags", "os == 'linux'", "ram_gib > 1"):
        assert holds(text, odd) is False
    # raw strings, as an [environments] table or an override holds them, are understood
    assert holds(
        "cuda >= 12.10 and vram_gib >= 24 and 'fma' in cpu_flags",
        {"cuda": "12.10", "vram_gib": "24", "cpu_flags": "avx2,fma"},
    )


def test_explain_lists_every_comparison_in_order() -> None:
    marker = parse("accelerator == 'cuda' and (vram_gib >= 8 or not 'avx2' in cpu_flags) and cuda >= 12")
    clauses = marker.explain(CPU)
    assert clauses == [
        Clause("accelerator == 'cuda'", "accelerator", "cpu", False),
        Clause("vram_gib >= 8", "vram_gib", None, False),
        Clause("'avx2' in cpu_flags", "cpu_flags", frozenset({"asimd", "fp"}), False),
        Clause("cuda >= 12", "cuda", None, False),
    ]
    assert [c.result for c in marker.explain(GPU)] == [True, True, True, True]
    assert marker.evaluate(GPU) and not marker.evaluate(CPU)


# --------------------------------------------------------------------------
# Errors, with positions


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty marker"),
        ("   ", 0, "empty marker"),
        ("vram >= 8", 0, "unknown fact 'vram'"),
        ("accelerator == 'cuda' and vram > 8", 26, "unknown fact 'vram'"),
        ("(accelerator == 'cuda'", 0, "'(' is never closed"),
        ("accelerator == 'cuda')", 21, "unmatched ')'"),
        ("(os == 'a' os == 'b')", 11, "expected 'and', 'or' or ')'"),
        ("accelerator == 'cuda' vram_gib", 22, "expected 'and', 'or' or the end"),
        ("accelerator == 'cuda' and", 25, "expected a comparison"),
        ("accelerator ==", 14, "expected a fact or a value after '=='"),
        ("accelerator 'cuda'", 12, "expected an operator"),
        ("accelerator not 'cuda'", 12, "expected an operator"),
        ("'a' == 'b'", 0, "compares two values"),
        ("8 < 9", 0, "compares two values"),
        ("cuda == cuda_arch", 8, "compares two facts"),
        ("vram_gib = 8", 9, "'=' is not an operator"),
        ("vram_gib >= 8 && os == 'linux'", 14, "use 'and'"),
        ("vram_gib >= 8 || os == 'linux'", 14, "use 'or'"),
        ("!(vram_gib >= 8)", 0, "use 'not'"),
        ("vram_gib >= 8 @", 14, "unexpected character '@'"),
        ("gpu_name == 'A100", 12, "unterminated string"),
        ("vram_gib >= 8gb", 12, "invalid number '8gb'"),
        ("vram_gib >= 1.2.3", 12, "is not a number"),
        ("vram_gib >= 12.", 12, "invalid number"),
        ("vram_gib >= '8'", 12, "write it without quotes"),
        ("vram_gib in 8", 9, "'in' does not apply"),
        ("cuda not in 12", 5, "'not in' does not apply"),
        ("cuda >= 'twelve'", 8, "is not a version"),
        ("gpu_name > 'A100'", 9, "'>' does not apply"),
        ("gpu_name == 8", 12, "quote the value"),
        ("cpu_flags == 'avx2'", 10, "cpu_flags is a set"),
        ("cpu_flags in 'avx2 fma'", 10, "cpu_flags is a set"),
        ("'avx2' in cpu_flags and cpu_flags >= 'x'", 34, "cpu_flags is a set"),
        ("accelerator == 'gpu'", 15, "accelerator is one of cpu, cuda, rocm, mps"),
        ("platform_system == 'Linux'", 0, "unknown fact 'platform_system'"),
        ("os == 'linux' AND arch == 'x86_64'", 14, "expected 'and', 'or' or the end"),
        ("not", 3, "expected a comparison"),
        ("not in cpu_flags", 4, "expected a comparison"),
        ("()", 1, "expected a comparison"),
        ("os == 'linux' and and", 18, "expected a comparison"),
    ],
)
def test_errors_name_their_position(text: str, position: int, message: str) -> None:
    with pytest.raises(MarkerError) as caught:
        parse(text)
    error = caught.value
    assert message in error.message
    assert error.position == position
    assert error.expression == text


def test_error_text_shows_the_expression_and_a_caret() -> None:
    with pytest.raises(MarkerError) as caught:
        parse("accelerator == 'cuda' and vram >= 8")
    assert str(caught.value) == (
        "unknown fact 'vram'\n"
        "    accelerator == 'cuda' and vram >= 8\n"
        "                              ^\n"
        "  hint: did you mean 'vram_gib'?"
    )
    with pytest.raises(MarkerError) as caught:
        parse("os ==\t'linux' and\n!")
    assert str(caught.value).splitlines()[1:3] == ["    os == 'linux' and !", "                      ^"]


def test_errors_hint_at_close_names_and_fit_the_exception_tree() -> None:
    with pytest.raises(MarkerError) as caught:
        parse("cuda_version >= 12")
    assert caught.value.hint == "did you mean 'cuda'?"
    with pytest.raises(MarkerError) as caught:
        parse("vram_gb >= 12")
    assert (caught.value.hint or "").startswith("did you mean 'vram_gib'")
    with pytest.raises(MarkerError) as caught:
        parse("zzz == 'a'")
    assert "known facts: accelerator" in (caught.value.hint or "")
    with pytest.raises(MarkerError) as caught:
        parse("sys_platform == 'linux'")
    assert "'os'" in (caught.value.hint or "")
    error = caught.value
    assert isinstance(error, UsageError) and isinstance(error, ValueError) and error.exit_code == 2


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert parse("(" * 60 + "os == 'linux'" + ")" * 60) == parse("os == 'linux'")
    for text in ("(" * 5000 + "os == 'linux'" + ")" * 5000, "not " * 5000 + "os == 'linux'", "(" * 5000):
        with pytest.raises(MarkerError, match="nested deeper"):
            parse(text)
    long_chain = " and ".join(["os == 'linux'"] * 3000)
    assert parse(long_chain).evaluate({"os": "linux"})


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(MarkerError):
        parse(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# coerce


@pytest.mark.parametrize(
    ("fact", "raw", "value"),
    [
        ("accelerator", "CUDA", "cuda"),
        ("accelerator", " mps ", "mps"),
        ("os", "Darwin", "darwin"),
        ("os", "Windows", "windows"),
        ("arch", "AMD64", "x86_64"),
        ("arch", "aarch64", "arm64"),
        ("arch", "i686", "i686"),
        ("gpu_name", "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"),
        ("cuda", "12.4", Version.parse("12.4")),
        ("cuda", "12.10", Version.parse("12.10")),
        ("cuda", 12, Version.parse("12")),
        ("cuda_arch", Version.parse("8.6"), Version.parse("8.6")),
        ("vram_gib", 24, 24.0),
        ("vram_gib", "24", 24.0),
        ("vram_gib", " 7.5 ", 7.5),
        ("vram_gib", 7.5, 7.5),
        ("ram_gib", 0, 0.0),
        ("gpu_count", "2", 2),
        ("gpu_count", 2.0, 2),
        ("cpu_flags", "avx2,fma", frozenset({"avx2", "fma"})),
        ("cpu_flags", "AVX2, fma  sse4_2", frozenset({"avx2", "fma", "sse4_2"})),
        ("cpu_flags", ["avx2"], frozenset({"avx2"})),
        ("cpu_flags", "", frozenset()),
        ("ort_providers", ("CUDAExecutionProvider",), frozenset({"CUDAExecutionProvider"})),
    ],
)
def test_coerce_turns_raw_values_into_typed_ones(fact: str, raw: object, value: object) -> None:
    result = coerce(fact, raw)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    ("fact", "raw", "message"),
    [
        ("vram_gib", "lots", "vram_gib must be a non-negative number"),
        ("vram_gib", -1, "vram_gib must be"),
        ("vram_gib", "1e3", "vram_gib must be"),
        ("vram_gib", float("nan"), "vram_gib must be"),
        ("vram_gib", float("inf"), "vram_gib must be"),
        ("vram_gib", True, "vram_gib must be"),
        ("vram_gib", [24], "vram_gib must be"),
        ("gpu_count", 1.5, "not a whole number"),
        ("cuda", 12.4, "a float; quote it"),
        ("cuda", "twelve", "cuda must be a version"),
        ("cuda", -1, "cuda must be a version"),
        ("accelerator", "gpu", "accelerator must be one of cpu, cuda, rocm, mps"),
        ("accelerator", 1, "accelerator must be a string"),
        ("cpu_flags", 3, "cpu_flags must be a list of strings"),
        ("cpu_flags", ["avx2", 3], "cpu_flags must be a list of strings"),
        ("vram", 24, "unknown fact 'vram'"),
    ],
)
def test_coerce_explains_bad_values(fact: str, raw: object, message: str) -> None:
    with pytest.raises(MarkerError) as caught:
        coerce(fact, raw)
    assert message in caught.value.message
    assert caught.value.hint
    assert caught.value.position is None


# --------------------------------------------------------------------------
# Properties

TOKENS = [
    "(",
    ")",
    "'",
    '"',
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "!",
    "and",
    "or",
    "not",
    "in",
    " ",
    "\t",
    "8",
    "12.10",
    ".",
    "'cuda'",
    "'avx2'",
    *FACT_TYPES,
    "vram",
    "x",
]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=60),
        st.lists(st.sampled_from(TOKENS), max_size=20).map(" ".join),
        st.lists(st.sampled_from(TOKENS), max_size=20).map("".join),
    )
)
def test_parse_raises_nothing_but_marker_error(text: str) -> None:
    try:
        marker = parse(text)
    except MarkerError as error:
        assert error.expression == text
        assert error.position is None or 0 <= error.position <= len(text)
        str(error)
    else:
        assert parse(str(marker)) == marker


def _quoted(text: str) -> str:
    return f'"{text}"' if "'" in text else f"'{text}'"


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8).filter(
    lambda s: not ("'" in s and '"' in s)
)
_NUMBER = st.one_of(
    st.integers(0, 10**6).map(str),
    st.tuples(st.integers(0, 999), st.integers(0, 10**4)).map(lambda t: f"{t[0]}.{t[1]}"),
)
_VERSION = st.lists(st.integers(0, 200), min_size=1, max_size=3).map(lambda parts: ".".join(map(str, parts)))
_SPACE = st.sampled_from([" ", "  ", "\t", "\n "])


@st.composite
def comparisons(draw) -> str:
    fact = draw(st.sampled_from(sorted(FACT_TYPES)))
    kind = FACT_TYPES[fact]
    if kind == "set":
        op = draw(st.sampled_from(["in", "not in"]))
        return f"{_quoted(draw(_TEXT))} {op} {fact}"
    if kind == "string":
        op = draw(st.sampled_from(["==", "!=", "in", "not in"]))
        if fact == "accelerator" and op in ("==", "!="):
            value = draw(st.sampled_from(ACCELERATORS))
            value = value.upper() if draw(st.booleans()) else value
        else:
            value = draw(_TEXT)
    else:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        if kind == "number":
            value = draw(_NUMBER)
        else:
            value = draw(_VERSION)
            value = _quoted(value) if draw(st.booleans()) else value
    if kind == "string":
        value = _quoted(value)
    space = draw(_SPACE)
    return f"{fact}{space}{op}{space}{value}" if draw(st.booleans()) else f"{value}{space}{op}{space}{fact}"


@st.composite
def expressions(draw, depth: int = 0) -> str:
    choice = draw(st.integers(0, 5)) if depth < 5 else 0
    if choice <= 1:
        return draw(comparisons())
    if choice == 2:
        return f"not {draw(expressions(depth + 1))}"
    if choice == 3:
        return f"({draw(expressions(depth + 1))})"
    joiner = " and " if choice == 4 else " or "
    parts = draw(st.lists(expressions(depth + 1), min_size=2, max_size=3))
    return joiner.join(parts)


_FACT_VALUES = {
    "string": st.one_of(st.sampled_from(ACCELERATORS), st.text(max_size=8)),
    "version": st.one_of(_VERSION.map(Version.parse), _VERSION),
    "number": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30)),
    "set": st.frozensets(st.one_of(st.sampled_from(["avx2", "fma", "CUDAExecutionProvider"]), st.text(max_size=5))),
}


@st.composite
def fact_mappings(draw) -> dict[str, object]:
    facts: dict[str, object] = {}
    for fact, kind in FACT_TYPES.items():
        presence = draw(st.integers(0, 3))
        if presence == 0:
            continue
        facts[fact] = None if presence == 1 else draw(_FACT_VALUES[kind])
    return facts


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_valid_expressions_parse_print_and_reparse_equal(text: str) -> None:
    marker = parse(text)
    canonical = str(marker)
    again = parse(canonical)
    assert again == marker and hash(again) == hash(marker)
    assert str(again) == canonical
    assert again.facts == marker.facts


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), fact_mappings())
def test_evaluation_is_total_deterministic_and_not_flips(text: str, facts: dict[str, object]) -> None:
    marker = parse(text)
    result = marker.evaluate(facts)
    assert isinstance(result, bool)
    assert marker.evaluate(facts) is result
    assert parse(str(marker)).evaluate(facts) is result
    assert parse(f"not ({text})").evaluate(facts) is (not result)
    clauses = marker.explain(facts)
    assert len(clauses) >= len(marker.facts)
    assert all(isinstance(c.result, bool) and c.fact in marker.facts for c in clauses)
    for clause in clauses:  # each clause, alone, evaluates to its own result
        assert parse(clause.text).evaluate(facts) is clause.result


@settings(max_examples=200)
@given(comparisons(), fact_mappings())
def test_a_comparison_is_false_without_its_fact(text: str, facts: dict[str, object]) -> None:
    marker = parse(text)
    (fact,) = marker.facts
    facts.pop(fact, None)
    assert marker.evaluate(facts) is False
    assert marker.explain(facts)[0].value is None
