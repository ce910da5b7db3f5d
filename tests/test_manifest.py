"""models.toml: validation errors a user sees (file:line, key, hint), parsed values, the manifest hash.

Each bad manifest is written line by line (``lines(...)``) so the expected line
number is the position in the list.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelsync import manifest
from modelsync._tomlpos import locate
from modelsync.errors import ManifestError, UsageError
from modelsync.manifest import PathSource, PypiSource, UrlSource

import strategies as S

H = "0123456789abcdef" * 4  # a valid 64-hex digest
NOWHERE = Path("/nonexistent-modelsync-project")

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a bug, not bad luck
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


def parse(text: str, root: Path = NOWHERE) -> manifest.Manifest:
    return manifest.parse(text, root / "models.toml")


def error_of(text: str, root: Path = NOWHERE) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse(text, root)
    return info.value


def assert_located(error: ManifestError, line: int, key: str | None) -> str:
    """The error is a usage error (exit 2) that starts with models.toml:LINE and names the key."""
    text = str(error)
    assert isinstance(error, UsageError)
    assert error.exit_code == 2
    assert text.startswith(f"models.toml:{line}:"), text
    assert error.line == line, text
    if key is not None:
        assert key in text.splitlines()[0], text
    return text


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder holding the local files that `path` models point at."""
    root = tmp_path_factory.mktemp("assets-project")
    (root / "assets" / "bundle").mkdir(parents=True)
    (root / S.ASSET_FILE).write_bytes(b"onnx")
    (root / S.ASSET_DIR / "a.onnx").write_bytes(b"a")
    (root / S.ASSET_DIR / "b.onnx").write_bytes(b"b")
    return root


# --------------------------------------------------------------------------
# Happy paths: frozen dataclasses with the values a user declared


def test_url_model_takes_its_file_name_from_the_url_percent_decoded():
    m = parse(lines(
        "[models.upscaler]",
        'url = "https://example.com/releases/v1/Real%20ESRGAN%E2%9C%93_x4.pth"',
        'description = "4x upscaler"',
        'loader = "torch"',
    ))
    (spec,) = m.specs
    assert spec.name == "upscaler"
    assert spec.kind == "url"
    assert spec.source == UrlSource(url="https://example.com/releases/v1/Real%20ESRGAN%E2%9C%93_x4.pth", filename="Real ESRGAN✓_x4.pth")
    assert spec.description == "4x upscaler"
    assert spec.loader == "torch"
    assert spec.line == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.source.url = "https://evil.example/"  # type: ignore[misc]


def test_url_model_with_an_explicit_filename_and_query_string():
    (spec,) = parse(lines(
        "[models.x]",
        'url = "https://example.com/download?id=42"',
        'filename = "detector.onnx"',
    )).specs
    assert spec.source.filename == "detector.onnx"
    assert spec.source.url == "https://example.com/download?id=42"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/m.onnx",
    "http://localhost/m.onnx",
    "http://localhost:9000/dir/m.onnx",
    "http://[::1]:8000/m.onnx",
])
def test_plain_http_is_allowed_for_loopback_hosts(url):
    (spec,) = parse(lines("[models.x]", f'url = "{url}"')).specs
    assert spec.source.url == url
    assert spec.source.filename == "m.onnx"


def test_plain_http_is_allowed_anywhere_with_allow_http():
    (spec,) = parse(lines("[models.x]", 'url = "http://mirror.example.com/m.onnx"', "allow-http = true")).specs
    assert spec.source.allow_http is True


def test_pypi_model_has_canonical_name_and_version():
    (spec,) = parse(lines(
        "[models.vad]",
        'pypi = "Silero_VAD==6.2.3"',
        'file = "silero_vad/data/silero_vad.onnx"',
        'loader = "onnx"',
    )).specs
    assert spec.kind == "pypi"
    assert spec.source == PypiSource(
        requirement="Silero_VAD==6.2.3", name="silero-vad", version="6.2.3", file="silero_vad/data/silero_vad.onnx"
    )


