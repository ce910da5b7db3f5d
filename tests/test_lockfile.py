"""models.lock: the deterministic writer, the strict reader, and their round trip."""

from __future__ import annotations

import re
import tomllib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import strategies as S
from modelsync import _lockparse, lockfile
from modelsync.errors import LockfileError, UsageError
from modelsync.lockfile import Lock, LockedFile, LockedModel, LockedVariant

H = "0123456789abcdef" * 4
H2 = "fedcba9876543210" * 4

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a bug, not bad luck
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)


def example_lock() -> Lock:
    """A lock like DESIGN §2's, given in an unsorted order."""
    return Lock(
        manifest_hash="blake3:" + H,
        models=(
            LockedModel(
                name="vad",
                source={"pypi": "silero-vad==6.2.3", "file": "silero_vad/data/silero_vad.onnx"},
                files=(
                    LockedFile(path="silero_vad.onnx", size=2327524, blake3=H, sha256=H2, variant="fp32-cpu",
                               source={"pypi": "silero-vad", "version": "6.2.3", "wheel": "silero_vad-6.2.3-py3-none-any.whl",
                                       "wheel-sha256": H2, "member": "silero_vad/data/silero_vad.onnx"}),
                    LockedFile(path="silero_vad_half.onnx", size=1280395, blake3=H2, variant="fp16-gpu"),
                ),
                groups=("asr",),
                loader="onnx",
                variants=(LockedVariant("fp16-gpu", "accelerator == 'cuda'"), LockedVariant("fp32-cpu")),
                environments={"gpu": "fp16-gpu", "cpu": "fp32-cpu"},
            ),
            LockedModel(
                name="minilm",
                source={"url": "https://example.com/minilm/config.json"},
                files=(
                    LockedFile(path="tokenizer/vocab.txt", size=5, blake3=H, url="https://example.com/vocab.txt"),
                    LockedFile(path="config.json", size=612, blake3=H2, sha256=H, url="https://example.com/config.json"),
                ),
                description='MiniLM "sentence" encoder\\',
                optional=True,
                license="Apache-2.0",
            ),
        ),
    )


def lock_text(*model_rows: str, version: str = "1", manifest_hash: str = '"blake3:x"') -> str:
    return f"version = {version}\nmanifest-hash = {manifest_hash}\n" + "".join(f"\n[[model]]\n{row}\n" for row in model_rows)


def model_row(name: str = '"vad"', files: str | None = None, extra: str = "") -> str:
    files = files if files is not None else f'[{{ path = "vad.onnx", size = 10, blake3 = "{H}" }}]'
    return f"name = {name}\nsource = {{ url = \"https://example.com/vad.onnx\" }}\nfiles = {files}\n{extra}"


def file_row(**fields: str) -> str:
    table = {"path": '"vad.onnx"', "size": "10", "blake3": f'"{H}"'}
    table.update(fields)
    return "[{ " + ", ".join(f"{k} = {v}" for k, v in table.items() if v is not None) + " }]"


def file_rows(text: str) -> list[str]:
    """The rows inside `files = [ … ]` blocks (variants lists also have `  {` rows)."""
    rows, inside = [], False
    for row in text.splitlines():
        if row == "files = [":
            inside = True
        elif row == "]":
            inside = False
        elif inside:
            rows.append(row)
    return rows


def refused(text: str) -> LockfileError:
    with pytest.raises(LockfileError) as info:
        lockfile.loads(text)
    error = info.value
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert str(error).startswith("models.lock")
    return error


# --------------------------------------------------------------------------
# The writer: fixed layout, sorted, no timestamps


def test_dumps_layout():
    text = lockfile.dumps(example_lock())
    rows = text.splitlines()
    assert "@generated" in rows[0]
    assert rows[0].startswith("#")
    assert "version = 1" in rows
    assert f'manifest-hash = "blake3:{H}"' in rows
    assert [re.search(r'^name = "(.*)"$', row).group(1) for row in rows if row.startswith("name = ")] == ["minilm", "vad"]
    assert text.count("[[model]]") == 2
    assert text.endswith("\n")


