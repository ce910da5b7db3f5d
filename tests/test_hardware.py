"""Hardware facts: probes against a fake machine (files, commands, a fake NVML), overrides, environments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from modelsync.hardware import Fact, Facts, Probes, detect
from modelsync.markers import MarkerError, Version, parse

CPUINFO_X86 = """\
processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B13
flags		: fpu vme de pse tsc msr pae mce cx8 sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512bw
bugs		: sysret_ss_attrs

processor	: 1
vendor_id	: AuthenticAMD
flags		: fpu only-the-first-processor-counts
"""

CPUINFO_ARM = """\
processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
"""

MEMINFO = """\
MemTotal:       32823716 kB
MemFree:         1234567 kB
MemAvailable:   20000000 kB
"""  # 31.3 GiB

SMI_TABLE = """\
Tue Mar 12 10:00:00 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 4090        Off |   00000000:01:00.0 Off |                  Off |
|   1  NVIDIA GeForce RTX 3090        Off |   00000000:02:00.0 Off |                  N/A |
+-----------------------------------------+------------------------+----------------------+
"""


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def boom(*args: object) -> object:
    raise RuntimeError("this probe must not run")


@pytest.fixture
def machine(tmp_path: Path) -> Callable[..., Probes]:
    """Probes for a fake Linux x86_64 machine under tmp_path/root: no GPU library, no nvidia-smi, no onnxruntime."""
    root = tmp_path / "root"
    root.mkdir()

    def make(**changes: object) -> Probes:
        values: dict[str, object] = dict(
            root=str(root),
            nvml_library=None,
            nvidia_smi=None,
            smi_timeout=2.0,
            system=lambda: "Linux",
            machine=lambda: "x86_64",
            sysctl=lambda name: None,
            ort_providers=boom,
        )
        values.update(changes)
        return Probes(**values)  # type: ignore[arg-type]

    make.root = root  # type: ignore[attr-defined]
    return make


# --------------------------------------------------------------------------
# CPU, memory, platform


def test_cpu_machine_from_proc_files(machine) -> None:
    write(machine.root, "/proc/cpuinfo", CPUINFO_X86)
    write(machine.root, "/proc/meminfo", MEMINFO)
    facts = detect(probes=machine())
    assert dict(facts) == {
        "accelerator": "cpu",
        "gpu_count": 0,
        "ram_gib": 31.3,
        "os": "linux",
        "arch": "x86_64",
        "cpu_flags": frozenset(
            "fpu vme de pse tsc msr pae mce cx8 sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 avx512f avx512bw".split()
        ),
    }
    assert {name: facts.fact(name).source for name in facts} == {  # type: ignore[union-attr]
        "accelerator": "default",
        "gpu_count": "default",
        "ram_gib": "/proc/meminfo",
        "os": "platform",
        "arch": "platform",
        "cpu_flags": "/proc/cpuinfo",
    }
    assert parse("accelerator == 'cpu' and 'avx512f' in cpu_flags and not (cuda >= 12)").evaluate(facts)
    assert not parse("vram_gib >= 8").evaluate(facts)


def test_arm_cpu_features_and_arch_normalised(machine) -> None:
    write(machine.root, "/proc/cpuinfo", CPUINFO_ARM)
    facts = detect(probes=machine(machine=lambda: "aarch64"))
    assert facts["arch"] == "arm64"
    assert {"asimd", "fp", "asimddp"} <= facts["cpu_flags"]  # type: ignore[operator]
    assert facts.fact("cpu_flags") == Fact("cpu_flags", facts["cpu_flags"], "/proc/cpuinfo")


@pytest.mark.parametrize(
    ("system", "machine_name", "os_name", "arch"),
    [
        ("Windows", "AMD64", "windows", "x86_64"),
        ("Darwin", "arm64", "darwin", "arm64"),
        ("Linux", "i686", "linux", "i686"),
    ],
)
def test_os_and_arch_are_normalised(machine, system: str, machine_name: str, os_name: str, arch: str) -> None:
    facts = detect(need=["os", "arch"], probes=machine(system=lambda: system, machine=lambda: machine_name))
    assert (facts["os"], facts["arch"]) == (os_name, arch)


def test_cgroup_v2_limit_bounds_ram(machine) -> None:
    write(machine.root, "/proc/meminfo", MEMINFO)
    write(machine.root, "/proc/self/cgroup", "0::/\n")
    write(machine.root, "/sys/fs/cgroup/memory.max", "8589934592\n")
    facts = detect(need=["ram_gib"], probes=machine())
    assert facts.fact("ram_gib") == Fact("ram_gib", 8.0, "cgroup:/sys/fs/cgroup/memory.max")


def test_cgroup_v2_max_means_no_limit(machine) -> None:
    write(machine.root, "/proc/meminfo", MEMINFO)
    write(machine.root, "/proc/self/cgroup", "0::/user.slice/session-1.scope\n")
    write(machine.root, "/sys/fs/cgroup/user.slice/session-1.scope/memory.max", "max\n")
    write(machine.root, "/sys/fs/cgroup/user.slice/memory.max", "max\n")
    facts = detect(need=["ram_gib"], probes=machine())
    assert facts.fact("ram_gib") == Fact("ram_gib", 31.3, "/proc/meminfo")


def test_cgroup_v1_nested_limit_bounds_ram(machine) -> None:
    write(machine.root, "/proc/meminfo", MEMINFO)
    write(machine.root, "/proc/self/cgroup", "9:pids:/docker/abc\n4:cpuacct,memory:/docker/abc\n0::/\n")
    write(machine.root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    write(machine.root, "/sys/fs/cgroup/memory/docker/memory.limit_in_bytes", "9223372036854771712\n")
    write(machine.root, "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "4294967296\n")
    facts = detect(need=["ram_gib"], probes=machine())
    assert facts.fact("ram_gib") == Fact(
        "ram_gib", 4.0, "cgroup:/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes"
    )


def test_a_cgroup_limit_above_physical_memory_is_ignored(machine) -> None:
    write(machine.root, "/proc/meminfo", MEMINFO)
    write(machine.root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    assert detect(need=["ram_gib"], probes=machine()).fact("ram_gib") == Fact("ram_gib", 31.3, "/proc/meminfo")


# --------------------------------------------------------------------------
# GPUs: nvidia-smi, AMD sysfs, Apple Silicon

needs_sh = pytest.mark.skipif(sys.platform == "win32", reason="fake nvidia-smi is a shell script")


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Install a fake `nvidia-smi` (a shell script body) first on PATH; returns the command name."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ.get("PATH", ""))

    def install(body: str) -> str:
        script = bindir / "nvidia-smi"
        script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        script.chmod(0o755)
        return "nvidia-smi"

    return install


SMI_GOOD = f"""\
case "$1" in
  --query-gpu=name,memory.total,compute_cap)
    printf '%s\\n' "NVIDIA GeForce RTX 4090, 24564, 8.9" "NVIDIA GeForce RTX 3090, 24576, 8.6" ;;
  "") cat <<'EOF'
{SMI_TABLE}EOF
  ;;
  *) echo "bad arguments: $*" >&2; exit 2 ;;
