"""Read and validate models.toml into frozen dataclasses.

Every problem becomes a ``ManifestError`` naming ``models.toml:LINE``, the key,
what was expected and found, and the fix. Parsing never raises anything else
for bad input: the CLI turns that error into exit code 2 without a traceback.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import _manifestparse, _tomlpos
from ._loopback import is_loopback
from ._safepath import UnsafePathError, safe_relpath
from .errors import ManifestError
from .settings import LINK_MODES, Settings

MANIFEST_NAME = "models.toml"
LOCK_NAME = "models.lock"

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?")
HEX64_RE = re.compile(r"[0-9a-f]{64}")

SOURCE_KEYS = ("url", "hf", "pypi", "path")
LOADERS = ("onnx", "torch", "file")
HF_REPO_TYPES = ("model", "dataset", "space")
_HF_REPO_PART = r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?"
_HF_REPO_RE = re.compile(rf"{_HF_REPO_PART}(?:/{_HF_REPO_PART})?")

# Query keys of signed or tokenised URLs (S3, GCS, Azure SAS, CloudFront, OAuth):
# such a URL expires and is a credential, so it never belongs in a lock.
_SIGNED_QUERY_KEYS = {
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential", "signature", "sig", "token", "access_token", "key-pair-id",
}  # fmt: skip
_SETTINGS_KEYS = {"dir", "link"}
_TOP_KEYS = {"settings", "models", "environments"}
_META_KEYS = {"description", "group", "optional", "loader", "license", "sha256", "blake3"}
_KIND_KEYS = {
    "url": {"url", "filename", "allow-http"},
    "pypi": {"pypi", "file", "files"},
    "path": {"path", "files"},
    "hf": {"hf", "revision", "file", "files", "repo-type"},
}
_ALL_MODEL_KEYS = set().union(*_KIND_KEYS.values()) | _META_KEYS
# A variant sets its own name and marker, and any source key (the model's are defaults).
_VARIANT_KEYS = {"name", "when", "sha256", "blake3"} | set().union(*_KIND_KEYS.values())


@dataclass(frozen=True)
class UrlSource:
    url: str
    filename: str
    allow_http: bool = False


@dataclass(frozen=True)
class PypiSource:
    requirement: str  # as written: "silero-vad==6.2.3"
    name: str  # canonical: "silero-vad"
    version: str
    file: str | None = None
    files: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PathSource:
    path: str  # as written, relative to models.toml, POSIX separators
    files: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HfSource:
    repo: str  # "org/name"
    revision: str = "main"  # branch, tag or 40-hex commit; the lock pins the commit
    repo_type: str = "model"  # model | dataset | space
    file: str | None = None
    files: tuple[str, ...] | None = None


Source = UrlSource | PypiSource | PathSource | HfSource


@dataclass(frozen=True)
class ModelSpec:
    """One resolvable unit: a plain ``[models.NAME]`` table, or one variant of it
    (the model's keys as defaults, the variant's keys on top), validated."""

    name: str
    source: Source
    # What was asked, exactly as the lock records it (the model's `source`):
    # a pin is kept while this stays the same.
    request: dict[str, Any] = field(compare=False, hash=False)
    line: int | None = None
    description: str | None = None
    groups: tuple[str, ...] = ()
    optional: bool = False
    loader: str | None = None
    license: str | None = None
    sha256: str | None = None
    blake3: str | None = None
    variant: str | None = None  # the variant's name; None for a model without variants
    when: str | None = None  # the variant's marker, in canonical form; None: always (the fallback)

    @property
    def kind(self) -> str:
        return {UrlSource: "url", PypiSource: "pypi", PathSource: "path", HfSource: "hf"}[type(self.source)]


@dataclass(frozen=True)
class ManifestModel:
    """A model of models.toml: its metadata and its variants (one, unnamed, without `variant` tables)."""

    name: str
    specs: tuple[ModelSpec, ...]  # in declaration order: the first whose `when` holds wins
    base: dict[str, Any] = field(compare=False, hash=False)  # the model-level source keys as written
    line: int | None = None

    @property
    def has_variants(self) -> bool:
        return self.specs[0].variant is not None

    @property
    def optional(self) -> bool:
        return self.specs[0].optional


@dataclass(frozen=True)
class Manifest:
    path: Path
    settings: Settings
    models: tuple[ManifestModel, ...]  # sorted by name
    hash: str  # "blake3:…" of the parsed content, so comments and layout don't matter
    environments: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)  # name -> typed facts

    @property
    def root(self) -> Path:
        return self.path.parent

    def model(self, name: str) -> ManifestModel | None:
        return next((model for model in self.models if model.name == name), None)

    @property
    def specs(self) -> tuple[ModelSpec, ...]:
        """Every resolvable unit: each plain model and each variant."""
        return tuple(spec for model in self.models for spec in model.specs)


# --------------------------------------------------------------------------


def load(path: Path) -> Manifest:
    """Parse and validate the manifest at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            "no such file", file=str(path), hint="create one with `modelsync init`"
        ) from None
    except UnicodeDecodeError as error:
        raise ManifestError(f"not UTF-8 ({error.reason})", file=str(path), hint="save the file as UTF-8") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Manifest:
    return _Parser(text, path).manifest()