def test_dumps_has_one_line_per_file_sorted_by_variant_and_path():
    text = lockfile.dumps(example_lock())
    parsed = [tomllib.loads("f = " + row.strip().rstrip(","))["f"] for row in file_rows(text)]
    assert [(f.get("variant"), f["path"]) for f in parsed] == [
        (None, "config.json"),
        (None, "tokenizer/vocab.txt"),
        ("fp16-gpu", "silero_vad_half.onnx"),
        ("fp32-cpu", "silero_vad.onnx"),
    ]
    assert all({"path", "size", "blake3"} <= set(f) for f in parsed)


def test_dumps_writes_only_known_keys_and_no_timestamp():
    lock = example_lock()
    text = lockfile.dumps(lock)
    data = tomllib.loads(text)
    assert set(data) == {"version", "manifest-hash", "model"}
    for model in data["model"]:
        assert set(model) <= {
            "name", "description", "license", "loader", "group", "optional", "source", "variants", "environments", "files",
        }  # fmt: skip
        for file in model["files"]:
            assert set(file) <= {"variant", "path", "url", "size", "blake3", "sha256", "source"}
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", text)
    assert lockfile.dumps(lock) == text  # the same bytes every time


def test_dumps_does_not_depend_on_input_order():
    lock = example_lock()
    shuffled = Lock(
        manifest_hash=lock.manifest_hash,
        models=tuple(m._replace(files=tuple(reversed(m.files))) for m in reversed(lock.models)),
    )
    assert lockfile.dumps(shuffled) == lockfile.dumps(lock)


def test_write_leaves_an_unchanged_file_untouched(tmp_path):
    path = tmp_path / "models.lock"
    assert lockfile.write(path, example_lock()) is True
    before = path.stat().st_mtime_ns
    assert lockfile.write(path, example_lock()) is False
    assert path.stat().st_mtime_ns == before
    assert lockfile.read(path) == example_lock().normalized()
    assert lockfile.read(tmp_path / "absent.lock") is None
    assert [p.name for p in tmp_path.iterdir()] == ["models.lock"]  # no temp file left behind


KEY_WITH_NEWLINE = Lock(
    manifest_hash="blake3:" + H,
    models=(LockedModel(name="a", source={"url": {"x\n": ""}}, files=(LockedFile(path="a", size=0, blake3=H),)),),
)


@given(lock=S.locks())
@example(lock=example_lock())
@example(lock=KEY_WITH_NEWLINE)
@PROPERTY
def test_round_trip(lock):
    text = lockfile.dumps(lock)
    again = lockfile.loads(text)
    assert again == lock.normalized()
    assert lockfile.dumps(again) == text


@given(lock=S.locks())
@PROPERTY
def test_written_layout_holds_for_any_lock(lock):
    text = lockfile.dumps(lock)
    rows = text.splitlines()
    assert "@generated" in rows[0]
    assert "version = 1" in rows
    names = [tomllib.loads(row)["name"] for row in rows if row.startswith("name = ")]
    assert names == sorted(m.name for m in lock.models)
    assert len(file_rows(text)) == sum(len(m.files) for m in lock.models)  # one line per file
    for model in lockfile.loads(text).models:
        keys = [f.sort_key for f in model.files]
        assert keys == sorted(keys)


# --------------------------------------------------------------------------
# The reader: strict, and only LockfileError


def test_reads_what_the_design_shows():
    text = lock_text(
        model_row(files=f"""[
  {{ variant = "fp16-gpu", path = "silero_vad_half.onnx", size = 1280395, blake3 = "{H}", source = {{ pypi = "silero-vad", version = "6.2.3", wheel = "silero_vad-6.2.3-py3-none-any.whl", wheel-sha256 = "{H2}", member = "silero_vad/data/silero_vad_half.onnx" }} }},
  {{ variant = "fp32-cpu", path = "silero_vad.onnx", size = 2327524, blake3 = "{H2}", sha256 = "{H}" }},
]""", extra='group = ["asr"]\noptional = true\nloader = "onnx"\nvariants = [{ name = "fp16-gpu", when = "accelerator == \'cuda\'" }, { name = "fp32-cpu" }]'),
    )
    lock = lockfile.loads(text)
    (model,) = lock.models
    assert model.name == "vad" and model.groups == ("asr",) and model.optional and model.loader == "onnx"
    assert [f.path for f in model.files] == ["silero_vad_half.onnx", "silero_vad.onnx"]
    assert model.files[0].source["wheel-sha256"] == H2
    assert model.files[1].sha256 == H
    assert model.size == 1280395 + 2327524