def test_pypi_model_with_files_globs():
    (spec,) = parse(lines("[models.ocr]", 'pypi = "rapidocr-onnxruntime==1.4.4"', 'files = ["rapidocr_onnxruntime/models/*.onnx", "x/*.txt"]')).specs
    assert spec.source.file is None
    assert spec.source.files == ("rapidocr_onnxruntime/models/*.onnx", "x/*.txt")


def test_path_model_to_a_file_and_to_a_folder_with_globs(assets):
    m = parse(lines(
        "[models.local-classifier]",
        f'path = "{S.ASSET_FILE}"',
        "optional = true",
        "",
        "[models.bundle]",
        f'path = "{S.ASSET_DIR}"',
        'files = ["*.onnx"]',
    ), assets)
    bundle, classifier = m.specs  # sorted by name
    assert classifier.name == "local-classifier"
    assert classifier.source == PathSource(path=S.ASSET_FILE)
    assert classifier.optional is True
    assert bundle.source == PathSource(path=S.ASSET_DIR, files=("*.onnx",))
    assert (bundle.line, classifier.line) == (5, 1)
    assert m.root == assets


def test_metadata_keys_and_group_as_string_or_list():
    m = parse(lines(
        "[models.a]",
        'url = "https://example.com/a.onnx"',
        'group = "asr"',
        'license = "MIT"',
        'description = "A \\"quoted\\" model"',
        "optional = false",
        f'sha256 = "{H}"',
        "",
        "[models.b]",
        'url = "https://example.com/b.onnx"',
        'group = ["asr", "ocr"]',
        f'blake3 = "{H}"',
    ))
    a, b = m.specs
    assert a.groups == ("asr",)
    assert b.groups == ("asr", "ocr")
    assert a.license == "MIT"
    assert a.description == 'A "quoted" model'
    assert a.optional is False
    assert a.sha256 == H and a.blake3 is None
    assert b.blake3 == H and b.sha256 is None


def test_settings_defaults_and_values():
    assert parse(lines("[models.a]", 'url = "https://example.com/a.onnx"')).settings == manifest.Settings(dir="models", link="auto")
    m = parse(lines("[settings]", 'dir = "var/models"', 'link = "copy"'))
    assert m.settings == manifest.Settings(dir="var/models", link="copy")
    assert m.models == ()


def test_models_are_sorted_by_name():
    m = parse(lines(*(f'models.{S.toml_key(n)} = {{ url = "https://example.com/{n}.onnx" }}' for n in ["zeta", "alpha", "mid.v2", "0-first"])))
    assert [spec.name for spec in m.specs] == ["0-first", "alpha", "mid.v2", "zeta"]
    assert m.model("alpha").specs[0].source.filename == "alpha.onnx"
    assert m.model("nope") is None


@given(S.valid_manifests())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_generated_valid_manifests_parse(assets, data):
    m = parse(S.render_manifest(data), assets)
    assert [spec.name for spec in m.specs] == sorted(data["models"])
    for spec in m.specs:
        table = data["models"][spec.name]
        assert spec.kind == next(k for k in ("url", "pypi", "path") if k in table)
        assert spec.sha256 == table.get("sha256") and spec.blake3 == table.get("blake3")
        assert spec.optional == table.get("optional", False)


# --------------------------------------------------------------------------
# Errors: models.toml:LINE, the key, what to do


@pytest.mark.parametrize("text, line", [
    (lines("[models.vad]", 'url = "https://example.com/m.onnx"', "loader = "), 3),
    (lines("[models.vad]", "", 'url = "https://example.com/m.onnx'), 3),
    (lines("[models.vad]", 'url = "https://example.com/m.onnx"', "[models.vad]", 'loader = "onnx"'), 3),
    (lines("# a comment", "[models.vad", 'url = "https://example.com/m.onnx"'), 2),
    (lines("[models.vad]", "url = https://example.com/m.onnx"), 2),
])
def test_broken_toml_gives_the_parser_line(text, line):
    message = assert_located(error_of(text), line, None)
    assert "invalid TOML" in message


