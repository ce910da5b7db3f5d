"""The fast reader of plain models.toml (_manifestparse) and the settings read on their own.

The reader's promise: it returns exactly what tomllib returns, or None (and
tomllib reads the text). Never a text tomllib refuses, never a different value.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelsync import _manifestparse, manifest
from modelsync import settings as manifest_settings
from modelsync.cli.main import TEMPLATE
from modelsync.errors import ManifestError

import strategies as S

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a bug, not bad luck
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def same_as_tomllib(text: str) -> dict | None:
    """The fast reading, checked against tomllib's (which must accept whatever the fast reader took)."""
    fast = _manifestparse.parse(text)
    if fast is not None:
        assert fast == tomllib.loads(text)
        assert _types(fast) == _types(tomllib.loads(text))  # True is not 1, "1" is not 1
    return fast


def _types(value):
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


PLAIN = [
    TEMPLATE,
    '[models.a]\nurl = "https://example.com/a.onnx"\n',
    '  [ models . a ]  # spaced out\n  url = "https://example.com/a.onnx"   # where\n\tloader = "onnx"\n',
    "[models.a]\npath = 'C:\\no\\escapes'\ndescription = 'it''s'\n".replace("'it''s'", "'its'"),
    '[settings]\ndir="var/models"\nlink="copy"#no space\n',
    '[models.a]\nfiles = [\n  "a.onnx",\n  "b.onnx",\n]\ngroup = ["x", "y"]\noptional = true\n',
    '[models.a]\nhf = "org/repo"\nfile = "m.onnx"\n[models.a.extra]\nk = { a = 1, b = [true, false], c = { d = "e" } }\n',
    '[environments]\ngpu = { accelerator = "cuda", vram_gib = 24 }\ncpu = { accelerator = "cpu" }\n',
    'x = "a\\u00e9\\n\\t\\"q\\""\ny = -0\nz = 123456789012345678901234567890\n',
    "# only comments\n\n   \n# and blank lines\n",
    '[models."a.b"]\nurl = "https://example.com/a.onnx"\n[models.\'c.d\' . "e\\u00e9"]\nx = 1\n',  # quoted keys in headers
    "",
]


@pytest.mark.parametrize("text", PLAIN)
def test_plain_manifests_take_the_fast_path_and_read_as_tomllib_does(text):
    assert same_as_tomllib(text) is not None


DECLINED = [
    'a = {}\n[a.b]\nx = 1\n',  # an inline table cannot get a sub-table (tomllib refuses)
    '[a]\nx = 1\n[a]\ny = 2\n',  # a table twice (refused)
    '[a.b]\nx = 1\n[a]\ny = 2\n',  # a parent defined after its child (allowed, but tomllib's rules)
    'a = 1\n[a]\n',  # a value, then a table of that name (refused)
    '[a]\nb = 1\n[a.b]\n',  # the same the other way round (refused)
    '[[models.a.variants]]\nname = "x"\n',  # arrays of tables
    'a.b = 1\n',  # a dotted key
    '"a" = 1\n',  # a quoted key
    'x = 1.5\n', 'x = 1e5\n', 'x = inf\n', 'x = nan\n', 'x = 1_000\n', 'x = 0x10\n', 'x = +1\n',
    'x = 1979-05-27\n', 'x = 07:32:00\n',
    'x = """multi\nline"""\n', "x = '''multi\nline'''\n",
    'x = "tab\there"\n',  # TOML reads a raw tab in a string, JSON would not
    'x = "\\ud800"\n',  # a lone surrogate escape: TOML refuses it, JSON would not
    'x = "\\U0001F600"\n',  # TOML's \U escape, which JSON has not
    'x = [1, 2,]\n',  # TOML's trailing comma, which JSON refuses
    'x = { a = 1, a = 2 }\n',  # a key twice in an inline table (refused)
    'x = 1\nx = 2\n',  # a key twice (refused)
    'x = [\n  1,\n',  # no closing bracket (refused)
    'x = [  # a comment\n  1,\n]\n',
    'x = # nothing\n',  # no value (refused)
    'x = 1 # a control \x01 in a comment\n',  # (refused)
    '# a control \x01 in a comment\n',  # (refused)
    'x = 1\r\ny = 2\r\n',  # CRLF line ends
    '\ufeffx = 1\n',  # a byte-order mark
    '[a]]\n', '[a\n', '[]\n', '[a.]\n',  # bad headers (refused)
    'x = "a" "b"\n', 'x = [1 2]\n',  # no separator (refused)
]


@pytest.mark.parametrize("text", DECLINED)
def test_anything_outside_the_plain_layout_is_left_to_tomllib(text):
    assert _manifestparse.parse(text) is None