def test_newer_lock_version_asks_to_upgrade():
    error = refused(lock_text(version="2"))
    assert "newer" in str(error)
    assert "upgrade" in str(error)


@pytest.mark.parametrize("version", ["0", "-1", '"1"', "1.0", "true"])
def test_bad_lock_version(version):
    assert "version" in str(refused(lock_text(version=version)))


@pytest.mark.parametrize("path", ['"../x"', '"/etc/passwd"', '"a\\\\b"', '"a/../../b"', '"x/~/.."', '"C:/x"', '""', '"."', '"a//b"', '"a\\u0000b"'])
def test_unsafe_file_paths_are_refused(path):
    error = refused(lock_text(model_row(files=file_row(path=path))))
    assert "files[0].path" in str(error)


@pytest.mark.parametrize("field, value", [
    ("blake3", '"abc"'),
    ("blake3", f'"{H.upper()}"'),
    ("blake3", f'"{H}0"'),
    ("blake3", f'"blake3:{H}"'),
    ("blake3", '"' + "z" * 64 + '"'),
    ("blake3", None),
    ("sha256", '"abc"'),
    ("sha256", f'"{H[:-1]}"'),
    ("sha256", "5"),
])
def test_bad_digests_are_refused(field, value):
    error = refused(lock_text(model_row(files=file_row(**{field: value}))))
    assert field in str(error)


def test_source_key_ending_in_a_newline_is_written_as_a_quoted_key():
    text = lockfile.dumps(KEY_WITH_NEWLINE)
    assert '"x\\n" = ""' in text
    assert lockfile.loads(text) == KEY_WITH_NEWLINE


@pytest.mark.parametrize("row", [
    model_row(name='"vad\\n"'),
    model_row(files=file_row(blake3=f'"{H}\\n"')),
    model_row(files=file_row(sha256=f'"{H}\\n"')),
])
def test_trailing_newline_does_not_sneak_past_the_checks(row):
    refused(lock_text(row))


def test_duplicate_models_are_refused():
    assert "twice" in str(refused(lock_text(model_row(), model_row())))


def test_duplicate_files_are_refused():
    files = f'[{{ path = "a.onnx", size = 1, blake3 = "{H}" }}, {{ path = "a.onnx", size = 2, blake3 = "{H2}" }}]'
    assert "twice" in str(refused(lock_text(model_row(files=files))))


@pytest.mark.parametrize("row", [
    model_row(name="5"),
    model_row(name='"Bad Name"'),
    model_row(name='"../vad"'),
    model_row(files='"vad.onnx"'),
    model_row(files="[1]"),
    model_row(files=file_row(size='"10"')),
    model_row(files=file_row(size="true")),
    model_row(files=file_row(size="-1")),
    model_row(files=file_row(size="1.5")),
    model_row(files=file_row(url='"ftp://example.com/x"')),
    model_row(files=file_row(url="1")),
    model_row(files=file_row(variant="1")),
    model_row(files=file_row(source='"x"')),
    model_row(files=file_row(path="1")),
    model_row(extra='optional = "yes"'),
    model_row(extra='group = "asr"'),
    model_row(extra="group = [1]"),
    model_row(extra="description = 5"),
    model_row(extra='loader = ["onnx"]'),
    'name = "vad"\nfiles = []',  # no source
    'name = "vad"\nsource = {}',  # no files
    'source = {}\nfiles = []',  # no name
    'name = "vad"\nsource = "https://example.com/vad.onnx"\nfiles = []',
])
def test_wrong_shapes_and_types_are_refused(row):
    refused(lock_text(row))