@pytest.mark.parametrize("typo, meant", [("urll", "url"), ("descripton", "description"), ("optinal", "optional"), ("sha265", "sha256")])
def test_unknown_key_suggests_the_close_match(typo, meant):
    error = error_of(lines("[settings]", 'dir = "models"', "", "[models.vad]", 'url = "https://example.com/m.onnx"', f"{typo} = 1"))
    message = assert_located(error, 6, f"models.vad.{typo}")
    assert f"did you mean {meant!r}" in message


def test_unknown_key_without_a_close_match_lists_the_keys():
    message = assert_located(error_of(lines("[models.vad]", 'url = "https://example.com/m.onnx"', 'colour = "red"')), 3, "colour")
    assert "url" in message.split("hint:")[1]


@pytest.mark.parametrize("typo, meant, line", [
    ("[setting]", "settings", 2),   # an unknown top-level table: the header line
    ("[model.vad]", "models", 2),
])
def test_unknown_top_level_table_names_its_line(typo, meant, line):
    error = error_of(lines("# models of the app", typo, 'url = "https://example.com/m.onnx"'))
    message = assert_located(error, line, meant[:-1])
    assert f"did you mean {meant!r}" in message


def test_unknown_top_level_key_names_its_line():
    error = error_of(lines("version = 2", "[models.vad]", 'url = "https://example.com/m.onnx"'))
    assert_located(error, 1, "version")


def test_two_sources_in_one_model():
    error = error_of(lines("[models.vad]", 'url = "https://example.com/m.onnx"', 'pypi = "silero-vad==6.2.3"', 'file = "a.onnx"'))
    message = assert_located(error, 3, "models.vad")
    assert "exactly one source" in message
    assert "'url'" in message and "'pypi'" in message


def test_no_source():
    error = error_of(lines("# app models", "[models.vad]", 'description = "voice activity"'))
    message = assert_located(error, 2, "models.vad")
    assert "exactly one source" in message
    assert "url" in message.split("hint:")[1]


@pytest.mark.parametrize("header, suggestion", [
    ("[models.SileroVAD]", "silerovad"),
    ('[models."my model"]', "my-model"),
    ("[models.-vad]", "vad"),
    ('[models."Big Model!"]', "big-model"),
    ("[models.vad_]", "vad"),
    ("[models." + "A" * 120 + "]", None),  # the suggestion must itself be a valid name
    ('[models."vad\\n"]', "vad"),
])
def test_bad_model_name_suggests_a_valid_rename(header, suggestion):
    error = error_of(lines("[settings]", 'link = "copy"', header, 'url = "https://example.com/m.onnx"'))
    message = assert_located(error, 3, "models.")
    assert "invalid model name" in message
    found = re.search(r"\[models\.([^\]]*)\]", message.split("hint:")[1])
    assert found, message
    if suggestion is not None:
        assert found.group(1) == suggestion
    assert S.NAME_RULE.match(found.group(1)), f"suggested rename {found.group(1)!r} is not a valid model name either"


def test_bad_unicode_model_name_names_its_line():
    error = error_of(lines("[settings]", 'link = "copy"', '[models."Modèle"]', 'url = "https://example.com/m.onnx"'))
    assert_located(error, 3, "Modèle")


@given(st.text(max_size=40))
@settings(max_examples=100, deadline=None, derandomize=True)
def test_any_invalid_model_name_gets_a_valid_suggestion(name):
    text = lines("[models." + S.toml_string(name) + "]", 'url = "https://example.com/m.onnx"')
    if S.NAME_RULE.match(name):
        assert parse(text).specs[0].name == name
        return
    error = error_of(text)
    assert "invalid model name" in str(error)
    found = re.search(r"\[models\.([^\]]*)\]", str(error).split("hint:")[1])
    assert found and S.NAME_RULE.match(found.group(1))


def test_missing_local_file(tmp_path):
    error = error_of(lines("[models.local]", 'description = "x"', 'path = "assets/nope.onnx"'), tmp_path)
    message = assert_located(error, 3, "models.local.path")
    assert "does not exist" in message
    assert "assets/nope.onnx" in message


