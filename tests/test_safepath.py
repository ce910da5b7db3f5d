"""safe_relpath: every path from outside (lock, wheel, server) stays inside the folder it is joined to."""

from __future__ import annotations

import ntpath
import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies as S
from modelsync._safepath import UnsafePathError, safe_relpath

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("path", [
    "model.onnx",
    "a/b/c.onnx",
    "tokenizer/vocab.txt",
    "données/modèle.onnx",
    "模型/权重.safetensors",
    "with space/and 'quotes' \"too\".bin",
    "...",
    "..a/b..",
    ".hidden/.config",
    "models/a:b",  # a colon later in the path is not a drive
    "~/x",  # no shell expansion: a folder named '~'
    "🙂",
])
def test_accepts_normal_relative_paths(path):
    assert safe_relpath(path) == path


@pytest.mark.parametrize("path, why", [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("//server/share", "absolute"),
    ("C:/Windows/x.dll", "absolute"),
    ("c:x", "absolute"),  # drive-relative on Windows
    ("a:b", "absolute"),
    ("a\\b", "backslash"),
    ("..\\..\\x", "backslash"),
    ("\\\\server\\share", "backslash"),
    (".", "'.'"),
    ("./a", "'.'"),
    ("a/./b", "'.'"),
    ("..", "'..'"),
    ("../x", "'..'"),
    ("a/../../x", "'..'"),
    ("a/..", "'..'"),
    ("a//b", "empty"),
    ("a/", "empty"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("a\tb", "control"),
    ("a\x7fb", "control"),
    ("a\x1b[31m", "control"),
])
def test_refuses_unsafe_paths(path, why):
    with pytest.raises(UnsafePathError) as info:
        safe_relpath(path)
    assert why in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [None, 5, b"a/b"])
def test_refuses_what_is_not_a_string(value):
    with pytest.raises(UnsafePathError):
        safe_relpath(value)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("view").resolve()


def _assert_inside(base: Path, relative: str) -> None:
    resolved = (base / relative).resolve()
    assert resolved != base and resolved.is_relative_to(base), (relative, resolved)
    assert posixpath.normpath(posixpath.join(str(base), relative)).startswith(str(base) + "/")
    # and on Windows too: no drive, root or '..' can appear once '/' becomes '\\'
    windows = ntpath.normpath(ntpath.join("C:\\view", relative.replace("/", "\\")))
    assert windows.startswith("C:\\view\\"), windows


@given(path=S.safe_relpaths())
@PROPERTY
def test_generated_safe_paths_are_accepted_and_stay_inside(base, path):
    assert safe_relpath(path) == path
    _assert_inside(base, path)


_HOSTILE = st.text(
    alphabet=st.one_of(st.sampled_from(["/", "\\", ".", ":", "C", "~", "\x00", "\n", " ", "a", "é"]), st.characters(codec="utf-8", exclude_categories=("Cs",))),
    max_size=16,
)


@given(path=_HOSTILE)
@PROPERTY
def test_any_accepted_path_stays_inside_the_folder(base, path):
    try:
        safe = safe_relpath(path)
    except UnsafePathError:
        return
    assert safe == path  # accepted paths are returned as written, never silently rewritten
    assert safe_relpath(safe) == safe
    _assert_inside(base, safe)


def test_accepted_paths_stay_inside_even_through_existing_folders(tmp_path):
    """With real folders on disk (but no links), resolving still lands inside."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    for relative in ["a/b/c.onnx", "a/...", "a/b/..c"]:
        _assert_inside(tmp_path.resolve(), safe_relpath(relative))
    assert os.listdir(tmp_path) == ["a"]