def manifest_hash(data: dict[str, Any]) -> str:
    """blake3 of the lock-relevant content; comments and key order never count."""
    import blake3

    relevant = {"models": data.get("models", {})}
    if "environments" in data:  # only when declared: locks written before environments existed stay fresh
        relevant["environments"] = data["environments"]
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "blake3:" + blake3.blake3(canonical.encode()).hexdigest()


def _type_name(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array", dict: "a table"}.get(
        type(value), type(value).__name__
    )


class _Parser:
    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.display = path.name if path.name == MANIFEST_NAME else str(path)
        self.key_homes: dict[str, tuple[str | int, ...]] = {}

    # -- errors ------------------------------------------------------------

    def error(self, message: str, table: tuple[str | int, ...], key: str | None = None, hint: str | None = None):
        if key is not None and key in self.key_homes:
            table = self.key_homes[key]  # a variant's merged key: point at the table that set it
        line = _tomlpos.locate(self.text, table, key)
        dotted = ".".join(f"[{part}]" if isinstance(part, int) else part for part in table[1:]).replace(".[", "[")
        shown = f"{table[0]}.{dotted}" if dotted else str(table[0]) if table else ""
        if key:
            shown = f"{shown}.{key}" if shown else key
        return ManifestError(message, file=self.display, line=line, key=shown or None, hint=hint)

    def unknown_keys(self, table: dict, allowed: set[str], where: tuple[str, ...], what: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"{what} keys are: " + ", ".join(sorted(allowed))
                raise self.error(f"unknown key {key!r}", where, key, hint)

    def expect(self, value: Any, kind: type, where: tuple[str, ...], key: str) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            wanted = _type_name(kind() if kind is not bool else True)
            raise self.error(f"expected {wanted}, found {_type_name(value)} ({value!r})", where, key)
        return value

    # -- parsing -----------------------------------------------------------

    def manifest(self) -> Manifest:
        try:
            data = _manifestparse.parse(self.text)  # a plain layout, fast; anything else goes to tomllib
            if data is None:
                data = tomllib.loads(self.text)
        except RecursionError:
            raise ManifestError("invalid TOML: nested too deeply", file=self.display, hint="flatten the structure") from None
        except tomllib.TOMLDecodeError as error:
            match = re.search(r"\(at line (\d+), column (\d+)\)", str(error))
            line = int(match.group(1)) if match else None
            message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
            column = f" (column {match.group(2)})" if match else ""
            raise ManifestError(
                f"invalid TOML: {message}{column}", file=self.display, line=line, hint="fix the TOML syntax at that line"
            ) from None
        self.unknown_keys(data, _TOP_KEYS, (), "top-level")
        settings = self.settings(data.get("settings", {}))
        models_table = data.get("models", {})
        if not isinstance(models_table, dict):
            raise self.error("expected a table of models ([models.NAME])", ("models",))
        environments = self.environments(data.get("environments", {}))
        models = tuple(self.model(name, models_table[name]) for name in sorted(models_table))
        return Manifest(self.path, settings, models, manifest_hash(data), environments)

    def environments(self, table: Any) -> dict[str, dict[str, Any]]:
        """[environments]: named machines, each a table of facts (for `lock` and `--env`)."""
        from . import markers

        where = ("environments",)
        if not isinstance(table, dict):
            raise self.error("expected a table of environments", where, hint='e.g. [environments] gpu = { accelerator = "cuda", vram_gib = 24 }')
        environments: dict[str, dict[str, Any]] = {}
        for name, facts in table.items():
            if not NAME_RE.fullmatch(name):
                raise self.error(f"invalid environment name {name!r}: use lowercase letters, digits, '-', '_' and '.'", where, name)
            if not isinstance(facts, dict):
                raise self.error(f"expected a table of facts, found {_type_name(facts)}", where, name, f'e.g. {name} = {{ accelerator = "cpu" }}')
            typed: dict[str, Any] = {}
            for fact, raw in facts.items():
                if fact not in markers.FACT_TYPES:
                    close = difflib.get_close_matches(fact, sorted(markers.FACT_TYPES), n=1)
                    hint = f"did you mean {close[0]!r}?" if close else "facts are: " + ", ".join(sorted(markers.FACT_TYPES))
                    raise self.error(f"unknown fact {fact!r} in environment {name!r}", (*where, name), fact, hint)
                try:
                    typed[fact] = markers.coerce(fact, raw)
                except ValueError as error:
                    raise self.error(f"bad value for {fact!r} in environment {name!r}: {error}", (*where, name), fact) from None
            environments[name] = typed
        return environments

    def settings(self, table: Any) -> Settings:
        where = ("settings",)
        if not isinstance(table, dict):
            raise self.error("expected a table", where)
        self.unknown_keys(table, _SETTINGS_KEYS, where, "[settings]")
        directory = self.expect(table.get("dir", "models"), str, where, "dir")
        try:
            directory = safe_relpath(directory)
        except UnsafePathError as error:
            raise self.error(f"not a folder inside the project: {error}", where, "dir", 'use e.g. dir = "models"') from None
        link = self.expect(table.get("link", "auto"), str, where, "link")
        if link not in LINK_MODES:
            raise self.error(f"unknown link mode {link!r}", where, "link", "use one of: " + ", ".join(LINK_MODES))
        return Settings(dir=directory, link=link)

    def model(self, name: str, table: Any) -> ModelSpec:
        where = ("models", name)
        if not NAME_RE.fullmatch(name):
            suggestion = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:100].rstrip("-._") or "my-model"
            raise self.error(
                f"invalid model name {name!r}: use lowercase letters, digits, '-', '_' and '.'",
                where,
                hint=f"rename it, e.g. [models.{suggestion}]",
            )
        if not isinstance(table, dict):
            raise self.error(f"expected a table, found {_type_name(table)}", where, hint=f'write it as [models.{name}] with e.g. url = "https://…"')
        self.unknown_keys(table, _ALL_MODEL_KEYS | {"variant"}, where, "model")
        line = _tomlpos.locate(self.text, where)
        if "variant" not in table:
            spec = self.spec(name, table, where)
            return ManifestModel(name, (spec,), base=spec.request, line=line)
        raw_variants = table["variant"]
        if not isinstance(raw_variants, list) or not raw_variants or not all(isinstance(v, dict) for v in raw_variants):
            raise self.error(
                "expected variant tables", where, "variant", f'write each as [[models.{name}.variant]] with name = "…" and when = "…"'
            )
        base = {key: value for key, value in table.items() if key != "variant"}
        specs: list[ModelSpec] = []
        for index, variant in enumerate(raw_variants):
            specs.append(self.variant(name, base, variant, index, last=index == len(raw_variants) - 1, taken=specs))
        base_request = {key: base[key] for key in sorted(base) if key in _VARIANT_KEYS}
        return ManifestModel(name, tuple(specs), base=base_request, line=line)

    def variant(
        self, name: str, base: dict, variant: dict, index: int, *, last: bool, taken: list[ModelSpec]
    ) -> ModelSpec:
        """One [[models.NAME.variant]]: its own keys over the model's, validated as one model."""
        from . import markers

        where = ("models", name, "variant", index)
        self.unknown_keys(variant, _VARIANT_KEYS, where, "variant")
        label = self.expect(variant.get("name"), str, where, "name") if "name" in variant else None
        if label is None:
            raise self.error("a variant needs a name", where, None, f'add name = "…" (e.g. "fp16-gpu") to variant {index + 1}')
        if not NAME_RE.fullmatch(label):
            raise self.error(f"invalid variant name {label!r}: use lowercase letters, digits, '-', '_' and '.'", where, "name")
        if any(spec.variant == label for spec in taken):
            raise self.error(f"two variants are named {label!r}", where, "name", "give each variant its own name")
        when = None
        if "when" in variant:
            text = self.expect(variant["when"], str, where, "when")
            try:
                when = str(markers.parse(text))
            except markers.MarkerError as error:
                hint = error.hint or "see docs/hardware.md for the facts and the grammar"
                raise self.error(f"invalid marker: {error.located()}", where, "when", hint) from None
        elif not last:
            raise self.error(
                f"variant {label!r} has no `when`, so it always matches, but it is not the last",
                where,
                "name",
                "only the last variant may omit `when` (it is the fallback); add a `when` or move it to the end",
            )
        merged = {**base, **{key: value for key, value in variant.items() if key not in ("name", "when")}}
        self.key_homes = {key: ("models", name) for key in base} | {key: where for key in variant}
        try:
            spec = self.spec(name, merged, where)
        finally:
            self.key_homes = {}
        return replace(spec, variant=label, when=when)

    def spec(self, name: str, table: dict, where: tuple[str | int, ...]) -> ModelSpec:
        """Validate one resolvable unit (a plain model, or a variant merged over its model)."""
        kinds = [key for key in SOURCE_KEYS if key in table]
        if len(kinds) != 1:
            found = " and ".join(repr(kind) for kind in kinds) if kinds else "none"
            raise self.error(
                f"a model needs exactly one source key (url, hf, pypi or path); found {found}",
                where,
                kinds[1] if len(kinds) > 1 else None,
                "keep one source per model; declare another model for the other file" if kinds else 'add e.g. url = "https://…/model.onnx"',
            )
        kind = kinds[0]
        for key in table:
            if key not in _KIND_KEYS[kind] and key not in _META_KEYS:
                raise self.error(f"{key!r} does not apply to a {kind!r} model", where, key, f"{kind} models take: " + ", ".join(sorted(_KIND_KEYS[kind])))
        source = getattr(self, f"{kind}_source")(table, where)
        request = {key: table[key] for key in sorted(_KIND_KEYS[kind] | {"sha256", "blake3"}) if key in table}
        if isinstance(source, PathSource):
            request["path"] = source.path  # POSIX separators, so the lock is the same on every OS
        if isinstance(source, HfSource):
            request["revision"] = source.revision  # the default shows in the lock too
        meta = self.metadata(table, where, source)
        return ModelSpec(name=name, source=source, request=request, line=_tomlpos.locate(self.text, where), **meta)

    def metadata(self, table: dict, where: tuple[str, ...], source: Source) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        for key in ("description", "license"):
            if key in table:
                meta[key] = self.expect(table[key], str, where, key)
        if "optional" in table:
            meta["optional"] = self.expect(table["optional"], bool, where, "optional")
        if "loader" in table:
            loader = self.expect(table["loader"], str, where, "loader")
            if loader not in LOADERS:
                raise self.error(f"unknown loader {loader!r}", where, "loader", "use one of: " + ", ".join(LOADERS))
            meta["loader"] = loader
        if "group" in table:
            groups = table["group"]
            groups = [groups] if isinstance(groups, str) else groups
            if not isinstance(groups, list) or not all(isinstance(g, str) and NAME_RE.fullmatch(g) for g in groups):
                raise self.error(f"expected a group name or a list of them, found {table['group']!r}", where, "group", 'e.g. group = "asr"')
            meta["groups"] = tuple(groups)
        for algorithm in ("sha256", "blake3"):
            if algorithm in table:
                digest = self.expect(table[algorithm], str, where, algorithm).lower().removeprefix(f"{algorithm}:")
                if not HEX64_RE.fullmatch(digest):
                    raise self.error(f"expected 64 hex digits, found {table[algorithm]!r}", where, algorithm)
                if not self.single_file(source):
                    raise self.error(f"{algorithm} pins one file, but this model has several", where, algorithm, "use `file` (one file) or drop the digest: the lock pins every file")
                meta[algorithm] = digest
        return meta

    @staticmethod
    def single_file(source: Source) -> bool:
        if isinstance(source, UrlSource):
            return True
        if isinstance(source, (PypiSource, HfSource)):
            return source.file is not None
        return source.files is None  # a path to one file (a folder is checked at lock)

    # -- sources -----------------------------------------------------------

    def url_source(self, table: dict, where: tuple[str, ...]) -> UrlSource:
        url = self.expect(table["url"], str, where, "url")
        allow_http = self.expect(table.get("allow-http", False), bool, where, "allow-http")
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
            query = parse_qsl(parts.query)
        except ValueError as error:
            raise self.error(f"not a valid URL ({error}): {url!r}", where, "url") from None
        if parts.scheme not in ("https", "http") or not hostname:
            raise self.error(f"expected an https:// URL, found {url!r}", where, "url")
        url = parts._replace(scheme=parts.scheme.lower()).geturl()  # "HTTPS://" is "https://"
        if parts.username or parts.password:
            raise self.error(
                "credentials in a URL would end up in models.lock", where, "url", "remove them and put them in ~/.netrc instead"
            )
        signed = sorted(_SIGNED_QUERY_KEYS & {key.lower() for key, _ in query})
        if signed:
            raise self.error(
                f"the URL carries a signature or token ({', '.join(signed)}); it would expire and leak into models.lock",
                where,
                "url",
                "use the file's permanent URL; put credentials in ~/.netrc",
            )
        if parts.scheme == "http" and not allow_http and not is_loopback(hostname):
            raise self.error(
                f"plain HTTP is not allowed for {hostname!r}", where, "url", "use https://, or set allow-http = true if you trust the network"
            )
        if "filename" in table:
            filename = self.expect(table["filename"], str, where, "filename")
            key = "filename"
        else:
            filename = unquote(PurePosixPath(parts.path).name)
            key = "url"
        try:
            if "/" in filename:
                raise UnsafePathError(f"{filename!r} contains '/'")
            filename = safe_relpath(filename)
        except UnsafePathError as error:
            raise self.error(f"cannot use the file name: {error}", where, key, 'set filename = "model.onnx"') from None
        return UrlSource(url=url, filename=filename, allow_http=allow_http)

    def pypi_source(self, table: dict, where: tuple[str, ...]) -> PypiSource:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name

        text = self.expect(table["pypi"], str, where, "pypi")
        hint = 'pin one version, e.g. pypi = "silero-vad==6.2.3"'
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise self.error(f"not a requirement: {error}", where, "pypi", hint) from None
        specs = list(requirement.specifier)
        if requirement.extras or requirement.marker or requirement.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise self.error(f"expected exactly NAME==VERSION, found {text!r}", where, "pypi", hint)
        file, files = self.member_selection(table, where, required=True)
        return PypiSource(
            requirement=text, name=canonicalize_name(requirement.name), version=specs[0].version, file=file, files=files
        )

    def hf_source(self, table: dict, where: tuple[str, ...]) -> HfSource:
        repo = self.expect(table["hf"], str, where, "hf")
        if not _HF_REPO_RE.fullmatch(repo) or ".." in repo or "--" in repo or repo.endswith(".git"):
            raise self.error(
                f"expected a repository id like 'org/name', found {repo!r}", where, "hf", 'e.g. hf = "sentence-transformers/all-MiniLM-L6-v2"'
            )
        revision = self.expect(table.get("revision", "main"), str, where, "revision")
        if not revision.strip() or re.search(r"[\x00-\x1f\x7f]", revision):
            raise self.error(f"expected a branch, tag or commit, found {revision!r}", where, "revision", 'e.g. revision = "main"')
        repo_type = self.expect(table.get("repo-type", "model"), str, where, "repo-type")
        if repo_type not in HF_REPO_TYPES:
            raise self.error(f"unknown repository type {repo_type!r}", where, "repo-type", "use one of: " + ", ".join(HF_REPO_TYPES))
        file, files = self.member_selection(table, where, required=True)
        return HfSource(repo=repo, revision=revision, repo_type=repo_type, file=file, files=files)

    def path_source(self, table: dict, where: tuple[str, ...]) -> PathSource:
        text = self.expect(table["path"], str, where, "path")
        posix = text.replace("\\", "/")
        if posix.strip().rstrip("/") in ("", "."):
            raise self.error(
                "the path names the project folder itself", where, "path", 'point it at a file or a folder inside, e.g. path = "assets/model.onnx"'
            )
        if PurePosixPath(posix).is_absolute() or re.match(r"^[A-Za-z]:", posix) or posix.startswith("~"):
            raise self.error(
                f"{text!r} is absolute; the lock never records absolute paths", where, "path", "write it relative to models.toml"
            )
        local = self.path.parent / posix
        try:
            exists = local.exists()
        except (OSError, ValueError) as error:  # a name too long, a NUL byte, ...
            raise self.error(f"cannot use the path {text!r}: {error}", where, "path") from None
        if not exists:
            raise self.error(f"local file {text!r} does not exist (looked for {local})", where, "path", "fix the path (it is relative to models.toml) or create the file")
        _, files = self.member_selection(table, where, required=False, allow_file=False)
        if files is not None and not local.is_dir():  # exists() succeeded: is_dir() will too
            raise self.error("`files` selects files in a folder, but path is a file", where, "files", "drop `files`, or point path at a folder")
        return PathSource(path=posix, files=files)

    def member_selection(
        self, table: dict, where: tuple[str, ...], *, required: bool, allow_file: bool = True
    ) -> tuple[str | None, tuple[str, ...] | None]:
        if "file" in table and "files" in table:
            raise self.error("give either `file` or `files`, not both", where, "files")
        if "file" in table and allow_file:
            file = self.expect(table["file"], str, where, "file")
            try:
                return safe_relpath(file), None
            except UnsafePathError as error:
                raise self.error(f"unsafe member path: {error}", where, "file") from None
        if "files" in table:
            files = table["files"]
            if not isinstance(files, list) or not files or not all(isinstance(f, str) and f.strip() for f in files):
                raise self.error(f"expected a non-empty array of paths or globs, found {files!r}", where, "files", 'e.g. files = ["models/*.onnx"]')
            return None, tuple(files)
        if required:
            raise self.error(
                "which file? this source needs `file` or `files`", where, None, 'add e.g. file = "data/model.onnx", or files = ["*"] for all'
            )
        return None, None


def load_settings(path: Path) -> Settings:
    """Only the [settings] table (for `sync --frozen`, which does not read the models)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    parser = _Parser(text, path)
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return parser.manifest().settings  # raises the located syntax error
    return parser.settings(data.get("settings", {}))