@pytest.mark.parametrize("text", [
    "",
    "version = 1\n",
    'manifest-hash = "x"\n',
    'version = 1\nmanifest-hash = 5\n',
    'version = 1\nmanifest-hash = "x"\nmodel = 5\n',
    'version = 1\nmanifest-hash = "x"\nmodel = [1]\n',
    "version = 1\nversion = 1\n",
    "not toml at all [[",
    "\ufeffversion = 1\n",
])
def test_broken_lock_files_are_refused(text):
    refused(text)


def test_deeply_nested_lock_is_a_lockfile_error():
    refused(lock_text(model_row(extra="description = " + "[" * 5000 + "]" * 5000)))


@pytest.mark.parametrize("value", ["1.5", "1979-05-27T07:32:00Z"])
def test_what_the_reader_accepts_the_writer_can_write(value):
    """A lock the reader accepts is rewritten by `modelsync lock` (kept pins): it must not crash the writer."""
    text = lock_text(model_row(files=file_row(source=f"{{ pypi = \"x\", extra = {value} }}")))
    try:
        lock = lockfile.loads(text)
    except LockfileError:
        return  # refusing it is fine too
    again = lockfile.loads(lockfile.dumps(lock))
    assert again.models[0].files[0].source.keys() == lock.models[0].files[0].source.keys()


# --------------------------------------------------------------------------
# Random damage to a valid lock: only ever a Lock or a LockfileError

_JUNK = [
    '"../x"', '"/etc/passwd"', '"a\\\\b"', "-1", "1.5", "true", "[]", "{}", '""', "1979-05-27", '"x"', "2", "0",
    '"' + "A" * 64 + '"', "[[", "]]", "{ x = 1 }", "\n[[model]]\n", '"' + H + '"', "inf",
]


@st.composite
def damaged_lock_texts(draw) -> str:
    text = lockfile.dumps(draw(S.locks(max_models=2)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        rows = text.split("\n")
        action = draw(st.sampled_from(["value", "value", "delete-row", "dup-row", "swap-rows", "insert", "truncate", "delete-span"]))
        if action == "value":
            # replace one value (after an '=') by a junk value or a random one
            spots = [m.start(1) for m in re.finditer(r"= (\S)", text)]
            if spots:
                start = draw(st.sampled_from(spots))
                end = draw(st.integers(min_value=start, max_value=min(len(text), start + 80)))
                junk = draw(st.one_of(st.sampled_from(_JUNK), st.text(max_size=5)))
                text = text[:start] + junk + text[end:]
        elif action == "delete-row":
            del rows[draw(st.integers(min_value=0, max_value=len(rows) - 1))]
            text = "\n".join(rows)
        elif action == "dup-row":
            index = draw(st.integers(min_value=0, max_value=len(rows) - 1))
            rows.insert(index, rows[index])
            text = "\n".join(rows)
        elif action == "swap-rows":
            i = draw(st.integers(min_value=0, max_value=len(rows) - 1))
            j = draw(st.integers(min_value=0, max_value=len(rows) - 1))
            rows[i], rows[j] = rows[j], rows[i]
            text = "\n".join(rows)
        elif action == "insert":
            at = draw(st.integers(min_value=0, max_value=len(text)))
            text = text[:at] + draw(st.one_of(st.sampled_from(_JUNK), st.text(max_size=5))) + text[at:]
        elif action == "truncate":
            text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
        else:
            start = draw(st.integers(min_value=0, max_value=len(text)))
            text = text[:start] + text[start + draw(st.integers(min_value=1, max_value=20)) :]
    return text


@given(text=damaged_lock_texts())
@FUZZ
def test_damaged_locks_raise_only_lockfile_error(text):
    try:
        lock = lockfile.loads(text)
    except LockfileError as error:
        assert error.exit_code == 2
        return
    # What is accepted is a well-formed lock: safe paths, valid names and digests.
    for model in lock.models:
        assert S.NAME_RULE.match(model.name)
        for file in model.files:
            assert file.size >= 0
            assert re.fullmatch(r"[0-9a-f]{64}", file.blake3)
            assert file.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", file.sha256)
            assert not file.path.startswith("/") and ".." not in file.path.split("/") and "\\" not in file.path


@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200))
@settings(max_examples=100, deadline=None)
def test_random_text_raises_only_lockfile_error(text):
    try:
        lockfile.loads(text)
    except LockfileError:
        pass


