"""PyInstaller support: the spec helpers, the hook, `pyinstaller-args`, and real frozen builds.

The helpers are tested on local `path = …` projects synced in-process; the
two real builds (a few seconds each: torch and onnxruntime are excluded) use a
model served by the local HTTP server, and run the frozen app as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shlex
import subprocess
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from helpers import b3, payload

import modelsync.pyinstaller as ms
from modelsync.errors import IntegrityError, ModelNotFoundError, NotSyncedError
from modelsync.hooks import get_hook_dirs
from modelsync.lockfile import Lock, LockedFile, LockedModel

REPO = Path(__file__).resolve().parent.parent

X = payload("x", 3000)
Y = payload("y", 2000)
ONE = payload("one", 1500)


def lock(run, root: Path) -> Path:
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def sync(run, root: Path, *args: str) -> Path:
    result = run("sync", *args, cwd=root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def two_models(project, run) -> Path:
    """`folder` (two files, group `g`) and `one` (one .onnx file, group `h`), locked, not synced."""
    root = project(
        """
        [models.folder]
        path = "assets/folder"
        group = "g"

        [models.one]
        path = "assets/one.onnx"
        group = "h"
        """,
        folder="my app",  # a space: quoting matters for pyinstaller-args
    )
    (root / "assets" / "folder" / "sub").mkdir(parents=True)
    (root / "assets" / "folder" / "x.dat").write_bytes(X)
    (root / "assets" / "folder" / "sub" / "y.dat").write_bytes(Y)
    (root / "assets" / "one.onnx").write_bytes(ONE)
    return lock(run, root)


# --------------------------------------------------------------------------
# excludes()


def model(name: str, *paths: str, loader: str | None = None) -> LockedModel:
    return LockedModel(name, {}, tuple(LockedFile(path, 1, "0" * 64) for path in paths), loader=loader)


def test_loaders_come_from_the_loader_key_else_the_suffix() -> None:
    lock = Lock("h", (model("a", "m.onnx"), model("b", "w/model.SafeTensors"), model("c", "notes.txt")))
    assert ms.needed_loaders(lock) == {"onnx", "torch"}
    assert ms.needed_loaders(Lock("h", (model("a", "m.onnx", loader="file"),))) == {"file"}
    assert ms.needed_loaders(Lock("h", (model("a", "x.pt"), model("b", "y.bin"), model("c", "z.ckpt", "z.pth")))) == {"torch"}


def test_no_torch_model_leaves_torch_out_whole(two_models: Path) -> None:
    excluded = ms.excludes(two_models)
    assert {"torch", "torchvision", "torchaudio", "triton", "functorch"} <= set(excluded)
    assert "onnxruntime" not in excluded and "onnx" not in excluded  # one.onnx is an ONNX model
    assert "torch._inductor" not in excluded  # trims are for a torch that stays
    assert ms.excludes(two_models, extra=["tkinter"])[-1] == "tkinter"


def test_a_torch_model_trims_torch_and_keeps_what_it_imports_at_start_up(project, run) -> None:
    import torch  # noqa: F401 - a dev dependency: the trims are checked against the installed torch

    root = project('[models.w]\npath = "w.safetensors"\n')
    (root / "w.safetensors").write_bytes(ONE)
    lock(run, root)
    with pytest.warns(UserWarning) as caught:
        excluded = ms.excludes(root, extra=["torch.distributed", "torch.compiler"])
    assert "torch" not in excluded and {"onnxruntime", "onnx"} <= set(excluded)
    assert {"torch._inductor", "torch._dynamo", "torch.onnx", "torch.utils.tensorboard", "sympy"} <= set(excluded)
    # Excluding either crashes `import torch` in the frozen app: dropped, said why.
    assert "torch.distributed" not in excluded and "torch.compiler" not in excluded
    messages = [str(warning.message) for warning in caught]
    assert any("'torch.distributed'" in message and "start-up" in message for message in messages)
    assert any("'torch.compiler'" in message for message in messages)


@pytest.fixture
def fake_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`fakelib` imports `fakelib.eager` when imported, and never `fakelib.lazy`; on PYTHONPATH only."""
    folder = tmp_path / "site"
    package = folder / "fakelib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from . import eager\n", encoding="utf-8")
    (package / "eager.py").write_text("import fakelib_dep\n", encoding="utf-8")
    (package / "lazy.py").write_text("", encoding="utf-8")
    (folder / "fakelib_dep.py").write_text("", encoding="utf-8")
    (folder / "brokenlib.py").write_text("raise RuntimeError('no GPU driver')\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(folder))
    return folder


def test_the_validator_drops_what_a_kept_library_imports_at_start_up(two_models: Path, fake_library: Path, monkeypatch) -> None:
    monkeypatch.setitem(ms.LOADER_LIBRARIES, "onnx", ("fakelib", "not_installed_anywhere"))
    wanted = ["fakelib.eager", "fakelib.lazy", "fakelib_dep", "unrelated"]
    with pytest.warns(UserWarning) as caught:
        excluded = ms.excludes(two_models, extra=wanted)
    assert "fakelib.lazy" in excluded and "unrelated" in excluded
    assert "fakelib.eager" not in excluded and "fakelib_dep" not in excluded
    messages = sorted(str(warning.message) for warning in caught)
    assert len(messages) == 2, messages  # nothing about the library that is not installed
    assert "'fakelib.eager'" in messages[0] and "fakelib" in messages[0]
    assert "'fakelib_dep'" in messages[1]


def test_a_library_that_fails_to_import_is_not_checked_but_said(fake_library: Path) -> None:
    with pytest.warns(UserWarning, match="(?s)cannot check the exclusions against 'brokenlib'.*no GPU driver"):
        assert ms.validated(["brokenlib.x"], ["brokenlib"]) == ["brokenlib.x"]


# --------------------------------------------------------------------------
# datas()


def lock_pair(root: Path) -> tuple[str, str]:
    return (str(root / "models.lock"), "modelsync_bundle")


def test_datas_without_bundle_is_the_lock(two_models: Path) -> None:
    assert ms.datas(two_models) == [lock_pair(two_models)]


def test_datas_bundles_verified_view_files_and_bundle_json(two_models: Path, run) -> None:
    sync(run, two_models)
    pairs = ms.datas(two_models, bundle=["g"])  # a group: its one model
    view = two_models / "models" / "folder"
    assert pairs[:-1] == [
        lock_pair(two_models),
        (str(view / "sub" / "y.dat"), "modelsync_bundle/models/folder/sub"),
        (str(view / "x.dat"), "modelsync_bundle/models/folder"),
    ]
    source, dest = pairs[-1]
    assert dest == "modelsync_bundle" and Path(source).name == "bundle.json"
    assert json.loads(Path(source).read_text(encoding="utf-8")) == {
        "version": 1,
        "lock-sha256": hashlib.sha256((two_models / "models.lock").read_bytes()).hexdigest(),
        "models": {
            "folder": {
                "variant": None,
                "single": False,
                "loader": None,
                "files": {"sub/y.dat": {"size": len(Y), "blake3": b3(Y)}, "x.dat": {"size": len(X), "blake3": b3(X)}},
            }
        },
    }
    both = ms.datas(two_models, bundle=["g", "one"])
    assert (str(two_models / "models" / "one" / "one.onnx"), "modelsync_bundle/models/one") in both
    manifest = json.loads(Path(both[-1][0]).read_text(encoding="utf-8"))
    assert sorted(manifest["models"]) == ["folder", "one"] and manifest["models"]["one"]["single"] is True
    assert Path(both[-1][0]) != Path(source)  # another bundle, another file: builds never share one


@pytest.mark.parametrize("changed", [X[:-1] + bytes([X[-1] ^ 1]), X + b"!"], ids=["same size", "longer"])
def test_datas_refuses_a_view_file_whose_bytes_changed(two_models: Path, run, changed: bytes) -> None:
    sync(run, two_models)
    view_file = two_models / "models" / "folder" / "x.dat"
    view_file.unlink()  # it may be a link to the cache's read-only blob
    view_file.write_bytes(changed)
    with pytest.raises(IntegrityError) as caught:
        ms.datas(two_models, bundle=["folder"])
    assert caught.value.model == "folder" and caught.value.file == "x.dat"
    assert caught.value.mismatch.algorithm == ("blake3" if len(changed) == len(X) else "size")
    assert "modelsync sync" in caught.value.hint


def test_datas_names_the_command_that_syncs_a_missing_model(two_models: Path, run) -> None:
    with pytest.raises(NotSyncedError, match="not synced") as caught:
        ms.datas(two_models, bundle=["one"])  # nothing synced yet
    assert "`modelsync sync`" in caught.value.hint
    sync(run, two_models, "--group", "g")
    with pytest.raises(NotSyncedError, match="'one' is not synced") as caught:
        ms.datas(two_models, bundle=["one"])
    assert "`modelsync sync --group h`" in caught.value.hint
    (two_models / "models" / "folder" / "x.dat").unlink()
    with pytest.raises(NotSyncedError, match="missing from the view"):
        ms.datas(two_models, bundle=["g"])


def test_datas_refuses_a_lock_changed_since_the_sync(two_models: Path, run) -> None:
    sync(run, two_models)
    with open(two_models / "models.lock", "a", encoding="utf-8") as handle:
        handle.write("\n")
    with pytest.raises(NotSyncedError, match="models.lock changed since the last sync"):
        ms.datas(two_models, bundle=["one"])


def test_datas_lists_the_models_and_groups_for_an_unknown_name(two_models: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        ms.datas(two_models, bundle=["one", "vad"])
    assert "'vad'" in caught.value.message
    assert "models: folder, one; groups: g, h" in caught.value.hint


# --------------------------------------------------------------------------
# The hook


def hook_file() -> Path:
    return Path(get_hook_dirs()[0]) / "hook-modelsync.py"


def test_the_hook_folder_is_registered_with_pyinstaller() -> None:
    registered = [entry.value for entry in entry_points(group="pyinstaller40") if entry.name == "hook-dirs"]
    assert "modelsync.hooks:get_hook_dirs" in registered
    assert hook_file().is_file()


def test_the_hook_bundles_the_projects_lock(two_models: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no project here: MODELSYNC_PROJECT names it
    monkeypatch.setenv("MODELSYNC_PROJECT", str(two_models))
    hook = runpy.run_path(str(hook_file()))
    assert hook["datas"] == [lock_pair(two_models)]
    assert "huggingface_hub" in hook["excludedimports"]
    monkeypatch.delenv("MODELSYNC_PROJECT")
    monkeypatch.chdir(two_models / "assets" / "folder")  # the nearest models.lock above
    assert runpy.run_path(str(hook_file()))["datas"] == [lock_pair(two_models)]


def test_the_hook_warns_and_goes_on_without_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    assert runpy.run_path(str(hook_file()))["datas"] == []
    assert any("modelsync: no models.lock bundled" in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------
# pyinstaller-args


def test_pyinstaller_args_prints_one_quoted_option_per_line(two_models: Path, run) -> None:
    sync(run, two_models)
    result = run("pyinstaller-args", "--bundle", "g", "one", cwd=two_models)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    options = [shlex.split(line) for line in lines]
    assert all(len(option) == 2 for option in options)
    assert [value for flag, value in options if flag == "--exclude-module"] == ms.excludes(two_models)
    added = [value for flag, value in options if flag == "--add-data"]
    assert added[:-1] == [f"{source}:{dest}" for source, dest in ms.datas(two_models, ["g", "one"])[:-1]]
    assert added[-1].endswith("bundle.json:modelsync_bundle")
    assert "'" in lines[-1]  # "my app": quoted for the shell


def test_pyinstaller_args_warns_on_stderr(two_models: Path, run, fake_library: Path, monkeypatch) -> None:
    monkeypatch.setitem(ms.LOADER_LIBRARIES, "onnx", ("fakelib",))
    monkeypatch.setitem(ms.TRIMS, "onnx", ("fakelib.eager", "fakelib.lazy"))
    result = run("pyinstaller-args", cwd=two_models)
    assert result.returncode == 0, result.stderr
    assert "--exclude-module fakelib.lazy" in result.stdout.splitlines()
    assert "fakelib.eager" not in result.stdout
    assert "warning: not excluding 'fakelib.eager'" in " ".join(result.stderr.split())


def test_pyinstaller_args_unknown_name_is_a_usage_error(two_models: Path, run) -> None:
    result = run("pyinstaller-args", "--bundle", "nope", cwd=two_models)
    assert result.returncode == 2 and result.stdout == ""
    assert "no model named 'nope'" in result.stderr and "groups: g, h" in result.stderr


# --------------------------------------------------------------------------
# Real builds: a tiny app, frozen (onedir), run as a user would

APP = """\
import json
import blake3
import modelsync
path = modelsync.ensure("x")
data = path.read_bytes()
print(json.dumps({"path": str(path), "size": len(data), "blake3": blake3.blake3(data).hexdigest()}))
"""

SPEC = """\
import modelsync.pyinstaller as ms
a = Analysis(["app.py"], pathex=[{repo!r}], excludes=ms.excludes())
pyz = PYZ(a.pure)
exe = EXE(pyz, a.scripts, [], exclude_binaries=True, name="app")
coll = COLLECT(exe, a.binaries, a.datas, name="app")
"""

SERVED = payload("served", 200_000)


@pytest.fixture
def served_project(project, run, http_server) -> Path:
    """A project whose model `x` is on the local server (`loader = "file"`: no torch, no onnxruntime)."""
    http_server.add("x.bin", SERVED)
    root = project(f'[models.x]\nurl = "{http_server.url("x.bin")}"\nloader = "file"\n', folder="proj")
    (root / "app.py").write_text(APP, encoding="utf-8")
    return lock(run, root)


def pyinstaller(root: Path, *args: str) -> Path:
    """Build in ``root`` (the hook finds models.lock above the working folder); the app's folder."""
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", "dist", "--workpath", "build", *args]
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return root / "dist" / "app"


def run_frozen(app: Path, tmp_path: Path, **env: str) -> dict:
    """Run the frozen app with an empty cache of its own: what it finds, it found in its own places."""
    cache = tempfile.mkdtemp(prefix="frozen-cache-", dir=tmp_path)
    full_env = {**os.environ, "MODELSYNC_CACHE_DIR": cache, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg"), **env}
    completed = subprocess.run([str(app / "app")], cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.splitlines()[-1])


def test_frozen_app_downloads_beside_the_executable_on_first_use_then_runs_offline(served_project: Path, http_server, tmp_path: Path) -> None:
    (served_project / "app.spec").write_text(SPEC.format(repo=str(REPO)), encoding="utf-8")
    app = pyinstaller(served_project, "app.spec")
    assert (app / "_internal" / "modelsync_bundle" / "models.lock").read_bytes() == (served_project / "models.lock").read_bytes()
    assert not (app / "_internal" / "torch").exists() and not (app / "_internal" / "onnxruntime").exists()

    first = run_frozen(app, tmp_path)
    assert first == {"path": str(app / "models" / "x" / "x.bin"), "size": len(SERVED), "blake3": b3(SERVED)}
    assert any(request.method == "GET" and request.path == "/x.bin" for request in http_server.requests)
    state = json.loads((app / ".modelsync" / "state.json").read_text(encoding="utf-8"))
    assert "x" in state["models"]

    http_server.files.clear()  # from now on the server has nothing
    seen = len(http_server.requests)
    assert run_frozen(app, tmp_path) == first
    assert len(http_server.requests) == seen


def test_frozen_app_with_a_bundled_model_needs_no_network(served_project: Path, run, http_server, tmp_path: Path) -> None:
    sync(run, served_project)
    listed = run("pyinstaller-args", "--bundle", "x", cwd=served_project)
    assert listed.returncode == 0, listed.stderr
    options = [word for line in listed.stdout.splitlines() for word in shlex.split(line)]
    app = pyinstaller(served_project, "--onedir", "--paths", str(REPO), *options, "app.py")

    http_server.files.clear()
    seen = len(http_server.requests)
    result = run_frozen(app, tmp_path, MODELSYNC_OFFLINE="1")
    bundled = app / "_internal" / "modelsync_bundle" / "models" / "x" / "x.bin"
    assert result == {"path": str(bundled), "size": len(SERVED), "blake3": b3(SERVED)}
    assert len(http_server.requests) == seen
    assert not (app / "models").exists()  # nothing downloaded beside it
    manifest = json.loads((app / "_internal" / "modelsync_bundle" / "bundle.json").read_text(encoding="utf-8"))
    assert manifest["models"]["x"]["files"] == {"x.bin": {"size": len(SERVED), "blake3": b3(SERVED)}}
    assert manifest["lock-sha256"] == hashlib.sha256((served_project / "models.lock").read_bytes()).hexdigest()
