"""Build-time helpers for PyInstaller: what to leave out of an app, what to bundle in it.

A hook cannot exclude another package's modules, so these are for the app's
``.spec`` file (and ``modelsync pyinstaller-args``, for builds without one)::

    import modelsync.pyinstaller as ms
    a = Analysis(["app.py"], excludes=ms.excludes(), datas=ms.datas(bundle=["vad"]))

Imported at build time only: a frozen app never runs this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

from . import _runtime, lockfile
from .errors import IntegrityError, Mismatch, ModelNotFoundError, NotSyncedError, ProjectNotFoundError
from .loaders import EXTENSIONS
from .lockfile import Lock, LockedModel

BUNDLE_DIR = _runtime.BUNDLE_DIR  # under sys._MEIPASS in the frozen app, where the run time looks
BUNDLE_VERSION = 1

# What the app imports to run a loader's models: excludes() never leaves out what importing them loads.
LOADER_LIBRARIES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime",),
    "torch": ("torch", "safetensors.torch"),
}

# Left out whole when no model of the lock uses the loader.
UNUSED_LOADER_EXCLUDES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime", "onnx"),
    "torch": ("torch", "torchvision", "torchaudio", "torchtext", "torchao", "functorch", "torchgen", "triton", "safetensors"),
}

# Left out of a loader's library that the app keeps: never needed to run a model,
# and what torch's hook would otherwise collect (all of torch's submodules, and
# their imports). Measured on torch 2.13.0 CPU (docs/pyinstaller.md). Nothing is
# trimmed from onnxruntime: the Python side an app collects of it is ~0.1 MB.
TRIMS: dict[str, tuple[str, ...]] = {
    "torch": (
        # torch.compile and torch.export: the compilers and their symbolic maths
        "torch._inductor", "torch._dynamo", "torch._numpy", "triton", "sympy", "mpmath", "networkx",
        # exporters and developer tools (cpp_extension pulls in setuptools)
        "torch.onnx", "onnxscript", "torch.utils.tensorboard", "tensorboard", "torch.utils.benchmark",
        "torch.utils.bottleneck", "torch.utils.cpp_extension", "torch.utils.hipify",
        # distributed training (torch.distributed itself is imported at start-up)
        "torch.distributed.fsdp", "torch.distributed.checkpoint", "torch.distributed.elastic",
        "torch.distributed.pipelining", "torch.distributed._shard", "torch.distributed.debug",
        "torch.distributed.tensor.debug",
        # test suites' tools, reached through torch.testing._internal
        "hypothesis", "pytest", "_pytest", "expecttest",
    ),
}  # fmt: skip


# --------------------------------------------------------------------------
# The project and its lock


def _load_lock(root: Path) -> tuple[Lock, bytes]:
    """The lock and its bytes (the bundle records their sha256)."""
    path = root / _runtime.LOCK_NAME
    text = lockfile.read_text(path)
    if text is None:
        raise ProjectNotFoundError(f"{path} does not exist", hint=f"run `modelsync lock` in {root}")
    return lockfile.loads(text, path.name), text.encode("utf-8")


def needed_loaders(lock: Lock) -> set[str]:
    """The loaders the lock's models need: each model's own, else its files' extensions (as load() decides)."""
    found: set[str] = set()
    for model in lock.models:
        if model.loader is not None:
            found.add(model.loader)
            continue
        for file in model.files:
            loader = EXTENSIONS.get(Path(file.path).suffix.lower())
            if loader is not None:
                found.add(loader)
    return found


# --------------------------------------------------------------------------
# excludes()