# --------------------------------------------------------------------------
# The CLI refuses a bad lock with exit 2 and no traceback


@pytest.mark.parametrize("text, expected", [
    (lock_text(version="99"), "upgrade"),
    (lock_text(model_row(files=file_row(path='"../../etc/passwd"'))), "escape"),
])
def test_cli_refuses_a_bad_lock(project, cli, text, expected):
    root = project('[models.vad]\nurl = "https://example.com/vad.onnx"\n')
    (root / "models.lock").write_text(text, encoding="utf-8")
    result = cli("sync", "--frozen", "--offline", cwd=root)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "models.lock" in result.stderr and expected in result.stderr


# --------------------------------------------------------------------------
# The fast reader (_lockparse): the writer's layout only, never a different reading


@PROPERTY
@given(S.locks())
def test_fast_reader_reads_every_written_lock_as_tomllib_does(lock):
    text = lockfile.dumps(lock)
    fast = _lockparse.parse(text)
    assert fast is not None, "the writer's own output must take the fast path"
    assert fast == tomllib.loads(text)


def _edited(text: str, position: int, cut: int, insert: str) -> str:
    position %= len(text) + 1
    return text[:position] + insert + text[position + cut :]


_EDGE_VALUES = [
    # (what is replaced, by what, whether the value is one the reader accepts)
    ('path = "a.onnx"', 'path = "..."', True),
    ('path = "a.onnx"', 'path = ".cache/a..b/.x"', True),
    ('path = "a.onnx"', 'path = "d/C:x"', True),
    ('path = "a.onnx"', 'path = "."', False),
    ('path = "a.onnx"', 'path = ".."', False),
    ('path = "a.onnx"', 'path = "a/./b"', False),
    ('path = "a.onnx"', 'path = "a/../b"', False),
    ('path = "a.onnx"', 'path = "a//b"', False),
    ('path = "a.onnx"', 'path = "a/"', False),
    ('path = "a.onnx"', 'path = "/a"', False),
    ('path = "a.onnx"', 'path = "C:x"', False),
    ('path = "a.onnx"', 'path = "z:/x"', False),
    ('name = "a"', 'name = "a.b-c_9"', True),
    ('name = "a"', 'name = "' + "a" * 100 + '"', True),
    ('name = "a"', 'name = "' + "a" * 101 + '"', False),
    ('name = "a"', 'name = "a."', False),
    ('name = "a"', 'name = "-a"', False),
    ('name = "a"', 'name = "aB"', False),
    ('blake3 = "1', 'blake3 = "a', True),
    ('blake3 = "' + "1" * 64, 'blake3 = "' + "1" * 63, False),
    ('sha256 = "2', 'sha256 = "A', False),
    ('url = "https://example.com/a.onnx", size', 'url = "https://example.com:443/a?b=c#d", size', True),
    ('url = "https://example.com/a.onnx", size', 'url = "https://example.com:123456/a", size', True),  # read by urlsplit
    ('url = "https://example.com/a.onnx", size', 'url = "https://Example.com/a", size', True),  # read by urlsplit
    ('url = "https://example.com/a.onnx", size', 'url = "https://example.com/a b", size', True),
    ('url = "https://example.com/a.onnx", size', 'url = "ftp://example.com/a", size', False),
]


@pytest.mark.parametrize(("old", "new", "accepted"), _EDGE_VALUES)
def test_edge_values_read_the_same_whichever_path_the_model_takes(monkeypatch, old, new, accepted):
    """A model is built from its values without a check of each only when the
    reader matched them to what it accepts: either way, the same lock or the same error."""
    text = _PLAIN_LOCK.replace(old, new)
    assert text != _PLAIN_LOCK
    outcome = _outcome(text)
    assert isinstance(outcome, lockfile.Lock) is accepted
    assert outcome == _read_by_tables(text, monkeypatch)