esac
"""


@needs_sh
def test_nvidia_smi_reports_the_gpu_with_most_memory(machine, smi) -> None:
    facts = detect(probes=machine(nvidia_smi=smi(SMI_GOOD)))
    assert {
        name: facts[name] for name in ("accelerator", "cuda", "cuda_arch", "vram_gib", "gpu_count", "gpu_name")
    } == {
        "accelerator": "cuda",
        "cuda": Version.parse("12.4"),
        "cuda_arch": Version.parse("8.6"),
        "vram_gib": 24.0,
        "gpu_count": 2,
        "gpu_name": "NVIDIA GeForce RTX 3090",
    }
    assert {facts.fact(name).source for name in ("accelerator", "cuda", "vram_gib", "gpu_count")} == {"nvidia-smi"}  # type: ignore[union-attr]
    assert parse("accelerator == 'cuda' and vram_gib >= 24 and cuda >= 12").evaluate(facts)


@needs_sh
def test_nvidia_smi_of_an_old_driver_without_compute_cap(machine, smi) -> None:
    command = smi("""\
        case "$1" in
          --query-gpu=name,memory.total,compute_cap)
            echo 'Field "compute_cap" is not a valid field to query.'; exit 2 ;;
          --query-gpu=name,memory.total) echo "Tesla T4, 15360" ;;
          *) echo "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |" ;;
        esac
    """)
    facts = detect(probes=machine(nvidia_smi=command))
    assert (facts["gpu_name"], facts["vram_gib"], facts["cuda"], facts["gpu_count"]) == (
        "Tesla T4",
        15.0,
        Version.parse("11.4"),
        1,
    )
    assert "cuda_arch" not in facts


@needs_sh
def test_hanging_nvidia_smi_times_out_and_falls_back(machine, smi) -> None:
    facts = detect(probes=machine(nvidia_smi=smi("exec sleep 30\n"), smi_timeout=0.3))
    assert facts.fact("accelerator") == Fact("accelerator", "cpu", "default")


@needs_sh
@pytest.mark.parametrize(
    "body",
    [
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9\n',
        "printf 'hello\\n[N/A], [N/A], [N/A]\\n,,,\\nNVIDIA, lots\\n'\n",
        "exit 0\n",
        "printf '\\377\\376\\001garbage\\000, inf, 8.6\\n\\001, nan\\n'\n",
    ],
)
def test_garbage_from_nvidia_smi_falls_back(machine, smi, body: str) -> None:
    facts = detect(probes=machine(nvidia_smi=smi(body)))
    assert facts["accelerator"] == "cpu"
    assert "vram_gib" not in facts


def test_missing_nvidia_smi_is_skipped(machine) -> None:
    facts = detect(probes=machine(nvidia_smi="no-such-nvidia-smi-here"))
    assert facts["accelerator"] == "cpu"


def amd_cards(root: Path) -> None:
    write(root, "/sys/class/drm/card0/device/vendor", "0x8086\n")  # an Intel iGPU
    write(root, "/sys/class/drm/card0/device/mem_info_vram_total", "1073741824\n")
    write(root, "/sys/class/drm/card1/device/vendor", "0x1002\n")
    write(root, "/sys/class/drm/card1/device/mem_info_vram_total", "17163091968\n")
    write(root, "/sys/class/drm/card1/device/product_name", "AMD Radeon RX 7800 XT\n")
    write(root, "/sys/class/drm/card1-DP-1/device/vendor", "0x1002\n")  # a connector, not a card
    write(root, "/sys/class/drm/card1-DP-1/device/mem_info_vram_total", "99999999999\n")
    write(root, "/sys/class/drm/card2/device/vendor", "0x1002\n")
    write(root, "/sys/class/drm/card2/device/mem_info_vram_total", "8589934592\n")


def test_amd_gpu_through_sysfs(machine) -> None:
    amd_cards(machine.root)
    facts = detect(probes=machine())
    assert facts.fact("accelerator") == Fact("accelerator", "rocm", "sysfs:/sys/class/drm/card1")
    assert facts.fact("vram_gib") == Fact("vram_gib", 16.0, "sysfs:/sys/class/drm/card1")
    assert facts.fact("gpu_name") == Fact("gpu_name", "AMD Radeon RX 7800 XT", "sysfs:/sys/class/drm/card1")
    assert facts.fact("gpu_count") == Fact("gpu_count", 2, "sysfs:/sys/class/drm")
    assert "cuda" not in facts and "cuda_arch" not in facts


def test_amd_card_without_vram_file_is_not_rocm(machine) -> None:
    write(machine.root, "/sys/class/drm/card0/device/vendor", "0x1002\n")
    write(machine.root, "/sys/class/drm/card0/device/mem_info_vram_total", "not a number\n")
    assert detect(probes=machine())["accelerator"] == "cpu"


def sysctl(values: dict[str, bytes]) -> Callable[[str], bytes | None]:
    return values.get


def test_apple_silicon_is_mps_even_under_rosetta(machine) -> None:
    values = {
        "hw.optional.arm64": (1).to_bytes(4, sys.byteorder),
        "machdep.cpu.brand_string": b"Apple M2 Pro\0",
        "hw.memsize": (32 << 30).to_bytes(8, sys.byteorder),
    }
    facts = detect(probes=machine(system=lambda: "Darwin", machine=lambda: "x86_64", sysctl=sysctl(values)))
    assert facts.fact("accelerator") == Fact("accelerator", "mps", "sysctl")
    assert facts.fact("gpu_name") == Fact("gpu_name", "Apple M2 Pro", "sysctl")
    assert facts.fact("ram_gib") == Fact("ram_gib", 32.0, "sysctl")
    assert (facts["os"], facts["arch"], facts["gpu_count"]) == ("darwin", "x86_64", 1)
    assert "vram_gib" not in facts  # unified memory: see ram_gib


def test_intel_mac_is_cpu_with_sysctl_flags(machine) -> None:
    values = {
        "hw.optional.arm64": None,
        "machdep.cpu.features": b"FPU VME SSE SSE2 SSE4.1 SSE4.2 AVX1.0\0",
        "machdep.cpu.leaf7_features": b"SMEP BMI1 AVX2 BMI2\0",
        "hw.memsize": (16 << 30).to_bytes(8, sys.byteorder),
    }
    facts = detect(probes=machine(system=lambda: "Darwin", sysctl=values.get))
    assert facts["accelerator"] == "cpu"
    assert {"sse4_2", "avx2", "avx1_0"} <= facts["cpu_flags"]  # type: ignore[operator]
    assert facts.fact("cpu_flags").source == "sysctl"  # type: ignore[union-attr]
    assert facts.fact("ram_gib") == Fact("ram_gib", 16.0, "sysctl")


# --------------------------------------------------------------------------
# A fake NVML, built with gcc

FAKE_NVML = r"""
#include <string.h>
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
#ifndef INIT_RC
#define INIT_RC 0
#endif
#ifdef OLD_NAMES
#define V2(name) name
#else
#define V2(name) name##_v2
#endif
static int initialised = 0;
int V2(nvmlInit)(void) { initialised = (INIT_RC == 0); return INIT_RC; }
int nvmlShutdown(void) { initialised = 0; return 0; }
int V2(nvmlSystemGetCudaDriverVersion)(int *version) { *version = 12100; return 0; }
int V2(nvmlDeviceGetCount)(unsigned int *count) { *count = 2; return initialised ? 0 : 1; }
int V2(nvmlDeviceGetHandleByIndex)(unsigned int index, void **handle) {
    *handle = (void *)(size_t)(index + 1); return index < 2 ? 0 : 2;
}
int nvmlDeviceGetName(void *handle, char *name, unsigned int length) {
    strncpy(name, (size_t)handle == 1 ? "NVIDIA GeForce RTX 3060" : "NVIDIA A100-SXM4-80GB", length);
    return 0;
}
int nvmlDeviceGetMemoryInfo(void *handle, nvmlMemory_t *memory) {
    memory->total = (size_t)handle == 1 ? 12884901888ULL : 85899345920ULL;
    memory->free = memory->total; memory->used = 0;
    return 0;
}
int nvmlDeviceGetCudaComputeCapability(void *handle, int *major, int *minor) {
    *major = 8; *minor = (size_t)handle == 1 ? 6 : 0; return 0;
}
"""


@pytest.fixture(scope="module")
def nvml(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Build a fake libnvidia-ml with gcc (flags select a variant); returns the library's path."""
    compiler = shutil.which("gcc")
    if compiler is None or sys.platform == "win32":
        pytest.skip("gcc is needed to build a fake NVML")
    folder = tmp_path_factory.mktemp("nvml")
    source = folder / "fake_nvml.c"
    source.write_text(FAKE_NVML)
    built: dict[tuple[str, ...], str] = {}

    def build(*flags: str) -> str:
        if flags not in built:
            library = folder / f"libfake-nvml-{len(built)}.so"
            subprocess.run([compiler, "-shared", "-fPIC", *flags, "-o", str(library), str(source)], check=True)
            built[flags] = str(library)
        return built[flags]

    return build


