"""Hypothesis strategies shared by the tests: names, safe paths, digests, locks, manifests.

Besides the strategies, a tiny TOML emitter (``toml_value`` / ``render_manifest``)
turns generated Python data into TOML text, so that the tests control exactly
what a user's file would look like (including deliberately wrong values).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import string

from hypothesis import strategies as st

from modelsync.lockfile import Lock, LockedFile, LockedModel, LockedVariant

# --------------------------------------------------------------------------
# Names, digests, paths

NAME_CHARS = string.ascii_lowercase + string.digits
NAME_RULE = re.compile(r"\A[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?\Z")  # DESIGN §1: lowercase, digits, - _ .


@st.composite
def model_names(draw, max_middle: int = 12) -> str:
    """Names that follow the model-name rule: [a-z0-9] at both ends, [a-z0-9._-] inside."""
    first = draw(st.sampled_from(NAME_CHARS))
    if draw(st.booleans()):
        return first
    middle = draw(st.text(alphabet=NAME_CHARS + "._-", max_size=max_middle))
    last = draw(st.sampled_from(NAME_CHARS))
    return first + middle + last


hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)

# One path component: any printable text (unicode, quotes, spaces, '#', '=', ...)
# without '/', '\\' or control characters, and not '.' or '..'.
_COMPONENT_ALPHABET = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Cs"),
    exclude_characters="/\\",
)
path_components = st.text(alphabet=_COMPONENT_ALPHABET, min_size=1, max_size=12).filter(
    lambda part: part not in (".", "..")
)


@st.composite
def safe_relpaths(draw, max_depth: int = 4) -> str:
    """Relative POSIX paths that safe_relpath must accept: 'a/b/c.onnx', 'données/"x".bin', ..."""
    parts = draw(st.lists(path_components, min_size=1, max_size=max_depth))
    path = "/".join(parts)
    if re.match(r"^[A-Za-z]:", path):  # 'C:...' reads as a drive on Windows: not safe
        path = "_" + path
    return path


# Text that puts every escape the lock writer must get right into a string.
tricky_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(['"', "'", "\\", "\n", "\t", "\r", "\x7f", "\x00", "\x1b", "#", "=", "[", "]", "{", "}", "\u2028", "é", "模", "型", "🙂"]),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=30,
)

urls = st.builds(
    lambda host, path: f"https://{host}/{path}",
    st.sampled_from(["example.com", "files.example.org:8443", "127.0.0.1"]),
    st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-_.%", min_size=1, max_size=8), min_size=1, max_size=3).map("/".join),
)

# --------------------------------------------------------------------------
# Lock values

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# Values the lock writer supports: strings, integers, booleans, arrays and tables of them.
lock_scalars = st.one_of(tricky_text, _INT64, st.booleans())
lock_values = st.recursive(
    lock_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(tricky_text, children, max_size=3),
    ),
    max_leaves=6,
)
source_tables = st.dictionaries(
    st.one_of(st.sampled_from(["url", "pypi", "version", "wheel", "wheel-sha256", "member", "path", "files"]), tricky_text),
    lock_values,
    max_size=4,
).filter(lambda table: "hf" not in table)  # an hf source is checked for a repository and commit


# A file's own `source`: where sync finds its bytes. The reader checks the shape
# of the kinds it knows (a wheel member, a local path); other tables pass as they are.
wheel_file_sources = st.fixed_dictionaries(
    {
        "pypi": model_names(max_middle=6),
        "version": st.sampled_from(["6.2.3", "1.4.4", "0.1.dev0", "2!1.0+local"]),
        # A valid wheel file name: the reader refuses anything pip could misread.
        "wheel": st.builds(
            lambda name, version: f"{name}-{version}-py3-none-any.whl",
            st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8),
            st.sampled_from(["1.0", "6.2.3", "0.1.dev0"]),
        ),
        "wheel-sha256": hex64,
        "member": st.deferred(lambda: safe_relpaths()),
    },
    optional={"extra": lock_values},
)
# A local path as the reader accepts it: relative, no control characters.
local_paths = tricky_text.filter(
    lambda text: text.strip() and not text.startswith(("/", "~")) and not re.match(r"^[A-Za-z]:", text)
    and not re.search(r"[\x00-\x1f\x7f]", text)
)
path_file_sources = st.fixed_dictionaries({"path": local_paths}, optional={"extra": lock_values})
file_sources = st.one_of(
    wheel_file_sources,
    path_file_sources,
    source_tables.filter(lambda table: table and "wheel" not in table and "path" not in table),
)


@st.composite
def locked_files(draw, path=None, variant=None) -> LockedFile:
    return LockedFile(
        path=path if path is not None else draw(safe_relpaths()),
        size=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        blake3=draw(hex64),
        sha256=draw(st.none() | hex64),
        url=draw(st.none() | urls),
        source=draw(st.none() | file_sources),
        variant=variant,
    )


# Markers as `lock` writes them (canonical text), for variants.
lock_markers = st.sampled_from(
    ["accelerator == 'cuda'", "vram_gib >= 8", "accelerator == 'cuda' and vram_gib >= 24", "'avx2' in cpu_flags", "os == 'darwin'"]
)


@st.composite
def locked_variants(draw) -> tuple[LockedVariant, ...]:
    """No variants, or a few: named uniquely, every one but perhaps the last with a `when`."""
    names = draw(st.lists(model_names(max_middle=4), max_size=3, unique=True))
    variants = []
    for index, name in enumerate(names):
        last = index == len(names) - 1
        when = draw(st.none() | lock_markers) if last else draw(lock_markers)
        variants.append(LockedVariant(name=name, when=when, source=draw(source_tables)))
    return tuple(variants)


@st.composite
def locked_models(draw, name=None) -> LockedModel:
    variants = draw(locked_variants())
    variant_names = st.sampled_from([variant.name for variant in variants]) if variants else st.none()
    keys = draw(
        st.lists(
            st.tuples(variant_names, safe_relpaths(max_depth=3)),
            max_size=4,
            unique=True,
        )
    )
    files = tuple(draw(locked_files(path=path, variant=variant)) for variant, path in keys)
    environments = (
        draw(st.dictionaries(model_names(max_middle=4), st.sampled_from([v.name for v in variants]), max_size=3)) if variants else {}
    )
    return LockedModel(
        variants=variants,
        environments=environments,
        name=name if name is not None else draw(model_names()),
        source=draw(source_tables),
        files=files,
        description=draw(st.none() | tricky_text),
        groups=tuple(draw(st.lists(model_names(max_middle=4), max_size=3))),
        optional=draw(st.booleans()),
        loader=draw(st.none() | st.sampled_from(["onnx", "torch", "file"])),
        license=draw(st.none() | tricky_text),
    )


@st.composite
def locks(draw, max_models: int = 4) -> Lock:
    """Lock values in any order (the writer sorts); model names are unique."""
    names = draw(st.lists(model_names(), max_size=max_models, unique=True))
    models = tuple(draw(locked_models(name=name)) for name in names)
    return Lock(manifest_hash="blake3:" + draw(hex64), models=models)


# --------------------------------------------------------------------------
# TOML text from Python data (inline forms only), for manifests a test controls


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def render_manifest(data: dict) -> str:
    """A models.toml for ``data``: [settings] and one [models.NAME] table per model.

    Values that are not tables where a table belongs are written inline
    (``NAME = value``), which is how a user would get them wrong.
    """
    out = []
    for key, value in data.items():
        if key not in ("settings", "models") or not isinstance(value, dict):
            out.append(f"{toml_key(key)} = {toml_value(value)}")
    settings = data.get("settings")
    if isinstance(settings, dict):
        out.append("[settings]")
        out.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in settings.items())
    models = data.get("models")
    if isinstance(models, dict):
        scalars = {name: table for name, table in models.items() if not isinstance(table, dict)}
        if scalars:
            out.append("[models]")
            out.extend(f"{toml_key(name)} = {toml_value(value)}" for name, value in scalars.items())
        for name, table in models.items():
            if isinstance(table, dict):
                out.append("")
                out.append(f"[models.{toml_key(name)}]")
                out.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Manifests: valid ones, and mutations of them

# Files that exist beside the manifest of the fuzzing tests (see test_manifest.py).
ASSET_FILE = "assets/classifier.onnx"
ASSET_DIR = "assets/bundle"

MODEL_KEYS = [
    "url", "filename", "allow-http", "pypi", "file", "files", "path", "hf", "revision",
    "description", "group", "optional", "loader", "license", "sha256", "blake3",
]
_HOSTS = st.one_of(
    st.sampled_from(["example.com", "127.0.0.1", "localhost", "[::1]", "10.1.2.3"]),
    st.sampled_from(["user:pw@example.com", "", "[", "[::1", "]", "exa mple.com", "h:99999", "h:port", "%41.com"]),
)
_SCHEMES = ["https", "http", "ftp", "", "file", "HTTPS"]

url_like = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(_SCHEMES),
    _HOSTS,
    st.sampled_from(["m.onnx", "", "a%2Fb", "..", "%00", "dir/", "x.onnx?token=1", "My%20Model.onnx"]),
)
requirement_like = st.sampled_from(
    ["silero-vad==6.2.3", "silero-vad>=6", "silero-vad", "silero-vad==6.*", "silero-vad[x]==6.2.3", "a==1; python_version>'3'",
     "pkg @ https://h/p.whl", "==1", "a===1", "a==1,==2", "not a requirement!"]
)
path_like = st.sampled_from(
    [ASSET_FILE, ASSET_DIR, "missing.onnx", "../x", "/etc/passwd", "C:\\x", "~/x", "a\\b", "", ".", "assets//classifier.onnx",
     "*.onnx", "assets/bundle/*.onnx", "x" * 300]
)
toml_scalars = st.one_of(
    st.text(max_size=20),
    url_like,
    requirement_like,
    path_like,
    hex64,
    st.integers(),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=5,
)


_LIKELY = {
    "url": url_like,
    "pypi": requirement_like,
    "path": path_like,
    "file": path_like,
    "files": st.lists(path_like, max_size=3),
    "filename": path_like,
    "sha256": st.sampled_from(["", "abc", "sha256:" + "a" * 64, "A" * 64, "g" * 64]),
    "blake3": st.sampled_from(["", "abc", "blake3:" + "a" * 64, "A" * 64, "g" * 64]),
}


def values_for(key: str):
    """Random TOML values, most often ones that look like what ``key`` takes."""
    likely = _LIKELY.get(key)
    if likely is None:
        return toml_values
    return st.one_of(likely, likely, likely, toml_values)


@st.composite
def valid_model_tables(draw) -> dict:
    kind = draw(st.sampled_from(["url", "pypi", "path-file", "path-dir"]))
    if kind == "url":
        table = {"url": "https://example.com/dl/" + draw(st.sampled_from(["m.onnx", "My%20Model.onnx", "w.pth"]))}
        if draw(st.booleans()):
            table["sha256"] = draw(hex64)
    elif kind == "pypi":
        table = {"pypi": "silero-vad==6.2.3"}
        if draw(st.booleans()):
            table["file"] = "silero_vad/data/silero_vad.onnx"
            if draw(st.booleans()):
                table["blake3"] = draw(hex64)
        else:
            table["files"] = ["silero_vad/data/*.onnx"]
    elif kind == "path-file":
        table = {"path": ASSET_FILE}
    else:
        table = {"path": ASSET_DIR, "files": ["*.onnx"]}
    if draw(st.booleans()):
        table["description"] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        table["group"] = draw(st.one_of(model_names(max_middle=3), st.lists(model_names(max_middle=3), max_size=2)))
    if draw(st.booleans()):
        table["optional"] = draw(st.booleans())
    if draw(st.booleans()):
        table["loader"] = draw(st.sampled_from(["onnx", "torch", "file"]))
    return table


@st.composite
def valid_manifests(draw) -> dict:
    data: dict = {}
    if draw(st.booleans()):
        data["settings"] = {"dir": draw(st.sampled_from(["models", "var/models"])), "link": draw(st.sampled_from(["auto", "copy", "hardlink"]))}
    names = draw(st.lists(model_names(max_middle=6), min_size=1, max_size=3, unique=True))
    data["models"] = {name: draw(valid_model_tables()) for name in names}
    return data


BASE_TABLES = {
    "url": {"url": "https://example.com/m.onnx"},
    "pypi": {"pypi": "silero-vad==6.2.3", "file": "silero_vad/data/silero_vad.onnx"},
    "path": {"path": ASSET_FILE},
    "path-dir": {"path": ASSET_DIR, "files": ["*.onnx"]},
}


@st.composite
def one_key_edits(draw) -> dict:
    """A one-model manifest whose table has one key set to a random (often plausible) value."""
    key = draw(st.one_of(st.sampled_from(["url", "pypi", "path", "file", "files", "filename"]), st.sampled_from(MODEL_KEYS)))
    kind = key if key in ("url", "pypi", "path") else draw(st.sampled_from(sorted(BASE_TABLES)))
    table = dict(BASE_TABLES[kind])
    table[key] = draw(values_for(key))
    return {"models": {"m": table}}


@st.composite
def mutated_manifests(draw) -> dict:
    """A valid manifest with one to three random edits to its data."""
    data = draw(valid_manifests())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        models = data.get("models")
        action = draw(st.sampled_from(
            ["set", "set", "set-own", "set-own", "set-own", "delete", "rename", "settings", "top", "replace-model", "replace-models"]
        ))
        if action in ("set", "set-own", "delete", "rename", "replace-model") and isinstance(models, dict) and models:
            name = draw(st.sampled_from(sorted(models)))
            table = models[name]
            if action == "set-own" and isinstance(table, dict) and table:  # a new value for a key it has
                key = draw(st.sampled_from(sorted(table)))
                table[key] = draw(values_for(key))
            elif action in ("set", "set-own") and isinstance(table, dict):
                key = draw(st.one_of(st.sampled_from(MODEL_KEYS + ["urll", "varient", "URL"]), st.text(max_size=8)))
                table[key] = draw(values_for(key))
            elif action == "delete" and isinstance(table, dict) and table:
                del table[draw(st.sampled_from(sorted(table)))]
            elif action == "rename":
                models[draw(st.one_of(st.text(max_size=10), st.sampled_from(["Big Model", "-x", "UPPER", "a..", "ünï", ""])))] = models.pop(name)
            elif action == "replace-model":
                models[name] = draw(toml_scalars)
        elif action == "settings":
            settings = data.setdefault("settings", {})
            if isinstance(settings, dict):
                key = draw(st.one_of(st.sampled_from(["dir", "link", "dirr", "links"]), st.text(max_size=6)))
                settings[key] = draw(st.one_of(
                    st.sampled_from(["models", "../up", "/abs", "", ".", "a//b", "junction", "symlink", "reflink"]), toml_values
                ))
        elif action == "top":
            data[draw(st.one_of(st.sampled_from(["setting", "model", "environments"]), st.text(min_size=1, max_size=6)))] = draw(toml_values)
        elif action == "replace-models":
            data["models"] = draw(toml_scalars)
    return data


# Lines a TOML file is made of, valid and broken, for random "TOML-ish" text.
_TOML_LINES = [
    "[settings]", "[models]", "[models.vad]", "[models.VAD]", "[[models.vad]]", '[models."a b"]', "[models.vad.variant]", "[models",
    'url = "https://example.com/m.onnx"', 'url = "http://example.com/m.onnx"', 'url = "https://[::1/m.onnx"', 'pypi = "silero-vad==6.2.3"',
    'file = "silero_vad/data/silero_vad.onnx"', f'path = "{ASSET_FILE}"', 'path = "/abs"', 'files = ["*.onnx"]', "optional = true",
    'optional = "yes"', "sha256 = 'abc'", 'dir = "../x"', 'link = "junction"', "models.x = { url = 'https://example.com/x' }",
    "x.url = 1", "= 1", 'key = """', '"""', "'''", "key = [", "]", "key = {", "}", "# comment", "", "a = 1979-05-27T07:32:00Z",
    '"\\x" = 1', "'\\u' = 2", "name = 'a'",
]
tomlish_text = st.lists(
    st.one_of(st.sampled_from(_TOML_LINES), st.text(alphabet=string.ascii_letters + "[]{}=\"'.#,-_ \\:/0123456789", max_size=20)),
    max_size=12,
).map("\n".join)