@FUZZ
@given(
    S.locks(max_models=2),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=3),
    st.lists(
        st.sampled_from(list(' \t\n\r"\\#=[]{},.-+_0123456789abefnrtuxdDAF\x7f\x00é\'') + ["\\u", "\\ud800", "\\/", "\\U0001F600", "true", "nan", "1e5", "0x1"]),
        max_size=3,
    ).map("".join),
)
def test_fast_reader_never_accepts_what_tomllib_refuses_nor_reads_it_differently(lock, position, cut, insert):
    text = _edited(lockfile.dumps(lock), position, cut, insert)
    fast = _lockparse.parse(text)
    if fast is None:
        return  # tomllib reads it (and reports its errors)
    assert fast == tomllib.loads(text)  # raises if tomllib refuses what the fast reader took


@pytest.mark.parametrize(
    "text",
    [
        'version = 1\nname = "a" # a comment after a value\n',
        'version = 1\r\nmanifest-hash = "x"\r\n',  # CRLF line ends
        'a.b = 1\n',  # a dotted key
        '[tool]\nx = 1\n',  # another table
        'x = "\\ud800"\n',  # a lone surrogate escape: TOML refuses it, JSON would not
        'x = "tab\there"\n',  # a raw tab: TOML reads it, JSON would not
        'x = 1_000\n',
        'x = 0x10\n',
        'x = 1.5\n',
        'x = [1, 2,]\n',  # TOML's trailing comma, which JSON refuses
        'x = { a = 1, a = 2 }\n',  # a key twice
        'x = 1\nx = 2\n',
        'x = [\n  1,\n',  # no closing bracket
        "x = 'literal'\n",
        'x = [1 2]\n',  # no comma: TOML refuses it, and the tokens must not run together as [12]
    ],
)
def test_fast_reader_leaves_anything_outside_the_writers_layout_to_tomllib(text):
    assert _lockparse.parse(text) is None


@pytest.mark.parametrize(
    "text",
    [
        '[[model]]\nname = "a"\n',  # a model first, no header
        'version = 1\n\n[[model]]\n[[model]]\nname = "b"\n',  # an empty model, then one
        'version = 1\n\n[[model]]\nname = "a"\nsource = { url = "u" }\nfiles = [\n  { path = "p", size = 1, blake3 = "b" },\n]\n\n\n',
        'version = 1\n\n[[model]]\nname = "a"\nloader = "onnx"\nsource = { url = "u" }\nfiles = [\n  { path = "p", size = 1, blake3 = "b" },\n]\n',
        'version = 1\n\n[[model]]\nname = "a"\nsource = { url = "u" }\nfiles = [\n  { path = "p" } # c },\n]\n',
        'version = 1\nmodel = []\n\n[[model]]\nname = "a"\n',  # refused: model is an array already
        'version = 1\n\n[[model]]\nname = "a"\n[x]\n',
    ],
)
def test_the_fast_readers_model_blocks_read_as_tomllib_does(text):
    fast = _lockparse.parse(text)
    if fast is not None:
        assert fast == tomllib.loads(text)


def _read_by_tables(text: str, monkeypatch) -> object:
    """What the reader makes of ``text`` from tomllib's tables alone (no fast path):
    the lock, or the error's message."""
    with monkeypatch.context() as patched:
        patched.setattr(_lockparse, "read", lambda text: None)
        return _outcome(text)


def _outcome(text: str) -> object:
    try:
        return lockfile.loads(text)
    except LockfileError as error:
        return str(error)


_PLAIN_LOCK = (
    'version = 1\nmanifest-hash = "blake3:' + "0" * 64 + '"\n\n[[model]]\nname = "a"\nloader = "onnx"\n'
    'source = { url = "https://example.com/a.onnx" }\nfiles = [\n  { path = "a.onnx", url = "https://example.com/a.onnx", '
    'size = 7, blake3 = "' + "1" * 64 + '", sha256 = "' + "2" * 64 + '" },\n]\n'
)