def test_nvml_reports_the_largest_gpu(machine, nvml) -> None:
    facts = detect(probes=machine(nvml_library=nvml()))
    assert {
        name: facts.fact(name) for name in ("accelerator", "cuda", "cuda_arch", "vram_gib", "gpu_count", "gpu_name")
    } == {
        "accelerator": Fact("accelerator", "cuda", "nvml"),
        "cuda": Fact("cuda", Version.parse("12.10"), "nvml"),
        "cuda_arch": Fact("cuda_arch", Version.parse("8.0"), "nvml"),
        "vram_gib": Fact("vram_gib", 80.0, "nvml"),
        "gpu_count": Fact("gpu_count", 2, "nvml"),
        "gpu_name": Fact("gpu_name", "NVIDIA A100-SXM4-80GB", "nvml"),
    }
    assert str(facts["cuda"]) == "12.10"
    assert parse("cuda >= 12.10 and not (cuda >= 12.11)").evaluate(facts)
    assert parse("'A100' in gpu_name and vram_gib >= 80 and gpu_count == 2").evaluate(facts)


def test_nvml_without_v2_entry_points(machine, nvml) -> None:
    facts = detect(probes=machine(nvml_library=nvml("-DOLD_NAMES")))
    assert (facts["accelerator"], facts["vram_gib"], facts.fact("cuda").source) == ("cuda", 80.0, "nvml")  # type: ignore[union-attr]


