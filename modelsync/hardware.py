"""Facts about this machine, for the `when` markers of model variants.

    >>> facts = detect()                  # on a machine without a GPU
    >>> facts["accelerator"], facts.fact("accelerator").source
    ('cpu', 'default')

Where facts come from, first match wins:

1. a named environment from models.toml (``--env NAME`` / MODELSYNC_ENV,
   resolved by the caller): its facts *are* the machine, nothing is probed;
2. ``MODELSYNC_OVERRIDE_<FACT>`` variables, over anything;
3. probes: NVML (by ctypes), then ``nvidia-smi``, then AMD through sysfs, then
   Apple Silicon through sysctl, else ``accelerator = "cpu"``; /proc/cpuinfo,
   /proc/meminfo bounded by the cgroup limit, the platform module;
   onnxruntime only when ``ort_providers`` is needed.

Standard library and ctypes only. A probe that fails (no library, bad output,
a timeout, no permission) falls through to the next one silently (logged at
debug level): ``detect()`` never raises because of the machine. Bad overrides
or environments are the user's input and raise ``MarkerError``.
Every path and command a probe reads is in ``Probes``, so tests can fake them.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from . import _env
from .markers import FACT_TYPES, MarkerError, Version, coerce

__all__ = ["Fact", "Facts", "Probes", "detect"]

_log = logging.getLogger(__name__)

GPU_FACTS = frozenset({"accelerator", "cuda", "cuda_arch", "vram_gib", "gpu_count", "gpu_name"})
# ort_providers only on request: importing onnxruntime takes half a second.
DEFAULT_FACTS = frozenset(FACT_TYPES) - {"ort_providers"}
_GIB = 1 << 30
_MIB = 1 << 20


@dataclass(frozen=True)
class Fact:
    """One fact and where it came from: "nvml", "/proc/cpuinfo", "override:MODELSYNC_OVERRIDE_VRAM_GIB", ..."""

    name: str
    value: object
    source: str


class Facts(Mapping[str, object]):
    """The facts known for a machine: ``facts["vram_gib"]`` is the typed value, ``facts.fact(name)`` the Fact."""

    def __init__(self, facts: Iterable[Fact] = ()) -> None:
        known = {fact.name: fact for fact in facts}
        self._facts = {name: known[name] for name in FACT_TYPES if name in known}

    def __getitem__(self, name: str) -> object:
        return self._facts[name].value

    def __iter__(self) -> Iterator[str]:
        return iter(self._facts)

    def __len__(self) -> int:
        return len(self._facts)

    def fact(self, name: str) -> Fact | None:
        return self._facts.get(name)

    def to_json(self) -> dict[str, dict[str, object]]:
        """``{name: {"value": ..., "source": ...}}``; versions as strings, sets as sorted lists."""
        return {name: {"value": _jsonable(fact.value), "source": fact.source} for name, fact in self._facts.items()}

    def __repr__(self) -> str:
        return "Facts(" + ", ".join(f"{name}={_jsonable(fact.value)!r}" for name, fact in self._facts.items()) + ")"


def _jsonable(value: object) -> object:
    if isinstance(value, Version):
        return str(value)
    if isinstance(value, frozenset):
        return sorted(value)
    return value


# --------------------------------------------------------------------------
# What the probes read, with the real machine as the default


def _sysctlbyname(name: str) -> bytes | None:
    """The raw bytes of a macOS/BSD sysctl, or None (also on systems without sysctlbyname)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        function = libc.sysctlbyname
    except (OSError, AttributeError, TypeError):
        return None
    size = ctypes.c_size_t(0)
    if function(name.encode(), None, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0 or not size.value:
        return None
    buffer = ctypes.create_string_buffer(size.value)
    if function(name.encode(), buffer, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
        return None
    return buffer.raw[: size.value]


def _onnxruntime_providers() -> list[str]:
    import onnxruntime  # only here: it takes a noticeable time to import

    return list(onnxruntime.get_available_providers())


_DEFAULT_NVML = "nvml.dll" if sys.platform == "win32" else None if sys.platform == "darwin" else "libnvidia-ml.so.1"


@dataclass(frozen=True)
class Probes:
    """Everything the probes read; tests replace parts of it.

    ``root`` prefixes /proc and /sys paths. ``nvml_library`` is passed to
    ctypes.CDLL (None: skip NVML); ``nvidia_smi`` is looked up on PATH at
    call time (None: skip). The callables stand for ``platform.system``,
    ``platform.machine``, sysctlbyname and onnxruntime's provider list.
    """

    root: str = "/"
    nvml_library: str | None = _DEFAULT_NVML
    nvidia_smi: str | None = "nvidia-smi"
    smi_timeout: float = 5.0
    system: Callable[[], str] = platform.system
    machine: Callable[[], str] = platform.machine
    sysctl: Callable[[str], bytes | None] = _sysctlbyname
    ort_providers: Callable[[], Iterable[str]] = _onnxruntime_providers

    def path(self, absolute: str) -> str:
        return os.path.join(self.root, absolute.lstrip("/"))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except (OSError, ValueError):
        return None


def _gib(size_bytes: float) -> float:
    # One decimal: a "24 GB" card that reports 24564 MiB reads as 24.0 and passes `vram_gib >= 24`.
    return round(size_bytes / _GIB, 1)


def _sysctl_int(raw: bytes | None) -> int | None:
    return int.from_bytes(raw, sys.byteorder) if raw and len(raw) in (1, 2, 4, 8) else None


def _sysctl_text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip() or None


# --------------------------------------------------------------------------
# GPUs: NVML, nvidia-smi, AMD sysfs, Apple Silicon, else the CPU


@dataclass(frozen=True)
class _Gpu:
    name: str | None
    memory: int | None  # bytes
    capability: str | None  # "8.6"


def _gpu_facts(accelerator: str, gpus: list[_Gpu], count: int, cuda: str | None, source: str) -> list[Fact]:
    best = max(gpus, key=lambda gpu: gpu.memory or 0)
    facts = [Fact("accelerator", accelerator, source), Fact("gpu_count", count, source)]
    if cuda:
        facts.append(Fact("cuda", cuda, source))
    if best.memory:
        facts.append(Fact("vram_gib", _gib(best.memory), source))
    if best.name:
        facts.append(Fact("gpu_name", best.name, source))
    if best.capability:
        facts.append(Fact("cuda_arch", best.capability, source))
    return facts


def _nvml(probes: Probes) -> list[Fact] | None:
    if not probes.nvml_library:
        return None
    import ctypes

    try:
        lib = ctypes.CDLL(probes.nvml_library)
    except OSError:
        return None

    def function(*names: str):  # the _v2 entry points, or the old ones on old drivers
        for name in names:
            found = getattr(lib, name, None)
            if found is not None:
                found.restype = ctypes.c_int
                return found
        raise AttributeError(names[0])

    if function("nvmlInit_v2", "nvmlInit")() != 0:
        return None
    try:
        count = ctypes.c_uint(0)
        if function("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount")(ctypes.byref(count)) != 0 or not count.value:
            return None
        get_handle = function("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex")
        get_handle.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
        gpus = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if get_handle(index, ctypes.byref(handle)) == 0:
                gpus.append(_nvml_device(function, handle))
        if not gpus:
            return None
        cuda = None
        version = ctypes.c_int(0)
        try:
            get_version = function("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")
            if get_version(ctypes.byref(version)) == 0 and version.value > 0:
                cuda = f"{version.value // 1000}.{version.value % 1000 // 10}"  # 12040 -> 12.4, 12100 -> 12.10
        except AttributeError:
            pass
        return _gpu_facts("cuda", gpus, count.value, cuda, "nvml")
    finally:
        try:
            function("nvmlShutdown")()
        except AttributeError:
            pass


def _nvml_device(function, handle) -> _Gpu:
    import ctypes

    class Memory(ctypes.Structure):  # nvmlMemory_t
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]

    def call(names: tuple[str, ...], *args) -> bool:
        try:
            return function(*names)(handle, *args) == 0
        except AttributeError:
            return False

    buffer = ctypes.create_string_buffer(96)
    name = (
        buffer.value.decode("utf-8", "replace").strip()
        if call(("nvmlDeviceGetName",), buffer, ctypes.c_uint(96))
        else None
    )
    memory = Memory()
    total = memory.total if call(("nvmlDeviceGetMemoryInfo",), ctypes.byref(memory)) else None
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    capability = (
        f"{major.value}.{minor.value}"
        if call(("nvmlDeviceGetCudaComputeCapability",), ctypes.byref(major), ctypes.byref(minor))
        else None
    )
    return _Gpu(name or None, total or None, capability)


def _run(command: list[str], deadline: float) -> str | None:
    """stdout of a command that exits 0, else None; raises TimeoutExpired past the deadline."""
    import subprocess

    result = subprocess.run(
        command,
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=max(deadline - time.monotonic(), 0.01),
        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
    )
    return result.stdout if result.returncode == 0 else None


_SMI_CUDA = re.compile(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)+)")