def test_a_plain_model_is_read_from_its_values_as_from_its_table(monkeypatch):
    assert _lockparse.read(_PLAIN_LOCK)[1][0].__class__ is tuple  # the fast path is taken
    lock = lockfile.loads(_PLAIN_LOCK)
    assert lock == _read_by_tables(_PLAIN_LOCK, monkeypatch)
    assert lock.models[0] == LockedModel(
        name="a",
        source={"url": "https://example.com/a.onnx"},
        files=(LockedFile("a.onnx", 7, "1" * 64, "2" * 64, "https://example.com/a.onnx"),),
        loader="onnx",
    )


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('name = "a"', 'name = "A"', "invalid model name 'A'"),
        ('blake3 = "1', 'blake3 = "F', "expected 64 lowercase hex digits"),
        ('sha256 = "2', 'sha256 = "x', "expected 64 lowercase hex digits"),
        ('path = "a.onnx"', 'path = "../a.onnx"', "refusing a path that could escape the view"),
        ('path = "a.onnx"', 'path = "/a.onnx"', "refusing a path that could escape the view"),
        ('url = "https://example.com/a.onnx", size', 'url = "ftp://example.com/a.onnx", size', "expected an http(s) URL"),
        ("https://example.com/a.onnx", "http://example.com/a.onnx", "plain HTTP to 'example.com' without allow-http"),
        ('source = { url = "https://example.com/a.onnx" }', 'source = { hf = "org/repo" }', "expected a 40-hex commit"),
    ],
)
def test_a_plain_model_with_a_bad_value_fails_as_its_table_does(monkeypatch, old, new, words):
    text = _PLAIN_LOCK.replace(old, new)
    assert text != _PLAIN_LOCK
    message = _outcome(text)
    assert isinstance(message, str) and words in message
    assert message == _read_by_tables(text, monkeypatch)


@FUZZ
@given(
    S.locks(max_models=2),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=3),
    st.lists(st.sampled_from(list('"\\./:AFaf0 \n{},=') + ["..", "http:", "ftp:", "\\u0041"]), max_size=3).map("".join),
)
def test_every_lock_reads_with_the_fast_path_as_without(monkeypatch, lock, position, cut, insert):
    """The same lock, or the same error, whichever path a model takes."""
    text = _edited(lockfile.dumps(lock), position, cut, insert)
    assert _outcome(text) == _read_by_tables(text, monkeypatch)


def test_a_lock_outside_the_fast_layout_is_still_read_by_tomllib():
    text = lockfile.dumps(example_lock()).replace("version = 1\n", "version = 1  # still version 1\n")
    assert _lockparse.parse(text) is None
    assert lockfile.loads(text) == lockfile.loads(lockfile.dumps(example_lock()))


@pytest.mark.parametrize("url", [
    "https://example.com/a/b.onnx",
    "http://127.0.0.1:8000/x?y=1#z",
    "http://localhost",
    "https://EXAMPLE.com/Upper",  # not the simple form: read by urlsplit
    "HTTPS://example.com/x",
    "http://[::1]:80/x",
    "http://[::1/x",  # a malformed host
    "https://user:pw@example.com/x",
    "https://example.com/a b",
    "ftp://example.com/x",
    "https:///nohost",
    "example.com/x",
])
def test_url_checks_read_plain_urls_as_urlsplit_does(url):
    """The fast path for the locker's plain URLs gives what urlsplit gives."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        expected = (parts.scheme.lower(), parts.hostname)
    except ValueError:
        expected = None
    assert lockfile._scheme_and_host(url) == expected


@pytest.mark.parametrize("url, refused_", [
    ("http://127.0.0.1:8000/x", False),
    ("http://localhost/x", False),
    ("http://files.example.com/x", True),
    ("http://FILES.example.com/x", True),
])
def test_plain_http_is_refused_unless_loopback_or_allowed(url, refused_):
    row = model_row(files=file_row(url=f'"{url}"'))
    if refused_:
        assert "allow-http" in str(refused(lock_text(row)))
        allowed = row.replace('source = { url = "https://example.com/vad.onnx" }', 'source = { url = "https://example.com/vad.onnx", allow-http = true }')
        assert lockfile.loads(lock_text(allowed)).models[0].files[0].url == url
    else:
        assert lockfile.loads(lock_text(row)).models[0].files[0].url == url
