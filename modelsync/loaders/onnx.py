"""The ``onnx`` loader: an onnxruntime InferenceSession on the providers that fit.

The providers must suit two things: the machine (its accelerator, from the
hardware facts, so ``MODELSYNC_OVERRIDE_ACCELERATOR`` applies here as it does
to variants) and the installed onnxruntime (the providers it was built with).
Asking onnxruntime for a provider it lacks only earns a warning and a silent
fall back to the CPU, so ``device="auto"`` asks only for what is there, and an
explicit device that is not there is an error naming the package that has it.
The CPU comes last in every choice: it runs what an accelerator cannot.

onnxruntime is imported when a model is loaded, never before.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from . import LoadError, machine_accelerator

TYPE_CHECKING = False  # not `from typing import ...`: typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Provider = str | tuple[str, dict[str, Any]]  # a name, or (name, its options)

CPU = "CPUExecutionProvider"

# device type (and hardware fact `accelerator`) -> its provider, and how to get an onnxruntime that has it
ACCELERATED = {
    "cuda": ("CUDAExecutionProvider", "pip uninstall onnxruntime && pip install onnxruntime-gpu"),
    "rocm": ("ROCMExecutionProvider", "install an onnxruntime built with ROCm in place of onnxruntime"),
    "mps": ("CoreMLExecutionProvider", "CoreML is in onnxruntime's macOS wheels; elsewhere pass device='cpu'"),
}
_NUMBERED = ("cuda", "rocm")  # devices that take an index: "cuda:1"
DEVICES_HINT = "use 'auto', 'cpu', 'cuda', 'cuda:1', 'rocm', 'rocm:1' or 'mps' (CoreML), or pass providers=[...]"


def prepare(path: Path, device: str, options: dict[str, Any]) -> tuple[list[Provider], Callable[[], Any]]:
    """(the providers chosen, a function that opens the session): load() caches by the former."""
    onnxruntime = _import()
    if "providers" in options:
        if device != "auto":
            raise UsageError("pass device= or providers=, not both", hint="providers=[...] is passed to onnxruntime as it is")
        providers = list(options["providers"])
    elif "provider_options" in options:
        raise UsageError(
            "provider_options= needs providers=: one options dict per provider, in the same order",
            hint="e.g. providers=['CUDAExecutionProvider', 'CPUExecutionProvider'], provider_options=[{'device_id': 1}, {}]",
        )
    else:
        providers = choose_providers(device, list(onnxruntime.get_available_providers()))
    rest = {key: value for key, value in options.items() if key != "providers"}

    def build() -> Any:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        try:
            return onnxruntime.InferenceSession(str(path), providers=providers, **rest)
        except (
            ort_errors.InvalidProtobuf,
            ort_errors.InvalidArgument,
            ort_errors.InvalidGraph,
            ort_errors.NoSuchFile,
            ort_errors.NotImplemented,
            ort_errors.Fail,
        ) as error:
            raise LoadError(
                f"onnxruntime {onnxruntime.__version__} cannot open {path}: {error}",
                hint="check that it is an ONNX model, and that its opset is one this onnxruntime supports (pip install -U onnxruntime)",
            ) from None

    return providers, build


def choose_providers(device: str, available: list[str]) -> list[Provider]:
    """The providers for ``device``, from those the installed onnxruntime has."""
    if device == "auto":
        provider = ACCELERATED.get(machine_accelerator(), ("",))[0]
        return [provider, CPU] if provider in available else [CPU]
    kind, colon, index = device.partition(":")
    if kind == "cpu" and not colon:
        return [CPU]
    if kind not in ACCELERATED or (colon and (kind not in _NUMBERED or not index.isdigit())):
        raise UsageError(f"the onnx loader does not know device {device!r}", hint=DEVICES_HINT)
    provider, remedy = ACCELERATED[kind]
    if provider not in available:
        raise UsageError(
            f"device {device!r} needs onnxruntime's {provider}, and the installed onnxruntime has only: {', '.join(available)}",
            hint=remedy,
        )
    return [(provider, {"device_id": int(index)}) if colon else provider, CPU]


def _import() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(
            "the onnx loader needs onnxruntime, which is not installed",
            hint="pip install 'modelsync[onnx]' (for NVIDIA GPUs, then: pip uninstall onnxruntime && pip install onnxruntime-gpu)",
        ) from None
    return onnxruntime