@pytest.mark.parametrize("value", ["/etc/passwd", "C:\\\\models\\\\x.onnx", "C:/models/x.onnx", "~/models/x.onnx"])
def test_absolute_local_path_is_refused(assets, value):
    error = error_of(lines("[models.local]", f'path = "{value}"'), assets)
    message = assert_located(error, 2, "models.local.path")
    assert "absolute" in message


def test_file_and_files_together():
    error = error_of(lines("[models.vad]", 'pypi = "silero-vad==6.2.3"', 'file = "a.onnx"', 'files = ["*.onnx"]'))
    message = assert_located(error, 4, "models.vad.files")
    assert "`file`" in message and "`files`" in message


def test_pypi_model_needs_file_or_files():
    error = error_of(lines("[models.vad]", 'pypi = "silero-vad==6.2.3"'))
    assert "file" in assert_located(error, 1, "models.vad")


@pytest.mark.parametrize("requirement", [
    "silero-vad>=6",
    "silero-vad",
    "silero-vad==6.*",
    "silero-vad[cli]==6.2.3",
    "silero-vad===6.2.3",
    "silero-vad==6.2.3,<7",
    "silero-vad==6.2.3; python_version >= '3.8'",
    "silero-vad @ https://example.com/silero_vad-6.2.3-py3-none-any.whl",
    "silero vad == 6",
])
def test_pypi_requirement_must_be_exactly_name_equals_version(requirement):
    error = error_of(lines("# vad", "[models.vad]", f"pypi = {S.toml_string(requirement)}", 'file = "silero_vad/data/silero_vad.onnx"'))
    message = assert_located(error, 3, "models.vad.pypi")
    assert "silero-vad==6.2.3" in message  # the hint shows the expected form


@pytest.mark.parametrize("url", ["https://user:s3cr3t@example.com/m.onnx", "https://s3cr3t@example.com/m.onnx", "https://:s3cr3t@example.com/m.onnx"])
def test_url_with_credentials_is_refused_without_echoing_them(url):
    message = assert_located(error_of(lines("[models.x]", f'url = "{url}"')), 2, "models.x.url")
    assert "credential" in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize("url", [
    "https://bucket.s3.amazonaws.com/m.onnx?X-Amz-Credential=AKIA&X-Amz-Signature=s3cr3t",
    "https://example.com/m.onnx?token=s3cr3t",
    "https://storage.googleapis.com/b/m.onnx?X-Goog-Signature=s3cr3t",
])
def test_signed_or_tokenised_url_is_refused_without_echoing_the_secret(url):
    message = assert_located(error_of(lines("[models.x]", 'loader = "onnx"', f'url = "{url}"')), 3, "models.x.url")
    assert "s3cr3t" not in message


@pytest.mark.parametrize("url", ["http://example.com/m.onnx", "http://10.0.0.1/m.onnx", "http://localhost.evil.example.com/m.onnx"])
def test_plain_http_to_a_remote_host_needs_allow_http(url):
    message = assert_located(error_of(lines("[models.x]", 'description = "d"', f'url = "{url}"')), 3, "models.x.url")
    assert "allow-http" in message


@pytest.mark.parametrize("url", ["ftp://example.com/m.onnx", "file:///etc/passwd", "example.com/m.onnx", "https:///m.onnx"])
def test_url_must_be_https(url):
    assert "https://" in assert_located(error_of(lines("[models.x]", f'url = "{url}"')), 2, "models.x.url")


@pytest.mark.parametrize("url", ["https://example.com/", "https://example.com/dl/..", "https://example.com/a%2Fb", "https://example.com/a%00b"])
def test_url_without_a_usable_file_name_asks_for_filename(url):
    assert "filename" in assert_located(error_of(lines("[models.x]", f'url = "{url}"')), 2, "models.x.url")


@pytest.mark.parametrize("key", ["sha256", "blake3"])
@pytest.mark.parametrize("value", ["abc", H[:-1], H + "0", "g" * 64, "", "sha1:" + H, H + "\\n"])
def test_bad_digest(key, value):
    error = error_of(lines("[models.x]", 'url = "https://example.com/m.onnx"', f'{key} = "{value}"'))
    assert "64 hex" in assert_located(error, 3, f"models.x.{key}")


