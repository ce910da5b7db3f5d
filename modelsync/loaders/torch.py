"""The ``torch`` loader: tensors and modules from torch files, never code from a pickle.

Three formats, told apart by the file itself:

- ``.safetensors``: ``safetensors.torch.load_file``; the format holds tensors only.
- a TorchScript archive (``torch.jit.save``: a zip holding
  ``<name>/constants.pkl`` or ``<name>/code/``): ``torch.jit.load``, whose own
  reader builds TorchScript objects only, no Python objects.
- anything else (``.pt``, ``.pth``, ``.bin``, ``.ckpt``): ``torch.load`` with
  ``weights_only=True``, whose unpickler builds tensors and plain containers.
  A pickle that names any other Python object (a class to build, a function
  such as ``os.system`` to call) is refused before that object is touched:
  unpickling it would run whatever code the file chose. modelsync never loads
  with ``weights_only=False``: it cannot know who made the file.

torch and safetensors are imported when a model is loaded, never before.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

from ..errors import UsageError
from . import LoadError, machine_accelerator

TYPE_CHECKING = False  # not `from typing import ...`: typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

TORCH_HINT = (
    "install torch for your machine first (e.g. `pip install torch==2.13.0`; CUDA builds: "
    "https://pytorch.org/get-started/locally/), then `pip install 'modelsync[torch]'`"
)
SAFE_HINT = (
    "ask for a .safetensors version, or re-save it as one where it was made and is trusted "
    "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors')); "
    "never pass weights_only=False to torch.load for a file you did not make yourself"
)
# How torch's weights-only unpickler words what it stopped at: an import it refused, or an opcode it does not know.
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")
_RESERVED = ("weights_only", "map_location")


class StateDict(dict):
    """A state dict (name -> tensor) that can be weakly referenced, which a plain dict cannot.

    ``load()`` returns the dicts that safetensors and ``torch.load`` give as
    this class so that it can cache them; it is a dict in every other way.
    """

    __slots__ = ("__weakref__",)


def prepare(path: Path, device: str, options: dict[str, Any]) -> tuple[str, Callable[[], Any]]:
    """(the device chosen, a function that loads the file there): load() caches by the former."""
    torch = _import_torch()
    for name in _RESERVED:
        if name in options:
            raise UsageError(
                f"the torch loader does not take {name}=",
                hint="pass device= for where the tensors go; files load with weights_only=True only",
            )
    device = choose_device(torch, device)

    def build() -> Any:
        if path.suffix.lower() == ".safetensors":
            return _load_safetensors(path, device, options)
        if _is_torchscript(path):
            return _load_torchscript(torch, path, device, options)
        return _load_pickle(torch, path, device, options)

    return device, build


def choose_device(torch: Any, device: str) -> str:
    """``device``, checked; for "auto", the accelerator that the machine has and this torch can use."""
    if device == "auto":
        accelerator = machine_accelerator()
        if accelerator in ("cuda", "rocm") and torch.cuda.is_available():  # ROCm builds of torch use torch.cuda
            return "cuda"
        if accelerator == "mps" and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UsageError(f"{device!r} is not a torch device", hint="use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    is_available = getattr(getattr(torch, kind, None), "is_available", None)  # torch.cuda, torch.mps, torch.xpu, ...
    if is_available is not None and not is_available():
        raise UsageError(
            f"device {device!r}: this torch ({torch.__version__}) cannot use a {kind} device here",
            hint="install a CUDA build of torch (https://pytorch.org/get-started/locally/), or pass device='cpu'"
            if kind == "cuda"
            else "pass device='cpu' (or 'auto')",
        )
    return device


def _load_safetensors(path: Path, device: str, options: dict[str, Any]) -> StateDict:
    safetensors_torch = _import_safetensors()
    from safetensors import SafetensorError

    try:
        return StateDict(safetensors_torch.load_file(path, device=device, **options))
    except SafetensorError as error:
        raise _unreadable(path, "safetensors", error) from None


def _load_torchscript(torch: Any, path: Path, device: str, options: dict[str, Any]) -> Any:
    try:
        return torch.jit.load(path, map_location=device, **options)
    except RuntimeError as error:
        raise _unreadable(path, "TorchScript", error) from None


def _load_pickle(torch: Any, path: Path, device: str, options: dict[str, Any]) -> Any:
    """torch.load with weights_only=True; a refused import becomes a LoadError that says why, not torch's advice."""
    try:
        loaded = torch.load(path, map_location=device, weights_only=True, **options)
    except pickle.UnpicklingError as error:
        refused = _GLOBAL.search(str(error))
        if refused:
            raise LoadError(
                f"refused to load {path}: it is a pickle that would import {refused.group(1)} while loading, "
                "and a pickle that imports Python objects can run any code",
                hint=SAFE_HINT,
            ) from None
        reason = _UNPICKLER_REASON.search(str(error))
        stopped = reason.group(1) if reason else "unsupported content"
        raise _unreadable(path, "torch", f"torch's weights-only unpickler stopped: {stopped}") from None
    except (RuntimeError, EOFError) as error:
        raise _unreadable(path, "torch", error) from None
    return StateDict(loaded) if type(loaded) is dict else loaded


def _is_torchscript(path: Path) -> bool:
    """True for a torch.jit.save archive: a torch.save zip has no constants.pkl nor code/."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.partition("/")[2] == "constants.pkl" or name.partition("/")[2].startswith("code/") for name in names)


def _unreadable(path: Path, kind: str, error: Exception | str) -> LoadError:
    """A LoadError for a file that is damaged or not of ``kind``; ``error`` gives the first line of the reason."""
    reason = str(error).strip().partition("\n")[0] or type(error).__name__
    return LoadError(
        f"{path} cannot be loaded as a {kind} file: {reason}",
        hint="it is damaged, of another format than models.toml's loader says, or a pickle holding more than tensors; " + SAFE_HINT,
    )


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError("the torch loader needs torch, which is not installed", hint=TORCH_HINT) from None
    return torch


def _import_safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise UsageError(
            "the torch loader needs safetensors for .safetensors files, and it is not installed",
            hint="pip install 'modelsync[torch]'",
        ) from None
    return safetensors.torch