@FUZZ
@given(S.valid_manifests())
def test_every_rendered_manifest_reads_as_tomllib_does(data):
    text = S.render_manifest(data)
    assert same_as_tomllib(text) is not None, "a manifest of plain values must take the fast path"


@FUZZ
@given(S.mutated_manifests())
def test_manifests_with_any_values_read_as_tomllib_does_or_go_to_it(data):
    same_as_tomllib(S.render_manifest(data))  # floats, dates, odd keys: declined, or read exactly


@FUZZ
@given(
    S.valid_manifests(),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=3),
    st.lists(
        st.sampled_from(
            list(" \t\n\r\"'\\#=[]{},.-+_0123456789abefnrtuxdDAF\x7f\x00\x01é") + ["\\u", "\\ud800", "[a]", "[[a]]", "x = {}", "true", "nan", "1e5", "0x1"]
        ),
        max_size=3,
    ).map("".join),
)
def test_fast_reader_never_accepts_what_tomllib_refuses_nor_reads_it_differently(data, position, cut, insert):
    text = S.render_manifest(data)
    position %= len(text) + 1
    same_as_tomllib(text[:position] + insert + text[position + cut :])


# --------------------------------------------------------------------------
# settings.load: the [settings] table on its own


def write(tmp_path, text: str):
    path = tmp_path / "models.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_settings_of_a_plain_manifest(tmp_path):
    path = write(tmp_path, """
        [settings]
        dir = "var/models"   # where the files go
        link = 'copy'

        [models.a]
        url = "https://example.com/a.onnx"
    """)
    assert manifest_settings.load(path) == manifest.Settings(dir="var/models", link="copy")


def test_settings_default_without_a_table_or_a_manifest(tmp_path):
    assert manifest_settings.load(write(tmp_path, '[models.a]\nurl = "https://example.com/a.onnx"\n')) == manifest_settings.Settings()
    assert manifest_settings.load(tmp_path / "nowhere" / "models.toml") == manifest_settings.Settings()


def test_settings_of_a_manifest_the_fast_reader_declines_come_from_tomllib(tmp_path):
    path = write(tmp_path, """
        [settings]
        link = "hardlink"

        [[models.a.variants]]
        when = "accelerator == 'cuda'"
        url = "https://example.com/a.onnx"
    """)
    assert _manifestparse.parse(path.read_text()) is None
    assert manifest_settings.load(path) == manifest_settings.Settings(dir="models", link="hardlink")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[settings]\nlink = "auto"\n\n[models.a]\nurl = "https://example.com/a.onnx\n', 5, "invalid TOML"),  # a syntax error far from [settings]
        ('[settings]\nlink = "fast"\n', 2, "unknown link mode 'fast'"),
        ('[settings]\ndir = "../outside"\n', 2, "not a folder inside the project"),
        ('[settings]\nfolder = "models"\n', 2, "unknown key 'folder'"),
        ('[settings]\ndir = 3\n', 2, "expected a string"),
        ('settings = "models"\n', 1, "expected a table"),
    ],
)
def test_bad_settings_and_bad_toml_are_located_errors(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        manifest_settings.load(path)
    assert f"models.toml:{line}" in str(caught.value)
    assert words in str(caught.value)


def test_a_frozen_sync_reads_no_model_of_models_toml(tmp_path, http_server):
    """`sync --frozen` of a big lock must not pay for the manifest's full reader:
    neither manifest.py nor tomllib is imported (the lock and the settings are
    read by the fast readers), not even for a plain-HTTP URL to this machine,
    which the lock's checks must allow."""
    root = tmp_path / "project"
    root.mkdir()
    url = http_server.add("b.bin", b"bytes of b")
    assert url.startswith("http://127.0.0.1:")
    (root / "models.toml").write_text(
        f'[settings]\ndir = "models"\n\n[models.a]\npath = "a.bin"\n\n[models.b]\nurl = "{url}"\n', encoding="utf-8"
    )
    (root / "a.bin").write_bytes(b"abc")
    env = {"MODELSYNC_CACHE_DIR": str(tmp_path / "cache")}
    lock = subprocess.run([sys.executable, "-m", "modelsync", "lock", "--project", str(root)], capture_output=True, text=True, env=_env(env))
    assert lock.returncode == 0, lock.stderr
    script = (
        "import sys\n"
        "from modelsync.cli.main import main\n"
        f"code = main(['sync', '--frozen', '-q', '--project', {str(root)!r}])\n"
        "print(code, sorted(m for m in ('modelsync.manifest', 'modelsync.locker', 'tomllib') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(env))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "[]"]
    assert (root / "models" / "a" / "a.bin").read_bytes() == b"abc"
    assert (root / "models" / "b" / "b.bin").read_bytes() == b"bytes of b"


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    from conftest import REPO

    return {**os.environ, "PYTHONPATH": str(REPO), **extra}