def test_digest_of_wrong_type():
    assert_located(error_of(lines("[models.x]", 'url = "https://example.com/m.onnx"', "sha256 = 5")), 3, "models.x.sha256")


def test_digest_on_a_multi_file_pypi_model():
    error = error_of(lines("[models.ocr]", 'pypi = "rapidocr-onnxruntime==1.4.4"', 'files = ["m/*.onnx"]', f'sha256 = "{H}"'))
    assert "several" in assert_located(error, 4, "models.ocr.sha256")


def test_digest_on_a_local_folder_model(assets):
    error = error_of(lines("[models.b]", f'path = "{S.ASSET_DIR}"', 'files = ["*.onnx"]', f'blake3 = "{H}"'), assets)
    assert_located(error, 4, "models.b.blake3")


def test_unknown_settings_key_suggests_the_close_match():
    message = assert_located(error_of(lines("[settings]", 'dirr = "models"')), 2, "settings.dirr")
    assert "did you mean 'dir'" in message


def test_unknown_link_mode():
    message = assert_located(error_of(lines("[settings]", 'dir = "models"', 'link = "junction"')), 3, "settings.link")
    assert "reflink" in message and "hardlink" in message


@pytest.mark.parametrize("value", ["../models", "/srv/models", "", "a/../../b", "a\\\\b", "C:/models", "."])
def test_unsafe_settings_dir(value):
    assert_located(error_of(lines("[settings]", f'dir = "{value}"')), 2, "settings.dir")


@pytest.mark.parametrize("row, key, expected", [
    ('optional = "yes"', "optional", "boolean"),
    ("description = 5", "description", "string"),
    ("loader = true", "loader", "string"),
    ('allow-http = "true"', "allow-http", "boolean"),
    ('group = 5', "group", "group"),
    ('group = ["Speech Models"]', "group", "group"),
    ('group = "asr\\n"', "group", "group"),
    ('loader = "tensorflow"', "loader", "onnx"),
    ("license = []", "license", "string"),
])
def test_wrong_value_types(row, key, expected):
    error = error_of(lines("[models.x]", 'url = "https://example.com/m.onnx"', row))
    assert expected in assert_located(error, 3, f"models.x.{key}")


@pytest.mark.parametrize("row, key", [("url = 5", "url"), ('files = "x.onnx"', "files"), ("files = []", "files"), ("file = 1", "file")])
def test_wrong_source_value_types(row, key):
    text = lines("[models.x]", row) if key == "url" else lines("[models.x]", 'pypi = "a==1"', row)
    assert_located(error_of(text), 2 if key == "url" else 3, f"models.x.{key}")


def test_a_model_that_is_not_a_table():
    message = assert_located(error_of(lines("[models]", 'vad = "https://example.com/m.onnx"')), 2, "models.vad")
    assert "expected a table" in message


def test_models_that_is_not_a_table():
    assert_located(error_of(lines('models = "vad"')), 1, "models")


def test_settings_that_is_not_a_table():
    assert_located(error_of(lines("# s", 'settings = "fast"')), 2, "settings")


def test_key_that_does_not_apply_to_the_source_kind():
    message = assert_located(error_of(lines("[models.x]", 'url = "https://example.com/m.onnx"', 'file = "a.onnx"')), 3, "models.x.file")
    assert "does not apply" in message


@pytest.mark.parametrize("text, line, key", [
    (lines("# inline", "", 'models.vad = { urll = "https://example.com/m.onnx" }'), 3, "models.vad.urll"),
    (lines("[models]", 'vad = { url = "https://example.com/m.onnx", optional = "yes" }'), 2, "models.vad.optional"),
    (lines("[models]", 'vad.url = "https://example.com/m.onnx"', 'vad.optional = "yes"'), 3, "models.vad.optional"),
    (lines('models.vad.url = "https://example.com/m.onnx"', 'models.vad.sha256 = "x"'), 2, "models.vad.sha256"),
    (lines('models.VAD.url = "https://example.com/m.onnx"'), 1, "models.VAD"),
    (lines("[models]", "", 'vad = { description = "no source" }'), 3, "models.vad"),
    (lines("[settings]", 'dir = "models"', "[models.a]", 'url = "https://example.com/a.onnx"', "[models.b]", 'url = "http://example.com/b.onnx"'), 6, "models.b.url"),
])
def test_inline_and_dotted_forms_still_get_a_line(text, line, key):
    assert_located(error_of(text), line, key)