def _nvidia_smi(probes: Probes) -> list[Fact] | None:
    if not probes.nvidia_smi:
        return None
    executable = shutil.which(probes.nvidia_smi)
    if executable is None:
        return None
    deadline = time.monotonic() + probes.smi_timeout  # one budget for every call
    query = [executable, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"]
    output = _run(query, deadline)
    if output is None:  # drivers before 510 do not know compute_cap
        query[1] = "--query-gpu=name,memory.total"
        output = _run(query, deadline)
    gpus = _parse_smi(output or "")
    if not gpus:
        return None
    match = _SMI_CUDA.search(_run([executable], deadline) or "")
    return _gpu_facts("cuda", gpus, len(gpus), match.group(1) if match else None, "nvidia-smi")


def _parse_smi(output: str) -> list[_Gpu]:
    gpus = []
    for line in output.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 2 or not fields[0]:
            continue
        try:
            memory = int(float(fields[1]) * _MIB)
        except (ValueError, OverflowError):
            continue  # "[N/A]", an error message, garbage
        capability = fields[2] if len(fields) > 2 and re.fullmatch(r"[0-9]+\.[0-9]+", fields[2]) else None
        gpus.append(_Gpu(fields[0], memory, capability))
    return gpus


def _amd_sysfs(probes: Probes) -> list[Fact] | None:
    drm = probes.path("/sys/class/drm")
    try:
        entries = sorted(os.listdir(drm))
    except OSError:
        return None
    found: list[tuple[str, _Gpu]] = []
    for entry in entries:
        if not re.fullmatch(r"card[0-9]+", entry):  # not the connectors (card0-DP-1)
            continue
        device = os.path.join(drm, entry, "device")
        if (_read(os.path.join(device, "vendor")) or "").strip().lower() != "0x1002":
            continue
        try:
            memory = int((_read(os.path.join(device, "mem_info_vram_total")) or "").strip())
        except ValueError:
            continue  # no amdgpu driver, so no ROCm either
        name = (_read(os.path.join(device, "product_name")) or "").strip() or None
        found.append((entry, _Gpu(name, memory, None)))
    if not found:
        return None
    entry, best = max(found, key=lambda item: item[1].memory or 0)
    facts = _gpu_facts("rocm", [best], len(found), None, f"sysfs:/sys/class/drm/{entry}")
    return [Fact(f.name, f.value, "sysfs:/sys/class/drm") if f.name == "gpu_count" else f for f in facts]


def _apple(probes: Probes) -> list[Fact] | None:
    if probes.system() != "Darwin":
        return None
    # sysctl, not platform.machine(): an x86_64 Python under Rosetta still runs on Apple Silicon.
    if _sysctl_int(probes.sysctl("hw.optional.arm64")) != 1:
        return None
    facts = [Fact("accelerator", "mps", "sysctl"), Fact("gpu_count", 1, "sysctl")]
    brand = _sysctl_text(probes.sysctl("machdep.cpu.brand_string"))
    if brand:
        facts.append(Fact("gpu_name", brand, "sysctl"))
    return facts


def _probe_gpu(probes: Probes) -> list[Fact]:
    for probe in (_nvml, _nvidia_smi, _amd_sysfs, _apple):
        try:
            facts = probe(probes)
        except Exception as error:  # noqa: BLE001 - a broken probe must never break detect()
            _log.debug("hardware probe %s failed: %r", probe.__name__, error)
            continue
        if facts:
            return facts
    return [Fact("accelerator", "cpu", "default"), Fact("gpu_count", 0, "default")]


# --------------------------------------------------------------------------
# CPU, memory, platform, onnxruntime


def _probe_cpu_flags(probes: Probes) -> list[Fact]:
    try:
        with open(probes.path("/proc/cpuinfo"), encoding="utf-8", errors="replace") as file:
            for line in file:  # stop at the first CPU: the file is long on big machines
                key, colon, value = line.partition(":")
                if colon and key.strip() in ("flags", "Features"):
                    return [Fact("cpu_flags", frozenset(value.split()), "/proc/cpuinfo")]
    except OSError:
        pass
    if probes.system() == "Darwin":  # Intel Macs; Apple Silicon has no such list
        words = []
        for name in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            words += (_sysctl_text(probes.sysctl(name)) or "").split()
        if words:
            return [Fact("cpu_flags", frozenset(w.lower().replace(".", "_") for w in words), "sysctl")]
    return []


def _meminfo_total(probes: Probes) -> int | None:
    for line in (_read(probes.path("/proc/meminfo")) or "").splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024
    return None


def _cgroup_limit(probes: Probes) -> tuple[int, str] | None:
    """The smallest memory limit of this process's cgroup and its ancestors (v2 or v1), with its file."""
    candidates = []
    for line in (_read(probes.path("/proc/self/cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or ".." in parts[2]:
            continue
        if parts[1] == "":
            base, name = "/sys/fs/cgroup", "memory.max"
        elif "memory" in parts[1].split(","):
            base, name = "/sys/fs/cgroup/memory", "memory.limit_in_bytes"
        else:
            continue
        path = parts[2].rstrip("/")
        while path:
            candidates.append(f"{base}{path}/{name}")
            path = path.rpartition("/")[0]
    candidates += ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    best = None
    for candidate in dict.fromkeys(candidates):
        raw = (_read(probes.path(candidate)) or "").strip()
        if raw.isdigit() and (best is None or int(raw) < best[0]):  # "max" (v2) means no limit
            best = (int(raw), candidate)
    return best


def _windows_memory() -> int | None:
    import ctypes

    class Status(ctypes.Structure):
        _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong)] + [
            (name, ctypes.c_ulonglong)
            for name in ("total", "available", "page_total", "page_free", "virtual_total", "virtual_free", "extended")
        ]

    status = Status()
    status.length = ctypes.sizeof(Status)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.total)


def _probe_ram(probes: Probes) -> list[Fact]:
    total, source = _meminfo_total(probes), "/proc/meminfo"
    system = probes.system()
    if total is None and system == "Darwin":
        total, source = _sysctl_int(probes.sysctl("hw.memsize")), "sysctl"
    if total is None and system == "Windows":
        total, source = _windows_memory(), "GlobalMemoryStatusEx"
    if total is None and hasattr(os, "sysconf"):
        try:
            total, source = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "os.sysconf"
        except (ValueError, OSError):
            total = None
    if not total or total <= 0:
        return []
    limit = _cgroup_limit(probes)
    if limit is not None and limit[0] < total:
        total, source = limit[0], f"cgroup:{limit[1]}"
    return [Fact("ram_gib", _gib(total), source)]


def _probe_platform(probes: Probes) -> list[Fact]:
    return [
        Fact(name, value, "platform")
        for name, value in (("os", probes.system()), ("arch", probes.machine()))
        if isinstance(value, str) and value.strip()
    ]


def _probe_ort(probes: Probes) -> list[Fact]:
    return [Fact("ort_providers", frozenset(probes.ort_providers()), "onnxruntime")]


_PROBES: tuple[tuple[frozenset[str], Callable[[Probes], list[Fact]]], ...] = (
    (GPU_FACTS, _probe_gpu),
    (frozenset({"cpu_flags"}), _probe_cpu_flags),
    (frozenset({"ram_gib"}), _probe_ram),
    (frozenset({"os", "arch"}), _probe_platform),
    (frozenset({"ort_providers"}), _probe_ort),
)


# --------------------------------------------------------------------------
# Overrides, environments and detect()


def _overrides() -> list[Fact]:
    """MODELSYNC_OVERRIDE_<FACT> variables, read now; an unknown fact or a bad value is a MarkerError."""
    facts = []
    for variable in sorted(os.environ):
        if not variable.upper().startswith(_env.OVERRIDE_PREFIX):
            continue
        raw = _env.get(variable)
        if raw is None:  # set but empty: as if unset
            continue
        name = variable[len(_env.OVERRIDE_PREFIX) :].lower()
        if name not in FACT_TYPES:
            import difflib

            close = difflib.get_close_matches(name, list(FACT_TYPES), n=1)
            known = _env.OVERRIDE_PREFIX + (close[0] if close else "<FACT>").upper()
            raise MarkerError(f"{variable} names no fact", hint=f"did you mean {known}? facts: {', '.join(FACT_TYPES)}")
        try:
            value = coerce(name, raw)
        except MarkerError as error:
            raise MarkerError(f"{variable}={raw!r}: {error.message}", hint=error.hint) from None
        facts.append(Fact(name, value, f"override:{variable}"))
    return facts


def _wanted(need: Iterable[str] | None) -> frozenset[str]:
    if need is None:
        return DEFAULT_FACTS
    wanted = frozenset(need)
    unknown = sorted(wanted - FACT_TYPES.keys())
    if unknown:
        raise MarkerError(f"unknown fact {unknown[0]!r}", hint="known facts: " + ", ".join(FACT_TYPES))
    return wanted


def detect(
    *,
    need: Iterable[str] | None = None,
    environment: Mapping[str, object] | None = None,
    environment_name: str | None = None,
    probes: Probes | None = None,
) -> Facts:
    """The facts of this machine (or of a named environment), each with its source.

    ``need``: the facts the caller's markers use; None means every fact but
    ``ort_providers``, which is probed only when asked for by name. Probes for
    facts nobody needs are skipped (facts from the same probe may come along).

        >>> detect(environment={"accelerator": "cuda", "vram_gib": 24}, environment_name="gpu")["vram_gib"]
        24.0
    """
    probes = probes or Probes()
    wanted = _wanted(need)
    known: dict[str, Fact] = {}
    if environment is not None:
        source = f"environment:{environment_name}" if environment_name else "environment"
        for name, raw in environment.items():
            known[name] = Fact(name, coerce(name, raw), source)
    for fact in _overrides():
        known[fact.name] = fact
    if environment is not None:
        return Facts(known.values())
    for provides, probe in _PROBES:
        if not (provides & wanted) - known.keys():
            continue
        try:
            found = probe(probes)
        except Exception as error:  # noqa: BLE001 - a broken machine must never break detect()
            _log.debug("hardware probe %s failed: %r", probe.__name__, error)
            continue
        for fact in found:
            if fact.name in known:
                continue
            try:
                known[fact.name] = Fact(fact.name, coerce(fact.name, fact.value), fact.source)
            except MarkerError as error:  # an odd value from the machine: leave the fact unknown
                _log.debug("hardware probe %s: %s", probe.__name__, error.message)
    return Facts(known.values())