@needs_sh
def test_nvml_that_fails_to_initialise_falls_back_to_nvidia_smi(machine, nvml, smi) -> None:
    facts = detect(probes=machine(nvml_library=nvml("-DINIT_RC=9"), nvidia_smi=smi(SMI_GOOD)))
    assert facts.fact("accelerator") == Fact("accelerator", "cuda", "nvidia-smi")


def test_nvml_is_preferred_to_nvidia_smi(machine, nvml) -> None:
    facts = detect(probes=machine(nvml_library=nvml(), nvidia_smi="python-not-a-real-smi"))
    assert facts.fact("vram_gib").source == "nvml"  # type: ignore[union-attr]


def test_a_library_that_is_not_nvml_falls_back(machine, tmp_path: Path) -> None:
    not_a_library = tmp_path / "libnvidia-ml.so.1"
    not_a_library.write_bytes(b"\x7fELF garbage")
    for library in (str(not_a_library), str(tmp_path / "missing.so"), "libc.so.6"):
        assert detect(probes=machine(nvml_library=library))["accelerator"] == "cpu"


# --------------------------------------------------------------------------
# Overrides, environments and their precedence

OVERRIDES = {
    "MODELSYNC_OVERRIDE_ACCELERATOR": ("CUDA", "accelerator", "cuda"),
    "MODELSYNC_OVERRIDE_CUDA": ("12.10", "cuda", Version.parse("12.10")),
    "MODELSYNC_OVERRIDE_CUDA_ARCH": ("9.0", "cuda_arch", Version.parse("9.0")),
    "MODELSYNC_OVERRIDE_VRAM_GIB": ("24", "vram_gib", 24.0),
    "MODELSYNC_OVERRIDE_GPU_COUNT": ("4", "gpu_count", 4),
    "MODELSYNC_OVERRIDE_GPU_NAME": ("NVIDIA H100 80GB HBM3", "gpu_name", "NVIDIA H100 80GB HBM3"),
    "MODELSYNC_OVERRIDE_RAM_GIB": ("512.5", "ram_gib", 512.5),
    "MODELSYNC_OVERRIDE_OS": ("Linux", "os", "linux"),
    "MODELSYNC_OVERRIDE_ARCH": ("aarch64", "arch", "arm64"),
    "MODELSYNC_OVERRIDE_CPU_FLAGS": ("avx2,FMA", "cpu_flags", frozenset({"avx2", "fma"})),
    "MODELSYNC_OVERRIDE_ORT_PROVIDERS": (
        "CUDAExecutionProvider, CPUExecutionProvider",
        "ort_providers",
        frozenset({"CUDAExecutionProvider", "CPUExecutionProvider"}),
    ),
}