def test_key_inside_a_multiline_string_is_not_mistaken_for_the_real_key():
    text = lines(
        "[models.x]",
        'description = """',
        'url = "https://example.com/in-the-description.onnx"',
        '"""',
        'url = "http://example.com/m.onnx"',
    )
    assert_located(error_of(text), 5, "models.x.url")


# -- inputs that must still be a ManifestError, never a crash -------------------


def test_malformed_ipv6_url_is_a_manifest_error():
    assert_located(error_of(lines("[models.x]", 'url = "https://[::1/m.onnx"')), 2, "models.x.url")


def test_backslash_escape_inside_a_literal_multiline_string_is_fine():
    text = lines("[models.x]", "description = '''", '"\\x" = 1', "'''", "urll = 1")
    assert_located(error_of(text), 5, "models.x.urll")


def test_overlong_local_path_is_a_manifest_error(tmp_path):
    assert_located(error_of(lines("[models.x]", 'path = "' + "a" * 300 + '"'), tmp_path), 2, "models.x.path")


def test_deeply_nested_toml_is_a_manifest_error():
    error_of(lines("[models.x]", "description = " + "[" * 5000 + "]" * 5000))


def test_load_of_a_missing_or_non_utf8_file(tmp_path):
    with pytest.raises(ManifestError) as info:
        manifest.load(tmp_path / "models.toml")
    assert "modelsync init" in str(info.value)
    (tmp_path / "models.toml").write_bytes(b'[models.x]\ndescription = "caf\xe9"\n')
    with pytest.raises(ManifestError) as info:
        manifest.load(tmp_path / "models.toml")
    assert "UTF-8" in str(info.value)
    assert info.value.exit_code == 2


# --------------------------------------------------------------------------
# Generated bad manifests: only ever a ManifestError


def _parse_or_manifest_error(text: str, root: Path) -> ManifestError | None:
    try:
        parse(text, root)
    except ManifestError as error:
        assert str(error).startswith("models.toml")
        return error
    return None  # any other exception propagates and fails the test


@FUZZ
@given(data=S.mutated_manifests())
def test_mutated_manifests_raise_only_manifest_error(assets, data):
    _parse_or_manifest_error(S.render_manifest(data), assets)


@FUZZ
@given(data=S.one_key_edits())
def test_any_value_for_a_model_key_raises_only_manifest_error(assets, data):
    _parse_or_manifest_error(S.render_manifest(data), assets)


@FUZZ
@given(text=S.tomlish_text)
def test_tomlish_text_raises_only_manifest_error(assets, text):
    _parse_or_manifest_error(text, assets)


@FUZZ
@given(data=S.mutated_manifests())
def test_every_manifest_error_names_a_line_of_the_file(assets, data):
    text = S.render_manifest(data)
    try:
        parse(text, assets)
    except ManifestError as error:
        assert error.line is not None and 1 <= error.line <= len(text.splitlines()), str(error)
        assert str(error).startswith(f"models.toml:{error.line}:")
    except Exception:  # crashes are the business of the test above
        pass


# --------------------------------------------------------------------------
# The manifest hash: content, not layout


BASE = lines(
    "[settings]",
    'dir = "models"',
    "",
    "[models.vad]",
    'pypi = "silero-vad==6.2.3"',
    'file = "silero_vad/data/silero_vad.onnx"',
    'loader = "onnx"',
    'group = ["asr"]',
    "",
    "[models.up]",
    'url = "https://example.com/up.pth"',
    'description = "upscaler"',
    f'sha256 = "{H}"',
)

