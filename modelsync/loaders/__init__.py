"""``modelsync.load()``: open a synced model with the library it is meant for.

The model's ``loader`` (models.toml's ``loader`` key, recorded in the state by
the last sync) names the library: ``onnx`` gives an onnxruntime
InferenceSession (``onnx.py``), ``torch`` the tensors or module of a torch
file (``torch.py``), ``file`` the path itself. This module decides which file,
which loader, and whether an object loaded before can be handed out again;
the loaders import their library only when they run, so importing this
package costs the standard library only.

Loaded objects are cached per process by weak reference: an application that
calls ``load("vad")`` in several places shares one session, and the session
is freed as soon as nobody holds it, without an explicit close.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path

from .. import _env, _runtime
from ..errors import OperationalError, UsageError

TYPE_CHECKING = False  # not `from typing import ...`: typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from typing import Any

__all__ = ["LOADERS", "LoadError", "load"]

LOADERS = ("onnx", "torch", "file")
# What a file's extension says about its loader, when models.toml does not say.
EXTENSIONS = {
    ".onnx": "onnx",
    ".safetensors": "torch",
    ".pt": "torch",
    ".pth": "torch",
    ".ckpt": "torch",
    ".bin": "torch",
}


class LoadError(OperationalError):
    """A synced file that its loader cannot open: damaged, of another format, or refused as unsafe."""


def load(
    name: str,
    *,
    file: str | None = None,
    project: str | os.PathLike[str] | None = None,
    device: str = "auto",
    loader: str | None = None,
    **options: Any,
) -> Any:
    """A synced model, opened: an ONNX session, torch weights or module, or its path.

    The loader is ``loader``, else the model's ``loader`` in models.toml, else
    the file's extension (``.onnx``: onnx; ``.safetensors``, ``.pt``,
    ``.pth``, ``.ckpt``, ``.bin``: torch; anything else, and a folder: file).

    - ``onnx``: an ``onnxruntime.InferenceSession``. ``device="auto"`` picks
      the execution providers that both this machine's accelerator and the
      installed onnxruntime support, the CPU last; ``"cpu"``, ``"cuda"``,
      ``"cuda:1"``, ``"rocm"``, ``"mps"`` (CoreML) ask for one;
      ``providers=[...]`` is passed as it is. Other options (``sess_options``,
      ``provider_options`` with ``providers``) go to InferenceSession.
    - ``torch``: ``.safetensors`` files and torch pickles give their tensors
      (a plain dict comes back as ``StateDict``, a dict that can be weakly
      referenced), TorchScript archives a ``ScriptModule``, on ``device``
      (``"auto"``: CUDA, else MPS, else the CPU). Pickles load with
      ``weights_only=True``; one that would run code is refused (``LoadError``).
    - ``file``: the ``Path``, as ``modelsync.path()`` gives it.

    For a multi-file model, ``file`` picks the file; without it, the onnx and
    torch loaders take the model's only file of their kind.

    The same (file, loader, device, options) gives the same object for as long
    as someone holds it; it is freed when nobody does. Calls whose options
    hold an object (a ``SessionOptions``, which can change after the call) are
    not cached, nor are results that cannot be weakly referenced (a list).

    Raises ``UsageError`` for a bad argument or a missing library (the hint
    names the package), ``LoadError`` for a file the loader cannot open, and
    what ``modelsync.path()`` raises for a model that is not synced.
    """
    target = _locate(name, file, project)
    chosen = loader or _declared_loader(name, project) or (EXTENSIONS.get(target.suffix.lower(), "file") if target.is_file() else "file")
    if chosen not in LOADERS:
        raise UsageError(f"unknown loader {chosen!r}", hint="use one of: " + ", ".join(LOADERS))
    if chosen == "file":
        if device != "auto" or options:
            raise UsageError(
                f"model {name!r} loads as a plain path: device= and options do not apply",
                hint='set `loader = "onnx"` or `"torch"` for it in models.toml, or pass loader=',
            )
        return target
    if target.is_dir():
        target = _pick_file(name, target, chosen)
    if chosen == "onnx":
        from . import onnx as backend
    else:
        from . import torch as backend  # type: ignore[no-redef]
    settled, build = backend.prepare(target, str(device), options)
    try:
        key = _freeze((chosen, str(target), _runtime._signature(target), settled, options))
    except TypeError:  # an option compared by identity: build a fresh object
        return build()
    return _cache.get(key, build)


def _locate(name: str, file: str | None, project: str | os.PathLike[str] | None) -> Path:
    """The model's file or folder, downloaded on first use: the one place that
    asks modelsync where a model is."""
    from .. import ensure

    return ensure(name, file, project=project)


def _declared_loader(name: str, project: str | os.PathLike[str] | None) -> str | None:
    """The ``loader`` models.toml gives the model, as the last sync (or a frozen app's bundle) recorded it."""
    return _runtime.entry(name, project).get("loader")


_probed: list[object] = []  # the accelerator the probes found: the machine does not change while the process runs


def machine_accelerator() -> object:
    """This machine's ``accelerator`` fact: "cuda", "rocm", "mps" or "cpu".

    MODELSYNC_OVERRIDE_ACCELERATOR is read on every call, as for variants; the
    probes (NVML, nvidia-smi, ...) run once per process, not on every load().
    """
    from ..hardware import detect

    if _env.get(_env.OVERRIDE_PREFIX + "ACCELERATOR") is not None:
        return detect(need={"accelerator"}).get("accelerator")  # the override: nothing is probed
    if not _probed:
        _probed.append(detect(need={"accelerator"}).get("accelerator"))
    return _probed[0]


def _pick_file(name: str, folder: Path, loader: str) -> Path:
    """The only file of the loader's kind in a multi-file model's folder."""
    suffixes = sorted(suffix for suffix, kind in EXTENSIONS.items() if kind == loader)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    matching = [path for path in files if path.suffix.lower() in suffixes]
    if len(matching) == 1:
        return matching[0]
    shown = matching or files
    listed = ", ".join(path.relative_to(folder).as_posix() for path in shown[:10]) + (", ..." if len(shown) > 10 else "")
    if not matching:
        raise UsageError(
            f"model {name!r} has no {' / '.join(suffixes)} file for the {loader} loader",
            hint=f"its files: {listed}; pass file= (and loader=) to open one of them",
        )
    raise UsageError(f"model {name!r} has {len(matching)} files for the {loader} loader", hint=f"pick one with file=: {listed}")


_PLAIN = (str, bytes, int, float, bool, type(None))


def _freeze(value: Any) -> Hashable:
    """A hashable key equal for equal option values; TypeError for any other object.

    Types are part of the key (``1``, ``1.0`` and ``True`` differ). Other
    objects would have to be keyed by identity, and a mutable one (a
    SessionOptions) could be changed between two calls that then share a
    session built with the old settings.
    """
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_freeze(item) for item in value))
    if isinstance(value, dict):
        return (dict, frozenset((_freeze(key), _freeze(item)) for key, item in value.items()))
    raise TypeError(f"{type(value).__name__} is not a plain value")


class _Gate:
    """The lock of one key, and how many callers use it (it is dropped at zero)."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class _WeakCache:
    """Objects by key while someone else holds them; one build per key at a time.

    Concurrent first calls for a key wait for one build instead of each
    loading the model; calls for other keys do not wait. A result that cannot
    be weakly referenced is returned without being kept.
    """

    def __init__(self) -> None:
        self._objects: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()
        self._gates: dict[Hashable, _Gate] = {}

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        found = self._objects.get(key)
        if found is not None:
            return found
        with self._guard:
            gate = self._gates.setdefault(key, _Gate())
            gate.users += 1
        try:
            with gate.lock:
                found = self._objects.get(key)
                if found is None:
                    found = build()
                    try:
                        with self._guard:
                            self._objects[key] = found
                    except TypeError:  # not weakly referenceable: the caller gets it uncached
                        pass
                return found
        finally:
            with self._guard:
                gate.users -= 1
                if not gate.users:
                    del self._gates[key]


_cache = _WeakCache()
