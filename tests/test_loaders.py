"""`modelsync.loaders.load()`: models opened by their loaders, as an application sees them.

Every model here is built at run time (an ONNX graph with the onnx package,
torch weights, a TorchScript module, hostile pickles), put in a project as a
local `path` source and synced with the CLI's own main(): no network. Every
test runs as on a CPU-only machine (MODELSYNC_OVERRIDE_ACCELERATOR=cpu) unless
it fakes another accelerator itself.
"""

from __future__ import annotations

import gc
import io
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import safetensors.torch
import torch
from onnx import TensorProto, helper

import modelsync
from modelsync.errors import ModelNotFoundError, UsageError
from modelsync.loaders import LoadError, load
from modelsync.loaders.torch import StateDict

REPO = Path(__file__).resolve().parent.parent
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@pytest.fixture(autouse=True)
def cpu_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSYNC_OVERRIDE_ACCELERATOR", "cpu")


@pytest.fixture
def synced(project, run) -> Callable[..., Path]:
    """A synced project holding ``files`` (path -> bytes), with ``manifest`` as its models.toml."""

    def make(manifest: str, files: dict[str, bytes]) -> Path:
        root = project(manifest)
        for relative, data in files.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(data)
        result = run("sync", "-q", cwd=root)
        assert result.returncode == 0, result.stderr
        return root

    return make


# --------------------------------------------------------------------------
# Models, built here