SAME = lines(
    "# The same models, written differently.",
    "[models]",
    "up = { sha256 = '" + H + "', description = 'upscaler', url = 'https://example.com/up.pth' }  # inline",
    "",
    "   [models.vad]   # indented header",
    "group=[ 'asr' ]",
    "loader   =   'onnx'",
    'file = """silero_vad/data/silero_vad.onnx"""',
    "pypi = 'silero-vad==6.2.3'",
    "",
    "[settings]",
    "dir = 'models'  # trailing comment",
)


def test_manifest_hash_ignores_comments_whitespace_key_order_and_form():
    a, b = parse(BASE), parse(SAME)
    assert [dataclasses.replace(m, line=None) for m in a.specs] == [dataclasses.replace(m, line=None) for m in b.specs]
    assert a.hash == b.hash
    assert re.fullmatch(r"blake3:[0-9a-f]{64}", a.hash)


@pytest.mark.parametrize("old, new", [
    ('pypi = "silero-vad==6.2.3"', 'pypi = "silero-vad==6.2.4"'),
    ('file = "silero_vad/data/silero_vad.onnx"', 'file = "silero_vad/data/silero_vad_half.onnx"'),
    ('loader = "onnx"', 'loader = "file"'),
    ('group = ["asr"]', 'group = ["asr", "vad"]'),
    ('url = "https://example.com/up.pth"', 'url = "https://example.com/up2.pth"'),
    ('description = "upscaler"', 'description = "Upscaler"'),
    (f'sha256 = "{H}"', f'blake3 = "{H}"'),
    ('[models.up]', '[models.upscaler]'),
    ('description = "upscaler"', 'description = "upscaler"\noptional = true'),
    ('description = "upscaler"', 'description = "upscaler"\nfilename = "up.bin"'),
    ('description = "upscaler"', 'description = "upscaler"\nlicense = "MIT"'),
    ('[settings]', '[models.extra]\nurl = "https://example.com/e.onnx"\n[settings]'),
])
def test_manifest_hash_changes_when_a_model_key_changes(old, new):
    assert old in BASE
    changed = BASE.replace(old, new)
    assert parse(changed).hash != parse(BASE).hash


def _inline_layout(data: dict) -> str:
    """The same data as `render_manifest`, but each model inline, keys reversed, with comments."""
    out = ["# generated", ""]
    for name, table in reversed(list(data["models"].items())):
        items = ", ".join(f"{S.toml_key(k)} = {S.toml_value(v)}" for k, v in reversed(list(table.items())))
        out.append(f"models.{S.toml_key(name)} = {{ {items} }}   # {name}")
    if "settings" in data:
        out.append("[settings]  # at the end this time")
        out.extend(f"  {k} = {S.toml_value(v)}" for k, v in reversed(list(data["settings"].items())))
    return "\n".join(out) + "\n"


@given(data=S.valid_manifests(), other=S.valid_model_tables())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_manifest_hash_is_a_function_of_the_models(assets, data, other):
    first = parse(S.render_manifest(data), assets)
    assert parse(_inline_layout(data), assets).hash == first.hash
    name = sorted(data["models"])[0]
    changed = {**data, "models": {**data["models"], name: other}}
    if other != data["models"][name]:
        assert parse(S.render_manifest(changed), assets).hash != first.hash


# --------------------------------------------------------------------------
# The CLI: exit 2, the location, no traceback