def test_overrides_of_every_type_win_over_probes(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    write(machine.root, "/proc/cpuinfo", CPUINFO_X86)
    write(machine.root, "/proc/meminfo", MEMINFO)
    for variable, (raw, _, _) in OVERRIDES.items():
        monkeypatch.setenv(variable, raw)
    # every fact is overridden, so no probe runs: the ones given here would raise
    facts = detect(need=[o[1] for o in OVERRIDES.values()], probes=machine(system=boom, machine=boom))
    assert len(facts) == len(OVERRIDES)
    for variable, (_, name, value) in OVERRIDES.items():
        assert facts.fact(name) == Fact(name, value, f"override:{variable}")


def test_override_beats_a_probe_and_probes_fill_the_rest(machine, nvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSYNC_OVERRIDE_ACCELERATOR", "cpu")
    facts = detect(probes=machine(nvml_library=nvml()))
    assert facts.fact("accelerator") == Fact("accelerator", "cpu", "override:MODELSYNC_OVERRIDE_ACCELERATOR")
    assert facts.fact("vram_gib") == Fact("vram_gib", 80.0, "nvml")
    assert not parse("accelerator == 'cuda' and vram_gib >= 8").evaluate(facts)


def test_empty_override_is_ignored(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSYNC_OVERRIDE_VRAM_GIB", "")
    assert "vram_gib" not in detect(probes=machine())


def test_bad_override_is_a_marker_error_naming_the_variable(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSYNC_OVERRIDE_VRAM_GIB", "lots")
    with pytest.raises(MarkerError) as caught:
        detect(probes=machine())
    assert caught.value.message.startswith("MODELSYNC_OVERRIDE_VRAM_GIB='lots': vram_gib must be")
    assert caught.value.exit_code == 2


def test_unknown_override_is_a_marker_error_with_a_hint(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSYNC_OVERRIDE_VRAM", "24")
    with pytest.raises(MarkerError) as caught:
        detect(probes=machine())
    assert "MODELSYNC_OVERRIDE_VRAM names no fact" in caught.value.message
    assert "MODELSYNC_OVERRIDE_VRAM_GIB" in (caught.value.hint or "")


def test_environment_is_the_machine_and_nothing_is_probed(machine) -> None:
    probes = machine(system=boom, machine=boom, sysctl=boom, ort_providers=boom, root="/nonexistent")
    facts = detect(
        environment={"accelerator": "cuda", "cuda": "12.4", "vram_gib": 24}, environment_name="gpu", probes=probes
    )
    assert facts.to_json() == {
        "accelerator": {"value": "cuda", "source": "environment:gpu"},
        "cuda": {"value": "12.4", "source": "environment:gpu"},
        "vram_gib": {"value": 24.0, "source": "environment:gpu"},
    }
    assert parse("accelerator == 'cuda' and vram_gib >= 24").evaluate(facts)
    assert not parse("'avx2' in cpu_flags").evaluate(facts)  # not in the environment: missing


def test_environment_beats_probes_and_override_beats_environment(
    machine, nvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = machine(nvml_library=nvml())
    cpu = detect(environment={"accelerator": "cpu"}, environment_name="cpu", probes=probes)
    assert dict(cpu) == {"accelerator": "cpu"}
    monkeypatch.setenv("MODELSYNC_OVERRIDE_VRAM_GIB", "8")
    gpu = detect(environment={"accelerator": "cuda", "vram_gib": 24}, environment_name="gpu", probes=probes)
    assert gpu.fact("vram_gib") == Fact("vram_gib", 8.0, "override:MODELSYNC_OVERRIDE_VRAM_GIB")
    assert gpu.fact("accelerator") == Fact("accelerator", "cuda", "environment:gpu")


def test_bad_environment_values_are_marker_errors(machine) -> None:
    with pytest.raises(MarkerError, match="vram_gib must be"):
        detect(environment={"vram_gib": "lots"}, probes=machine())
    with pytest.raises(MarkerError, match="unknown fact 'vram'"):
        detect(environment={"vram": 24}, probes=machine())
    assert detect(environment={}, probes=machine(system=boom)).to_json() == {}


# --------------------------------------------------------------------------
# What is probed, and a broken machine


def test_need_limits_the_probes(machine) -> None:
    write(machine.root, "/proc/cpuinfo", CPUINFO_X86)
    facts = detect(need=["os"], probes=machine())
    assert set(facts) == {"os", "arch"}
    with pytest.raises(MarkerError, match="unknown fact 'vram'"):
        detect(need=["vram"], probes=machine())


def test_ort_providers_only_when_asked_for(machine) -> None:
    calls = []

    def providers() -> list[str]:
        calls.append(1)
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    assert "ort_providers" not in detect(probes=machine(ort_providers=providers))
    assert calls == []
    facts = detect(need=["ort_providers", "accelerator"], probes=machine(ort_providers=providers))
    assert facts.fact("ort_providers") == Fact(
        "ort_providers", frozenset({"CUDAExecutionProvider", "CPUExecutionProvider"}), "onnxruntime"
    )
    assert calls == [1]
    assert parse("'CUDAExecutionProvider' in ort_providers").evaluate(facts)


def test_real_onnxruntime_providers(tmp_path: Path) -> None:
    import onnxruntime  # noqa: F401 - a dev dependency

    facts = detect(need=["ort_providers"], probes=Probes(root=str(tmp_path), nvml_library=None, nvidia_smi=None))
    assert "CPUExecutionProvider" in facts["ort_providers"]  # type: ignore[operator]
    assert facts.fact("ort_providers").source == "onnxruntime"  # type: ignore[union-attr]


def test_missing_onnxruntime_leaves_the_fact_unknown(machine) -> None:
    def missing() -> list[str]:
        raise ImportError("No module named 'onnxruntime'")

    assert "ort_providers" not in detect(need=["ort_providers"], probes=machine(ort_providers=missing))


def test_a_broken_machine_never_breaks_detect(machine, tmp_path: Path) -> None:
    root = machine.root
    (root / "proc" / "cpuinfo").mkdir(parents=True)  # a directory where a file should be
    write(root, "/proc/meminfo", "MemTotal: lots\n\0\0garbage")
    write(root, "/proc/self/cgroup", "garbage\n0::/../..\n::\n")
    write(root, "/sys/fs/cgroup/memory.max", "-1\n")
    write(root, "/sys/class/drm/card0/device/vendor", "\xff\xfe")
    (root / "sys" / "class" / "drm" / "card1").mkdir()
    broken = machine(
        nvml_library=str(tmp_path / "missing.so"),
        nvidia_smi="/dev/null",
        system=boom,
        machine=lambda: 42,
        sysctl=boom,
        ort_providers=boom,
    )
    facts = detect(need=None, probes=broken)
    assert facts["accelerator"] == "cpu"
    assert "cpu_flags" not in facts and "os" not in facts and "arch" not in facts
    facts = detect(need=["ort_providers", "os"], probes=machine(root=str(tmp_path / "nowhere"), system=boom))
    assert "ort_providers" not in facts and "os" not in facts
    facts = detect(probes=machine(root=str(root / "proc" / "meminfo")))  # a file as the root
    assert facts["accelerator"] == "cpu"


def test_facts_mapping_and_json(machine) -> None:
    write(machine.root, "/proc/cpuinfo", CPUINFO_ARM)
    facts = detect(probes=machine(nvidia_smi=None))
    assert list(facts)[:2] == ["accelerator", "gpu_count"]  # FACT_TYPES order
    assert facts.fact("vram_gib") is None and facts.get("vram_gib") is None
    encoded = json.loads(json.dumps(facts.to_json()))
    assert encoded["cpu_flags"]["value"] == sorted(facts["cpu_flags"])  # type: ignore[arg-type]
    assert encoded["cpu_flags"]["source"] == "/proc/cpuinfo"
    assert "accelerator='cpu'" in repr(facts)
    assert dict(Facts([Fact("os", "linux", "platform")])) == {"os": "linux"}


def test_this_machine(tmp_path: Path) -> None:
    """The real probes on the machine running the tests: whatever it has, detect() answers."""
    facts = detect()
    assert facts["accelerator"] in ("cpu", "cuda", "rocm", "mps")
    assert facts["os"] in ("linux", "darwin", "windows") and facts["arch"]
    assert all(facts.fact(name).source for name in facts)  # type: ignore[union-attr]


def test_importing_and_detecting_loads_no_heavy_module() -> None:
    code = (
        "import sys, modelsync.hardware as h; h.detect(); "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'numpy', 'requests', 'rich') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.stdout.strip() == "[]"