def add_one_onnx() -> bytes:
    """An ONNX model computing Y = X + 1 on float32[N, 3]."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["X", "one"], ["Y"])], "add_one", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * 2


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def torch_bytes(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def torchscript_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch.jit.script is deprecated in favour of torch.export
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


class Hostile:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


ONNX_TOML = '[models.m]\npath = "weights/m.onnx"\nloader = "onnx"\n'


def torch_toml(filename: str) -> str:
    return f'[models.m]\npath = "weights/{filename}"\nloader = "torch"\n'


# --------------------------------------------------------------------------
# onnx


def test_onnx_model_loads_as_a_session_that_computes(synced) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    session = load("m", project=root)
    assert isinstance(session, onnxruntime.InferenceSession)
    assert session.get_providers() == [CPU]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = session.run(None, {"X": x})
    np.testing.assert_array_equal(y, x + 1)


def test_load_downloads_a_model_on_first_use(http_server, project, run, monkeypatch, tmp_path) -> None:
    """modelsync.load() is ensure() and then open: an app need not sync first."""
    root = project(f'''
        [models.m]
        url = "{http_server.add("m.onnx", add_one_onnx())}"
        loader = "onnx"
    ''')
    assert run("lock", "-q", cwd=root).returncode == 0
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "empty-cache"))
    http_server.requests.clear()
    session = modelsync.load("m", project=root)
    (y,) = session.run(None, {"X": np.zeros((1, 3), dtype=np.float32)})
    np.testing.assert_array_equal(y, np.ones((1, 3), dtype=np.float32))
    assert [r.path for r in http_server.requests if r.method == "GET"] == ["/m.onnx"]


@pytest.fixture
def fake_ort(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], list[dict[str, object]]]:
    """onnxruntime with the given providers available, recording the sessions it is asked for."""

    def install(available: list[str]) -> list[dict[str, object]]:
        calls: list[dict[str, object]] = []

        class RecordedSession:
            """Stands for InferenceSession: records what load() asked of onnxruntime."""

            def __init__(self, path: str, **kwargs: object) -> None:
                calls.append({"path": path, **kwargs})

        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(available))
        monkeypatch.setattr(onnxruntime, "InferenceSession", RecordedSession)
        return calls

    return install


@pytest.mark.parametrize(
    ("accelerator", "available", "device", "expected"),
    [
        ("cuda", [CUDA, CPU], "auto", [CUDA, CPU]),
        ("cuda", ["AzureExecutionProvider", CPU], "auto", [CPU]),  # a GPU, but onnxruntime without CUDA
        ("cpu", [CUDA, CPU], "auto", [CPU]),  # onnxruntime-gpu on a machine without a GPU
        ("rocm", ["ROCMExecutionProvider", CPU], "auto", ["ROCMExecutionProvider", CPU]),
        ("mps", ["CoreMLExecutionProvider", CPU], "auto", ["CoreMLExecutionProvider", CPU]),
        ("cuda", [CUDA, CPU], "cpu", [CPU]),
        ("cpu", [CUDA, CPU], "cuda", [CUDA, CPU]),
        ("cpu", [CUDA, CPU], "cuda:1", [(CUDA, {"device_id": 1}), CPU]),
    ],
)
def test_onnx_providers_follow_the_machine_and_the_installed_onnxruntime(
    synced, fake_ort, monkeypatch: pytest.MonkeyPatch, accelerator: str, available: list[str], device: str, expected: list
) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    monkeypatch.setenv("MODELSYNC_OVERRIDE_ACCELERATOR", accelerator)
    calls = fake_ort(available)
    load("m", project=root, device=device)
    assert calls == [{"path": str(root / "models" / "m" / "m.onnx"), "providers": expected}]


def test_onnx_providers_and_options_pass_through(synced, fake_ort) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    calls = fake_ort([CUDA, CPU])
    load("m", project=root, providers=[CUDA, CPU], provider_options=[{"device_id": 3}, {}])
    assert calls[0]["providers"] == [CUDA, CPU]
    assert calls[0]["provider_options"] == [{"device_id": 3}, {}]


def test_onnx_cuda_without_a_cuda_onnxruntime_names_the_package(synced, fake_ort) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    calls = fake_ort([CPU])
    with pytest.raises(UsageError) as caught:
        load("m", project=root, device="cuda:0")
    assert "CUDAExecutionProvider" in str(caught.value)
    assert "pip install onnxruntime-gpu" in str(caught.value)
    assert calls == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"device": "gpu"}, "does not know device 'gpu'"),
        ({"device": "mps:1"}, "does not know device 'mps:1'"),
        ({"device": "cuda", "providers": [CPU]}, "not both"),
        ({"provider_options": [{}]}, "provider_options= needs providers="),
    ],
)
def test_onnx_bad_arguments_are_usage_errors(synced, arguments: dict, says: str) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    with pytest.raises(UsageError, match=says):
        load("m", project=root, **arguments)


# --------------------------------------------------------------------------
# torch


@pytest.mark.parametrize(
    ("filename", "save", "returns"),
    [
        ("w.pt", lambda sd: torch_bytes(sd), OrderedDict),  # model.state_dict() keeps its type
        ("w.bin", lambda sd: torch_bytes(dict(sd)), StateDict),
        ("w.safetensors", lambda sd: safetensors.torch.save(dict(sd)), StateDict),
    ],
)
def test_torch_weights_load_as_the_tensors_saved(synced, filename: str, save: Callable, returns: type) -> None:
    net = tiny_net()
    root = synced(torch_toml(filename), {f"weights/{filename}": save(net.state_dict())})
    weights = load("m", project=root)
    assert type(weights) is returns
    assert sorted(weights) == ["linear.bias", "linear.weight"]
    for name, tensor in net.state_dict().items():
        assert torch.equal(weights[name], tensor)
        assert weights[name].device.type == "cpu"
    fresh = TinyNet()
    fresh.load_state_dict(weights)
    x = torch.ones(1, 3)
    assert torch.equal(fresh(x), net(x))


def test_torchscript_archive_loads_as_a_module_that_computes(synced) -> None:
    net = tiny_net()
    root = synced(torch_toml("net.pt"), {"weights/net.pt": torchscript_bytes(net)})
    with warnings.catch_warnings():  # torch.jit.load is deprecated too
        warnings.simplefilter("ignore", DeprecationWarning)
        module = load("m", project=root)
    assert isinstance(module, torch.jit.ScriptModule)
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert torch.equal(module(x), net(x))


@pytest.mark.parametrize(
    ("save", "says"),
    [
        (lambda hostile: torch_bytes({"weight": torch.ones(2), "payload": hostile}), r"refused to load .* would import (posix|nt)\.system"),
        (lambda hostile: pickle.dumps(hostile, protocol=2), r"refused to load .* would import (posix|nt)\.system"),
        (lambda hostile: pickle.dumps(hostile), "weights-only unpickler stopped"),  # protocol 4+: stopped earlier
        (lambda hostile: torch_bytes(tiny_net()), r"refused to load .* would import test_loaders\.TinyNet"),
    ],
)
def test_a_pickle_that_runs_code_is_refused_and_never_run(synced, tmp_path: Path, save: Callable, says: str) -> None:
    marker = tmp_path / "pwned"
    root = synced(torch_toml("hostile.pt"), {"weights/hostile.pt": save(Hostile(marker))})
    with pytest.raises(LoadError, match=says) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols above 2
        load("m", project=root)
    assert not marker.exists()
    message = str(caught.value)
    assert "safetensors" in message and "never pass weights_only=False" in message
    assert "will likely succeed" not in message  # torch's own advice to turn the check off is not passed on
    assert caught.value.exit_code == 1


def test_torch_loader_will_not_turn_off_weights_only(synced) -> None:
    root = synced(torch_toml("w.pt"), {"weights/w.pt": torch_bytes({"w": torch.ones(1)})})
    with pytest.raises(UsageError, match="does not take weights_only="):
        load("m", project=root, weights_only=False)


def test_torch_device_auto_takes_cuda_when_the_machine_and_torch_agree(synced, monkeypatch: pytest.MonkeyPatch) -> None:
    root = synced(torch_toml("w.pt"), {"weights/w.pt": torch_bytes({"w": torch.ones(1)})})
    asked: list[object] = []

    def fake_load(path, map_location=None, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(map_location)
        return {"w": torch.ones(1)}

    monkeypatch.setattr(torch, "load", fake_load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    load("m", project=root)  # the machine says cpu (the fixture's override)
    monkeypatch.setenv("MODELSYNC_OVERRIDE_ACCELERATOR", "cuda")
    load("m", project=root)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU build of torch on a GPU machine
    load("m", project=root)
    assert asked == ["cpu", "cuda", "cpu"]


def test_torch_cuda_without_a_cuda_torch_is_a_usage_error(synced, monkeypatch: pytest.MonkeyPatch) -> None:
    root = synced(torch_toml("w.pt"), {"weights/w.pt": torch_bytes({"w": torch.ones(1)})})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="cannot use a cuda device here") as caught:
        load("m", project=root, device="cuda")
    assert "device='cpu'" in str(caught.value)
    with pytest.raises(UsageError, match="'gpu' is not a torch device"):
        load("m", project=root, device="gpu")


@pytest.mark.parametrize(
    ("filename", "loader", "data", "says"),
    [
        ("m.onnx", "onnx", b"not an onnx model", "cannot open"),
        ("w.safetensors", "torch", b"not safetensors", "cannot be loaded as a safetensors file"),
        ("w.pt", "torch", torch_bytes({"w": torch.ones(4)})[:100], "cannot be loaded as a torch file"),
        ("w.pt", "torch", b"garbage", "cannot be loaded as a torch file"),
    ],
)
def test_a_damaged_file_is_a_load_error(synced, filename: str, loader: str, data: bytes, says: str) -> None:
    root = synced(f'[models.m]\npath = "weights/{filename}"\nloader = "{loader}"\n', {f"weights/{filename}": data})
    with pytest.raises(LoadError, match=says) as caught:
        load("m", project=root)
    assert str(root / "models" / "m" / filename) in str(caught.value)


# --------------------------------------------------------------------------
# Which loader, which file


def test_the_loader_comes_from_the_extension_when_models_toml_names_none(synced) -> None:
    manifest = """\
        [models.graph]
        path = "weights/graph.onnx"

        [models.weights]
        path = "weights/w.safetensors"

        [models.notes]
        path = "weights/notes.txt"
        """
    root = synced(
        manifest,
        {
            "weights/graph.onnx": add_one_onnx(),
            "weights/w.safetensors": safetensors.torch.save({"w": torch.ones(2)}),
            "weights/notes.txt": b"hello",
        },
    )
    assert isinstance(load("graph", project=root), onnxruntime.InferenceSession)
    assert torch.equal(load("weights", project=root)["w"], torch.ones(2))
    assert load("notes", project=root) == modelsync.path("notes", project=root)


def test_loader_argument_overrides_models_toml(synced) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    assert load("m", project=root, loader="file") == root / "models" / "m" / "m.onnx"
    with pytest.raises(UsageError, match="unknown loader 'tensorflow'"):
        load("m", project=root, loader="tensorflow")
    with pytest.raises(UsageError, match="device= and options do not apply"):
        load("m", project=root, loader="file", device="cpu")


def test_a_multi_file_model_opens_its_only_file_of_the_loaders_kind(synced) -> None:
    manifest = """\
        [models.pair]
        path = "pair"
        loader = "onnx"

        [models.bundle]
        path = "bundle"
        loader = "torch"

        [models.folder]
        path = "bundle"
        """
    root = synced(
        manifest,
        {
            "pair/a.onnx": add_one_onnx(),
            "pair/b.onnx": add_one_onnx(),
            "pair/config.json": b"{}",
            "bundle/config.json": b"{}",
            "bundle/sub/model.safetensors": safetensors.torch.save({"w": torch.ones(3)}),
        },
    )
    assert torch.equal(load("bundle", project=root)["w"], torch.ones(3))
    assert load("folder", project=root) == root / "models" / "folder"  # no loader: the folder itself
    with pytest.raises(UsageError, match="model 'pair' has 2 files for the onnx loader") as caught:
        load("pair", project=root)
    assert "a.onnx, b.onnx" in str(caught.value)
    session = load("pair", project=root, file="b.onnx")
    assert session.run(None, {"X": np.zeros((1, 3), np.float32)})[0].tolist() == [[1.0, 1.0, 1.0]]
    with pytest.raises(UsageError, match="model 'folder' has no .* file for the onnx loader"):
        load("folder", project=root, loader="onnx")


def test_errors_of_path_reach_the_caller(synced) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    with pytest.raises(ModelNotFoundError):
        load("missing", project=root)


# --------------------------------------------------------------------------
# The cache


def test_loaded_objects_are_shared_while_held_and_freed_after(synced) -> None:
    root = synced(
        ONNX_TOML + '[models.w]\npath = "weights/w.safetensors"\n',
        {"weights/m.onnx": add_one_onnx(), "weights/w.safetensors": safetensors.torch.save({"w": torch.ones(2)})},
    )
    session = load("m", project=root)
    assert load("m", project=root) is session
    assert load("m", project=root, device="cpu") is session  # the same providers
    assert load("m", project=root, sess_options=onnxruntime.SessionOptions()) is not session  # not cached
    weights = load("w", project=root)
    assert isinstance(weights, StateDict) and load("w", project=root) is weights

    freed = [weakref.ref(session), weakref.ref(weights)]
    del session, weights
    gc.collect()
    assert [ref() for ref in freed] == [None, None]
    assert isinstance(load("m", project=root), onnxruntime.InferenceSession)  # loads again


def test_the_machine_is_probed_once_per_process_and_overrides_win(synced, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelsync import hardware, loaders

    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    monkeypatch.delenv("MODELSYNC_OVERRIDE_ACCELERATOR")
    monkeypatch.setattr(loaders, "_probed", [])
    real_detect = hardware.detect
    probes: list[object] = []

    def counting_detect(**kwargs):  # type: ignore[no-untyped-def]
        probes.append(kwargs["need"])
        return real_detect(**kwargs)

    monkeypatch.setattr(hardware, "detect", counting_detect)
    session = load("m", project=root)
    assert load("m", project=root) is session
    assert probes == [{"accelerator"}]
    monkeypatch.setenv("MODELSYNC_OVERRIDE_ACCELERATOR", "cpu")
    assert load("m", project=root) is session
    assert len(probes) == 2


def test_concurrent_first_calls_load_once(synced, monkeypatch: pytest.MonkeyPatch) -> None:
    root = synced(ONNX_TOML, {"weights/m.onnx": add_one_onnx()})
    real = onnxruntime.InferenceSession
    builds: list[int] = []

    def slow_session(*args, **kwargs):  # type: ignore[no-untyped-def]
        builds.append(1)
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", slow_session)
    start = threading.Barrier(8)
    results: list[object] = []

    def worker() -> None:
        start.wait()
        results.append(load("m", project=root))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(results) == 8 and all(result is results[0] for result in results)


# --------------------------------------------------------------------------
# Imports


def test_importing_the_loaders_imports_no_ml_library() -> None:
    code = (
        "import sys, modelsync.loaders\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'torch', 'numpy', 'safetensors', 'onnx')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("hidden", "filename", "loader", "says"),
    [
        ("onnxruntime", "m.onnx", "onnx", "pip install 'modelsync[onnx]'"),
        ("torch", "w.pt", "torch", "pip install torch==2.13.0"),
        ("safetensors.torch", "w.safetensors", "torch", "pip install 'modelsync[torch]'"),
    ],
)
def test_a_missing_library_names_what_to_install(
    synced, monkeypatch: pytest.MonkeyPatch, hidden: str, filename: str, loader: str, says: str
) -> None:
    root = synced(f'[models.m]\npath = "weights/{filename}"\nloader = "{loader}"\n', {f"weights/{filename}": b"x"})
    monkeypatch.setitem(sys.modules, hidden, None)  # makes `import hidden` fail
    with pytest.raises(UsageError) as caught:
        load("m", project=root)
    assert says in str(caught.value)
    assert caught.value.exit_code == 2