CLI_CASES = {
    "broken-toml": (lines("[models.vad]", 'url = "https://example.com/m.onnx"', "loader ="), 3),
    "unknown-key": (lines("[models.vad]", 'urll = "https://example.com/m.onnx"'), 2),
    "two-sources": (lines("[models.vad]", 'url = "https://example.com/m.onnx"', 'path = "m.onnx"'), 3),
    "bad-name": (lines("# x", "[models.Silero]", 'url = "https://example.com/m.onnx"'), 2),
    "missing-path": (lines("[models.local]", 'path = "assets/missing.onnx"'), 2),
    "pypi-range": (lines("[models.vad]", 'pypi = "silero-vad>=6"', 'file = "a.onnx"'), 2),
    "credentials": (lines("[models.x]", 'url = "https://me:pw@example.com/m.onnx"'), 2),
    "plain-http": (lines("[models.x]", "", 'url = "http://example.com/m.onnx"'), 3),
    "bad-link": (lines("[settings]", 'link = "junction"'), 2),
    "wrong-type": (lines("[models.x]", 'url = "https://example.com/m.onnx"', 'optional = "yes"'), 3),
    "malformed-url": (lines("[models.x]", 'url = "https://[::1/m.onnx"'), 2),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_lock_reports_bad_manifest_with_exit_2(project, cli, case):
    text, line = CLI_CASES[case]
    root = project(text)
    result = cli("lock", cwd=root)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"models.toml:{line}:" in result.stderr, result.stderr
    assert not (root / "models.lock").exists()


# --------------------------------------------------------------------------
# _tomlpos.locate: where a table or key is written

DOC = lines(
    "# comment [models.fake]",                    # 1
    "[settings]",                                  # 2
    'dir = "m"   # trailing = comment',            # 3
    "",                                            # 4
    '[models."my.model"]',                         # 5
    'url = "https://example.com/x.onnx"',          # 6
    "'sha256' = \"abc\"",                          # 7
    "",                                            # 8
    "[models.vad]",                                # 9
    'pypi = "silero-vad==6.2.3"',                  # 10
    "[[models.vad.variant]]",                      # 11
    'name = "fp16"',                               # 12
    "[[models.vad.variant]]",                      # 13
    'file = "b.onnx"',                             # 14
    'name = "fp32"',                               # 15
    "[ models . spaced ]   # spaced header",       # 16
    'url = "https://example.com/s.onnx"',          # 17
    "[models.arr]",                                # 18
    "files = [",                                   # 19
    '  "a",',                                      # 20
    "]",                                           # 21
    "[models]",                                    # 22
    'inl = { url = "q", sha256 = "r" }',           # 23
    'dot.url = "s"',                               # 24
    "[models.'lit.key']",                          # 25
    'optional = true',                             # 26
)


@pytest.mark.parametrize("table, key, line", [
    (("settings",), None, 2),
    (("settings",), "dir", 3),
    (("models", "my.model"), None, 5),
    (("models", "my.model"), "url", 6),
    (("models", "my.model"), "sha256", 7),
    (("models", "vad"), None, 9),
    (("models", "vad"), "pypi", 10),
    (("models", "vad"), "missing", 9),  # an unknown key falls back to its table
    (("models", "vad", "variant", 0), None, 11),
    (("models", "vad", "variant", 1), None, 13),
    (("models", "vad", "variant", 0), "name", 12),
    (("models", "vad", "variant", 1), "file", 14),
    (("models", "vad", "variant", 1), "name", 15),
    (("models", "spaced"), "url", 17),
    (("models", "arr"), "files", 19),
    (("models", "inl"), None, 23),
    (("models", "inl"), "sha256", 23),
    (("models", "dot"), None, 24),
    (("models", "dot"), "url", 24),
    (("models", "lit.key"), "optional", 26),
    (("models", "fake"), None, None),  # only in a comment
    (("models", "nope"), "url", None),
])
def test_locate(table, key, line):
    assert locate(DOC, table, key) == line


def test_locate_top_level_keys_and_tables():
    text = lines("version = 2", "[setting]", 'dir = "m"')
    assert locate(text, (), "version") == 1
    assert locate(text, (), "setting") == 2


def test_locate_unicode_and_escaped_quoted_keys():
    text = lines("[models.a]", 'url = "x"', '[models."Modèle"]', 'url = "y"', '[models."tab\\tname"]', 'url = "z"')
    assert locate(text, ("models", "Modèle")) == 3
    assert locate(text, ("models", "Modèle"), "url") == 4
    assert locate(text, ("models", "tab\tname"), "url") == 6


@given(text=S.tomlish_text, key=st.sampled_from([None, "url", "name", "x", "sha256"]),
       table=st.sampled_from([(), ("models",), ("models", "vad"), ("models", "vad", "variant", 1), ("settings",), ("models", "a b")]))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_locate_never_raises_and_stays_in_the_file(text, table, key):
    line = locate(text, table, key)
    assert line is None or 1 <= line <= len(text.splitlines())