def excludes(project: str | os.PathLike[str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Module names for ``Analysis(excludes=...)`` / ``--exclude-module``.

    Libraries of loaders that no model of the lock uses are left out whole
    (no torch model: no torch); the libraries the lock needs are trimmed to
    what running a model takes. ``extra`` adds the app's own exclusions.

    The list is then checked against the installed libraries: a module that a
    kept library imports at start-up is dropped from it, with a warning,
    since leaving it out would crash the app as soon as it imports the library.
    """
    lock, _ = _load_lock(_runtime.find_project(project))
    used = needed_loaders(lock)
    wanted: list[str] = []
    for loader in sorted(UNUSED_LOADER_EXCLUDES):
        wanted += TRIMS.get(loader, ()) if loader in used else UNUSED_LOADER_EXCLUDES[loader]
    wanted += extra
    libraries = [library for loader in sorted(used) for library in LOADER_LIBRARIES.get(loader, ())]
    return validated(list(dict.fromkeys(wanted)), libraries)


def validated(modules: list[str], libraries: Iterable[str]) -> list[str]:
    """``modules`` without those that importing ``libraries`` loads (each warned about).

    Each library is imported by this Python in a fresh process; one that is
    not installed is not checked (PyInstaller cannot bundle it anyway). The
    answers are kept for the process, per Python and library version."""
    imported = _imported_by(tuple(libraries))
    kept = []
    for module in modules:
        users = sorted({lib for name, libs in imported.items() if name == module or name.startswith(module + ".") for lib in libs})
        if users:
            warnings.warn(
                f"not excluding {module!r}: importing {' and '.join(users)} loads it at start-up, "
                "so the app would crash without it",
                stacklevel=3,
            )
        else:
            kept.append(module)
    return kept


# Run in a fresh interpreter; it imports nothing of its own that the library might not.
_PROBE = """
import importlib, sys
library, out = sys.argv[1], sys.argv[2]
try:
    importlib.import_module(library)
    modules = sorted(sys.modules)
except ModuleNotFoundError as error:
    if error.name != library.partition(".")[0]:
        raise
    modules = []  # not installed: nothing to check
with open(out, "w", encoding="utf-8") as handle:
    handle.write("\\n".join(modules))
"""

# (python, PYTHONPATH, library, its version as its file on disk) -> the modules importing it loads
_probed: dict[tuple[str, str, str, tuple[str, int] | None], frozenset[str]] = {}


def _imported_by(libraries: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Every module that importing each library loads -> the libraries that load it."""
    users: dict[str, list[str]] = {}
    for library in libraries:
        for module in _start_up_modules(library):
            users.setdefault(module, []).append(library)
    return {module: tuple(names) for module, names in users.items()}


def _start_up_modules(library: str) -> frozenset[str]:
    """What ``import library`` loads, in a fresh process of this Python (as the app will)."""
    import importlib.util
    import tempfile

    spec = importlib.util.find_spec(library.partition(".")[0])
    version = (spec.origin, os.stat(spec.origin).st_mtime_ns) if spec is not None and spec.origin else None
    key = (sys.executable, os.environ.get("PYTHONPATH", ""), library, version)
    if key not in _probed:
        with tempfile.TemporaryDirectory(prefix="modelsync-probe-") as folder:
            out = Path(folder) / "modules.json"
            command = [sys.executable, "-c", _PROBE, library, str(out)]
            completed = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if completed.returncode != 0:
                tail = "\n".join(completed.stderr.strip().splitlines()[-3:])
                warnings.warn(f"cannot check the exclusions against {library!r}: importing it failed:\n{tail}", stacklevel=4)
                return frozenset()
            _probed[key] = frozenset(out.read_text(encoding="utf-8").split())
    return _probed[key]


# --------------------------------------------------------------------------
# datas()


def datas(project: str | os.PathLike[str] | None = None, bundle: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(source, destination folder)`` pairs for ``Analysis(datas=...)`` / ``--add-data``.

    Always the project's models.lock (as modelsync's hook adds it; this names
    the project explicitly). ``bundle`` names models or groups whose files go
    into the app: those that the last ``modelsync sync`` placed in the view,
    each checked against the lock by blake3 now, plus a ``bundle.json`` that
    tells the frozen app what it holds. A model that is not synced is an error
    naming the command that syncs it.
    """
    root = _runtime.find_project(project)
    lock, lock_bytes = _load_lock(root)
    pairs = [(str(root / _runtime.LOCK_NAME), BUNDLE_DIR)]
    names = _chosen_models(lock, bundle)
    if not names:
        return pairs
    lock_sha256 = hashlib.sha256(lock_bytes).hexdigest()
    state = _synced_state(root, lock_sha256)
    manifest: dict[str, dict] = {}
    for name in names:
        model = lock.model(name)
        assert model is not None
        entry = state.get("models", {}).get(name)
        if entry is None:
            raise NotSyncedError(f"model {name!r} is not synced, so it cannot be bundled", hint=_sync_hint(root, model))
        variant = entry.get("variant")
        files = model.files_of(variant)
        folder = root / state["view"] / name
        for file in files:
            source = folder / file.path
            _verify(source, file, name, root, model)
            pairs.append((str(source), "/".join((BUNDLE_DIR, "models", name, *file.path.split("/")[:-1]))))
        manifest[name] = {
            "variant": variant,
            "single": model.is_single(variant),
            "loader": model.loader,
            "files": {file.path: {"size": file.size, "blake3": file.blake3} for file in files},
        }
    pairs.append((str(_write_bundle_json(root, lock_sha256, manifest)), BUNDLE_DIR))
    return pairs


def _chosen_models(lock: Lock, bundle: Iterable[str]) -> list[str]:
    """Model names, groups expanded, in the lock's order; an unknown name is an error."""
    wanted = set(bundle)
    groups = {group for model in lock.models for group in model.groups}
    names = {model.name for model in lock.models}
    unknown = sorted(wanted - names - groups)
    if unknown:
        known = "models: " + (", ".join(sorted(names)) or "none")
        if groups:
            known += "; groups: " + ", ".join(sorted(groups))
        raise ModelNotFoundError(unknown[0], sorted(names), hint=f"bundle names a model or a group of models.lock ({known})")
    return [model.name for model in lock.models if model.name in wanted or wanted & set(model.groups)]


def _sync_hint(root: Path, model: LockedModel) -> str:
    command = "modelsync sync" + "".join(f" --group {group}" for group in model.groups[:1])
    return f"run `{command}` in {root} before building"


def _synced_state(root: Path, lock_sha256: str) -> dict:
    state = _runtime.read_state(root)
    if state is None:
        raise NotSyncedError(f"the models of {root} are not synced yet, so none can be bundled", hint=f"run `modelsync sync` in {root}")
    if state.get("lock-sha256") != lock_sha256:
        raise NotSyncedError("models.lock changed since the last sync", hint=f"run `modelsync sync` in {root} before building")
    return state


def _verify(path: Path, file: lockfile.LockedFile, model_name: str, root: Path, model: LockedModel) -> None:
    """The view's file has the locked bytes: a bundle never ships an edited or damaged file."""
    import blake3

    try:
        size = path.stat().st_size
    except OSError:
        raise NotSyncedError(f"{path} is missing from the view", hint=_sync_hint(root, model)) from None
    hint = f"the view's file changed since the sync; run `modelsync sync` in {root} to restore it"
    if size != file.size:
        raise IntegrityError(Mismatch("size", str(file.size), str(size)), model=model_name, file=file.path, hint=hint)
    digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
    digest.update_mmap(path)
    found = digest.hexdigest()
    if found != file.blake3:
        raise IntegrityError(Mismatch("blake3", file.blake3, found), model=model_name, file=file.path, hint=hint)


def _write_bundle_json(root: Path, lock_sha256: str, models: dict[str, dict]) -> Path:
    """Write bundle.json where the build can read it, in a folder named by its content:
    two builds of the same project with different bundles never share one."""
    text = json.dumps({"version": BUNDLE_VERSION, "lock-sha256": lock_sha256, "models": models}, indent=2, sort_keys=True) + "\n"
    folder = root / _runtime.STATE_DIR / "pyinstaller" / hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _runtime.BUNDLE_FILE
    temp = folder / f".{_runtime.BUNDLE_FILE}.{os.getpid()}.tmp"
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, target)
    return target


# --------------------------------------------------------------------------
# pyinstaller-args


def command_line_args(project: str | os.PathLike[str] | None = None, bundle: Iterable[str] = ()) -> list[str]:
    """``excludes()`` and ``datas()`` as PyInstaller options, one option and its value per item."""
    args = [f"--exclude-module {shlex.quote(module)}" for module in excludes(project)]
    args += [f"--add-data {shlex.quote(f'{source}:{dest}')}" for source, dest in datas(project, bundle)]
    return args
