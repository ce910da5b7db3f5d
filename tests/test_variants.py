"""Hardware-aware variants, end to end: what a user of `[[models.NAME.variant]]` sees.

Every variant is a different file served by the local HTTP server, so the
tests can tell from the view, the cache and the server's request log which
variant was picked and what was downloaded. No GPU is needed: the
``MODELSYNC_OVERRIDE_<FACT>`` variables and named environments stand in for
one. The marker language and the probes have their own tests
(test_markers.py, test_hardware.py); this file covers the manifest, the
universal lock, selection at sync, the state file, `path()`, `status`,
`explain` and `detect`.

Most tests run the CLI's ``main()`` in-process (``run``); those where the
real process matters (exit codes and stderr of a user's shell, what a fresh
interpreter imports) use ``cli`` (``python -m modelsync``).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import b3, payload
from helpers import assert_clean_failure

from modelsync import _runtime

GPU = {"MODELSYNC_OVERRIDE_ACCELERATOR": "cuda", "MODELSYNC_OVERRIDE_VRAM_GIB": "24", "MODELSYNC_OVERRIDE_CUDA": "12.4"}
CPU = {"MODELSYNC_OVERRIDE_ACCELERATOR": "cpu"}
FP16_WHEN = "accelerator == 'cuda' and vram_gib >= 4"


# --------------------------------------------------------------------------
# helpers


def blob_path(cache: Path, data: bytes) -> Path:
    digest = b3(data)
    return cache / "blobs" / "blake3" / digest[:2] / digest[2:]


def gets(server, path: str | None = None) -> list[str]:
    return [r.path for r in server.requests if r.method == "GET" and (path is None or r.path == path)]


def view_files(root: Path, model: str) -> dict[str, bytes]:
    folder = root / "models" / model
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def read_lock(root: Path) -> dict:
    return tomllib.loads((root / "models.lock").read_text(encoding="utf-8"))


def locked(root: Path, name: str) -> dict:
    return next(m for m in read_lock(root)["model"] if m["name"] == name)


def state(root: Path) -> dict:
    return json.loads((root / ".modelsync" / "state.json").read_text(encoding="utf-8"))


def fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> Path:
    """An empty cache for this process and every CLI run after: what a new machine has."""
    cache = tmp_path / name
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(cache))
    return cache


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the n-th line of the (dedented) manifest containing ``needle``."""
    seen = 0
    for number, line in enumerate(textwrap.dedent(text).splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in manifest")


@dataclass
class Vad:
    root: Path
    manifest: str
    half: bytes  # fp16-gpu's file
    full: bytes  # fp32-cpu's file
    upscaler: bytes  # a model without variants


ENVIRONMENTS = """
[environments]
cpu = { accelerator = "cpu" }
gpu = { accelerator = "cuda", cuda = "12.4", vram_gib = 24 }
"""


def vad_manifest(server, *, half_path: str = "v/vad_half.onnx", when: str = FP16_WHEN, environments: str = ENVIRONMENTS) -> str:
    return f'''
{environments}
[models.upscaler]
url = "{server.url("u/upscaler.pth")}"

[models.vad]
description = "voice activity detection"
loader = "onnx"
[[models.vad.variant]]
name = "fp16-gpu"
when = "{when}"
url = "{server.url(half_path)}"
[[models.vad.variant]]
name = "fp32-cpu"
url = "{server.url("v/vad.onnx")}"
'''


@pytest.fixture
def vad(http_server, project) -> Vad:
    half, full, upscaler = payload("half", 1500), payload("full", 2600), payload("upscaler", 700)
    http_server.add("v/vad_half.onnx", half)
    http_server.add("v/vad.onnx", full)
    http_server.add("u/upscaler.pth", upscaler)
    text = vad_manifest(http_server)
    return Vad(project(text), text, half, full, upscaler)


@pytest.fixture
def locked_vad(vad, run, monkeypatch, tmp_path, http_server) -> Vad:
    """The vad project locked, then a fresh cache and an empty request log: a new machine with the repository."""
    result = run("lock", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    fresh_cache(monkeypatch, tmp_path, "machine-cache")
    http_server.requests.clear()
    return vad


# --------------------------------------------------------------------------
# models.toml: variants parse, and every mistake is located


BASE = '''
[models.vad]
url = "http://127.0.0.1:9/vad.onnx"
'''

BAD_VARIANTS = {
    "no-name": (
        BASE + '''
[[models.vad.variant]]
when = "accelerator == 'cuda'"
filename = "half.onnx"
[[models.vad.variant]]
name = "fp32"
''',
        ("[[models.vad.variant]]", 1),
        "models.vad.variant[0]",
        ["a variant needs a name", 'name = "'],
    ),
    "duplicate-name": (
        BASE + '''
[[models.vad.variant]]
name = "fp32"
when = "accelerator == 'cuda'"
filename = "half.onnx"
[[models.vad.variant]]
name = "fp32"
''',
        ('name = "fp32"', 2),
        "models.vad.variant[1].name",
        ["two variants are named 'fp32'"],
    ),
    "fallback-not-last": (
        BASE + '''
[[models.vad.variant]]
name = "fp32"
filename = "full.onnx"
[[models.vad.variant]]
name = "fp16"
when = "accelerator == 'cuda'"
''',
        ('name = "fp32"', 1),
        "models.vad.variant[0].name",
        ["'fp32' has no `when`", "not the last", "only the last variant may omit `when`"],
    ),
    "unknown-fact": (
        BASE + '''
[[models.vad.variant]]
name = "fp16"
when = "accelerator == 'cuda' and vram >= 4"
[[models.vad.variant]]
name = "fp32"
filename = "full.onnx"
''',
        ("when =", 1),
        "models.vad.variant[0].when",
        ["unknown fact 'vram'", "did you mean 'vram_gib'?"],
    ),
    "unknown-variant-key": (
        BASE + '''
[[models.vad.variant]]
name = "fp16"
when = "accelerator == 'cuda'"
filenme = "half.onnx"
[[models.vad.variant]]
name = "fp32"
''',
        ("filenme", 1),
        "models.vad.variant[0].filenme",
        ["unknown key 'filenme'", "did you mean 'filename'?"],
    ),
    "metadata-in-variant": (
        BASE + '''
[[models.vad.variant]]
name = "fp16"
when = "accelerator == 'cuda'"
description = "half precision"
[[models.vad.variant]]
name = "fp32"
''',
        ("description", 1),
        "models.vad.variant[0].description",
        ["unknown key 'description'"],
    ),
    "unknown-fact-in-environment": (
        """
[environments]
gpu = { acelerator = "cuda" }
""" + BASE + """
[[models.vad.variant]]
name = "fp16"
when = "accelerator == 'cuda'"
[[models.vad.variant]]
name = "fp32"
filename = "full.onnx"
""",
        ("gpu = {", 1),
        "environments.gpu.acelerator",
        ["unknown fact 'acelerator'", "did you mean 'accelerator'?"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VARIANTS))
def test_bad_variant_is_exit_2_naming_line_and_key(case, project, run, http_server):
    text, (needle, occurrence), key, fragments = BAD_VARIANTS[case]
    root = project(text)
    result = run("lock", cwd=root)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"models.toml:{line_of(text, needle, occurrence)}: {key}:" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not (root / "models.lock").exists()
    assert http_server.requests == []


def test_bad_marker_shows_the_marker_with_a_caret_under_the_mistake(project, cli):
    text = BASE + '''
[[models.vad.variant]]
name = "fp16"
when = "accelerator == 'cuda' and and vram_gib >= 4"
[[models.vad.variant]]
name = "fp32"
filename = "full.onnx"
'''
    root = project(text)
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert f"models.toml:{line_of(text, 'when =')}: models.vad.variant[0].when: invalid marker" in result.stderr
    lines = result.stderr.splitlines()
    shown = next(i for i, line in enumerate(lines) if line.strip() == "accelerator == 'cuda' and and vram_gib >= 4")
    caret = lines[shown + 1]
    assert caret.strip() == "^", result.stderr
    # the caret sits under the second `and`, the token that is wrong
    assert caret.index("^") == lines[shown].index("and and") + len("and ")
    assert not (root / "models.lock").exists()


def test_model_level_keys_are_defaults_for_each_variant(http_server, project, run):
    a, b = payload("a", 900), payload("b", 1100)
    url_a = http_server.add("dl/generic.bin", a)
    url_b = http_server.add("dl/half.bin", b)
    root = project(f'''
        [models.vad]
        url = "{url_a}"
        loader = "onnx"
        description = "shared metadata"
        [[models.vad.variant]]
        name = "fp16-gpu"
        when = "accelerator == 'cuda'"
        url = "{url_b}"
        filename = "vad-half.onnx"
        [[models.vad.variant]]
        name = "fp32-cpu"
        filename = "vad.onnx"
    ''')
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    model = locked(root, "vad")
    assert model["description"] == "shared metadata" and model["loader"] == "onnx"
    assert model["source"] == {"url": url_a}
    # each variant records only what differs from the model
    assert model["variants"] == [
        {"name": "fp16-gpu", "when": "accelerator == 'cuda'", "source": {"filename": "vad-half.onnx", "url": url_b}},
        {"name": "fp32-cpu", "source": {"filename": "vad.onnx"}},
    ]
    files = {f["variant"]: f for f in model["files"]}
    assert (files["fp16-gpu"]["path"], files["fp16-gpu"]["url"], files["fp16-gpu"]["blake3"]) == ("vad-half.onnx", url_b, b3(b))
    assert (files["fp32-cpu"]["path"], files["fp32-cpu"]["url"], files["fp32-cpu"]["blake3"]) == ("vad.onnx", url_a, b3(a))

    assert run("sync", cwd=root, env=CPU).returncode == 0
    assert view_files(root, "vad") == {"vad.onnx": a}
    assert state(root)["models"]["vad"]["loader"] == "onnx"
    assert run("sync", cwd=root, env={"MODELSYNC_OVERRIDE_ACCELERATOR": "cuda"}).returncode == 0
    assert view_files(root, "vad") == {"vad-half.onnx": b}


# --------------------------------------------------------------------------
# lock: universal, with the environments table


def test_lock_is_the_same_whatever_machine_runs_it(vad, run, monkeypatch, tmp_path):
    assert run("lock", cwd=vad.root, env=CPU).returncode == 0
    on_cpu = (vad.root / "models.lock").read_bytes()

    (vad.root / "models.lock").unlink()
    fresh_cache(monkeypatch, tmp_path, "gpu-box")
    assert run("lock", cwd=vad.root, env=GPU).returncode == 0
    assert (vad.root / "models.lock").read_bytes() == on_cpu

    # lock never looks at the hardware at all
    import modelsync.hardware

    def no_probe(*args, **kwargs):
        raise AssertionError("lock probed the hardware")

    monkeypatch.setattr(modelsync.hardware, "detect", no_probe)
    (vad.root / "models.lock").unlink()
    result = run("lock", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    assert (vad.root / "models.lock").read_bytes() == on_cpu


def test_lock_pins_every_variant_with_its_when_and_the_environments_table(vad, run):
    assert run("lock", cwd=vad.root, env=CPU).returncode == 0
    text = (vad.root / "models.lock").read_text()
    model = locked(vad.root, "vad")
    assert [(v["name"], v.get("when")) for v in model["variants"]] == [("fp16-gpu", FP16_WHEN), ("fp32-cpu", None)]
    assert sorted((f["variant"], f["path"], f["size"], f["blake3"]) for f in model["files"]) == [
        ("fp16-gpu", "vad_half.onnx", len(vad.half), b3(vad.half)),
        ("fp32-cpu", "vad.onnx", len(vad.full), b3(vad.full)),
    ]
    # one reviewable line says which variant each declared environment gets
    assert 'environments = { cpu = "fp32-cpu", gpu = "fp16-gpu" }\n' in text
    assert model["environments"] == {"cpu": "fp32-cpu", "gpu": "fp16-gpu"}
    # a model without variants has neither
    upscaler = locked(vad.root, "upscaler")
    assert "variants" not in upscaler and "environments" not in upscaler
    assert all("variant" not in f for f in upscaler["files"])


def test_lock_fails_when_an_environment_matches_no_variant_of_a_model_without_fallback(http_server, project, cli):
    url = http_server.add("d/det_cuda.onnx", payload("det", 500))
    root = project(f'''
        [environments]
        cpu = {{ accelerator = "cpu" }}
        gpu = {{ accelerator = "cuda", vram_gib = 24 }}

        [models.det]
        [[models.det.variant]]
        name = "cuda-only"
        when = "accelerator == 'cuda'"
        url = "{url}"
    ''')
    result = cli("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "environment 'cpu' matches no variant of model 'det'" in result.stderr, result.stderr
    assert "fallback" in result.stderr
    assert not (root / "models.lock").exists()
    assert gets(http_server) == []  # refused before any download


def test_a_model_without_fallback_is_fine_when_every_environment_matches(http_server, project, run):
    gpu_url = http_server.add("d/det_cuda.onnx", payload("det-cuda", 500))
    cpu_url = http_server.add("d/det_cpu.onnx", payload("det-cpu", 400))
    root = project(f'''
        [environments]
        cpu = {{ accelerator = "cpu" }}
        gpu = {{ accelerator = "cuda" }}

        [models.det]
        [[models.det.variant]]
        name = "cuda"
        when = "accelerator == 'cuda'"
        url = "{gpu_url}"
        [[models.det.variant]]
        name = "cpu"
        when = "accelerator == 'cpu'"
        url = "{cpu_url}"
    ''')
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    assert locked(root, "det")["environments"] == {"cpu": "cpu", "gpu": "cuda"}


def test_changing_only_a_when_relocks_without_downloading(locked_vad, run, http_server):
    vad = locked_vad
    before = locked(vad.root, "vad")
    (vad.root / "models.toml").write_text(textwrap.dedent(vad_manifest(http_server, when="accelerator == 'cuda' and vram_gib >= 32")))
    check = run("lock", "--check", cwd=vad.root)
    assert check.returncode == 1, check.stderr
    result = run("lock", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    assert gets(http_server) == []
    after = locked(vad.root, "vad")
    assert after["variants"][0]["when"] == "accelerator == 'cuda' and vram_gib >= 32"
    assert after["files"] == before["files"]
    # a 24 GiB GPU no longer meets the fp16 variant: the reviewer sees it in the diff
    assert after["environments"] == {"cpu": "fp32-cpu", "gpu": "fp32-cpu"}
    assert run("lock", "--check", cwd=vad.root).returncode == 0


def test_changing_only_an_environment_rewrites_its_line_without_downloading(locked_vad, run, http_server):
    vad = locked_vad
    small = ENVIRONMENTS.replace("vram_gib = 24", "vram_gib = 2")
    (vad.root / "models.toml").write_text(textwrap.dedent(vad_manifest(http_server, environments=small)))
    result = run("lock", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    assert gets(http_server) == []
    assert 'environments = { cpu = "fp32-cpu", gpu = "fp32-cpu" }\n' in (vad.root / "models.lock").read_text()


def test_changing_one_variants_file_re_resolves_only_that_variant(locked_vad, run, http_server):
    vad = locked_vad
    before = {f["variant"]: f for f in locked(vad.root, "vad")["files"]}
    upscaler_before = locked(vad.root, "upscaler")
    new_half = payload("half-v2", 1700)
    http_server.add("v/vad_half_v2.onnx", new_half)
    (vad.root / "models.toml").write_text(textwrap.dedent(vad_manifest(http_server, half_path="v/vad_half_v2.onnx")))
    result = run("lock", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    assert len(gets(http_server, "/v/vad_half_v2.onnx")) == 1
    assert gets(http_server, "/v/vad.onnx") == []
    assert gets(http_server, "/v/vad_half.onnx") == []
    assert gets(http_server, "/u/upscaler.pth") == []
    after = {f["variant"]: f for f in locked(vad.root, "vad")["files"]}
    assert after["fp32-cpu"] == before["fp32-cpu"]
    assert (after["fp16-gpu"]["path"], after["fp16-gpu"]["blake3"]) == ("vad_half_v2.onnx", b3(new_half))
    assert locked(vad.root, "upscaler") == upscaler_before


def test_lock_says_which_variant_it_resolves(locked_vad, run, http_server):
    vad = locked_vad
    http_server.add("v/vad_half_v2.onnx", payload("half-v2", 1700))
    (vad.root / "models.toml").write_text(textwrap.dedent(vad_manifest(http_server, half_path="v/vad_half_v2.onnx")))
    result = run("lock", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    # `modelsync lock` prints "resolving vad[fp16-gpu]": the variant's name must survive the console
    assert "resolving vad[fp16-gpu]" in result.stderr, result.stderr
    assert "fp32-cpu" not in result.stderr


# --------------------------------------------------------------------------
# sync: per-machine selection, only the selected variant fetched and placed


@pytest.mark.parametrize(
    ("overrides", "variant", "file"),
    [(GPU, "fp16-gpu", "vad_half.onnx"), (CPU, "fp32-cpu", "vad.onnx")],
    ids=["cuda", "cpu"],
)
def test_sync_fetches_and_places_only_the_selected_variant(locked_vad, run, http_server, isolated, overrides, variant, file):
    vad = locked_vad
    result = run("sync", cwd=vad.root, env=overrides)
    assert result.returncode == 0, result.stderr
    expected = vad.half if variant == "fp16-gpu" else vad.full
    assert view_files(vad.root, "vad") == {file: expected}
    assert view_files(vad.root, "upscaler") == {"upscaler.pth": vad.upscaler}
    assert sorted(gets(http_server)) == sorted([f"/v/{file}", "/u/upscaler.pth"])
    assert state(vad.root)["models"]["vad"]["variant"] == variant


def test_sync_with_only_the_accelerator_override(http_server, project, run):
    half, full = payload("h", 300), payload("f", 400)
    root = project(f'''
        [models.vad]
        [[models.vad.variant]]
        name = "fp16"
        when = "accelerator == 'cuda'"
        url = "{http_server.add("h.onnx", half)}"
        [[models.vad.variant]]
        name = "fp32"
        url = "{http_server.add("f.onnx", full)}"
    ''')
    assert run("sync", cwd=root, env={"MODELSYNC_OVERRIDE_ACCELERATOR": "cuda"}).returncode == 0
    assert view_files(root, "vad") == {"h.onnx": half}

    # without any override: whatever this machine is (a machine without a GPU gets fp32)
    from modelsync import hardware

    on_cuda = hardware.detect(need={"accelerator"})["accelerator"] == "cuda"
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert view_files(root, "vad") == ({"h.onnx": half} if on_cuda else {"f.onnx": full})
    assert state(root)["selection"]["facts"]["accelerator"]["source"] != "override:MODELSYNC_OVERRIDE_ACCELERATOR"


def test_dry_run_and_json_report_only_the_selected_variant(locked_vad, run, http_server):
    vad = locked_vad
    dry = run("sync", "--dry-run", cwd=vad.root, env=GPU)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"^fetch  vad/vad_half\.onnx ", dry.stdout, re.MULTILINE), dry.stdout
    assert "vad/vad.onnx" not in dry.stdout
    everything = run("sync", "--dry-run", "--all-variants", cwd=vad.root, env=GPU)
    assert re.search(r"^fetch  vad/vad\.onnx ", everything.stdout, re.MULTILINE), everything.stdout
    assert "place  vad/vad.onnx" not in everything.stdout
    assert http_server.requests == [] and view_files(vad.root, "vad") == {}

    report = run("sync", "--json", cwd=vad.root, env=GPU)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["variants"] == {"upscaler": None, "vad": "fp16-gpu"}
    assert sorted(f["path"] for f in data["fetch"]) == ["upscaler.pth", "vad_half.onnx"]


def test_switching_machines_replaces_the_view_file_and_downloads_only_what_is_missing(locked_vad, run, http_server):
    vad = locked_vad
    import modelsync

    assert run("sync", cwd=vad.root, env=CPU).returncode == 0
    assert view_files(vad.root, "vad") == {"vad.onnx": vad.full}
    assert modelsync.path("vad", project=vad.root) == vad.root / "models" / "vad" / "vad.onnx"
    http_server.requests.clear()

    result = run("sync", cwd=vad.root, env=GPU)
    assert result.returncode == 0, result.stderr
    assert view_files(vad.root, "vad") == {"vad_half.onnx": vad.half}  # the fp32 file is gone
    assert gets(http_server) == ["/v/vad_half.onnx"]
    assert state(vad.root)["models"]["vad"]["variant"] == "fp16-gpu"
    _runtime._cache.clear()
    assert modelsync.path("vad", project=vad.root) == vad.root / "models" / "vad" / "vad_half.onnx"
    http_server.requests.clear()

    # back to the CPU: both blobs are cached now, nothing is downloaded
    result = run("sync", cwd=vad.root, env=CPU)
    assert result.returncode == 0, result.stderr
    assert view_files(vad.root, "vad") == {"vad.onnx": vad.full}
    assert gets(http_server) == []


def test_switching_variants_that_share_a_file_name_replaces_the_content(http_server, project, run):
    half, full = payload("same-h", 800), payload("same-f", 900)
    root = project(f'''
        [models.vad]
        filename = "model.onnx"
        url = "{http_server.add("f/full.onnx", full)}"
        [[models.vad.variant]]
        name = "fp16"
        when = "accelerator == 'cuda'"
        url = "{http_server.add("f/half.onnx", half)}"
        [[models.vad.variant]]
        name = "fp32"
    ''')
    assert run("sync", cwd=root, env=CPU).returncode == 0
    assert view_files(root, "vad") == {"model.onnx": full}
    assert run("sync", cwd=root, env=GPU).returncode == 0
    assert view_files(root, "vad") == {"model.onnx": half}
    assert run("sync", cwd=root, env=CPU).returncode == 0
    assert view_files(root, "vad") == {"model.onnx": full}


@pytest.mark.parametrize("how", ["--env", "MODELSYNC_ENV"])
def test_named_environment_picks_its_variant(locked_vad, run, http_server, how):
    vad = locked_vad
    if how == "--env":
        result = run("sync", "--env", "gpu", cwd=vad.root)
    else:
        result = run("sync", cwd=vad.root, env={"MODELSYNC_ENV": "gpu"})
    assert result.returncode == 0, result.stderr
    assert view_files(vad.root, "vad") == {"vad_half.onnx": vad.half}
    assert sorted(gets(http_server)) == ["/u/upscaler.pth", "/v/vad_half.onnx"]
    recorded = state(vad.root)
    assert recorded["selection"]["environment"] == "gpu"
    assert recorded["models"]["vad"]["variant"] == "fp16-gpu"
    assert "gpu" in recorded["models"]["vad"]["reason"]


def test_a_named_environment_does_not_probe_the_hardware(locked_vad, run, monkeypatch):
    import modelsync.hardware

    def no_probe(*args, **kwargs):
        raise AssertionError("sync --env probed the hardware")

    monkeypatch.setattr(modelsync.hardware, "detect", no_probe)
    result = run("sync", "--env", "cpu", cwd=locked_vad.root)
    assert result.returncode == 0, result.stderr
    assert view_files(locked_vad.root, "vad") == {"vad.onnx": locked_vad.full}


def test_undeclared_environment_is_exit_2(locked_vad, cli, http_server):
    vad = locked_vad
    result = cli("sync", "--env", "tpu", cwd=vad.root)
    assert_clean_failure(result, 2)
    assert "'tpu'" in result.stderr and "not declared" in result.stderr, result.stderr
    assert "cpu, gpu" in result.stderr  # says which ones are
    assert gets(http_server) == []
    assert view_files(vad.root, "vad") == {}

    by_variable = cli("sync", cwd=vad.root, env={"MODELSYNC_ENV": "tpu"})
    assert_clean_failure(by_variable, 2)
    assert "'tpu'" in by_variable.stderr


def test_all_variants_fills_the_cache_but_the_view_holds_only_the_selected(locked_vad, run, http_server, tmp_path):
    vad = locked_vad
    cache = tmp_path / "machine-cache"
    result = run("sync", "--all-variants", cwd=vad.root, env=CPU)
    assert result.returncode == 0, result.stderr
    assert blob_path(cache, vad.half).read_bytes() == vad.half
    assert blob_path(cache, vad.full).read_bytes() == vad.full
    assert view_files(vad.root, "vad") == {"vad.onnx": vad.full}
    assert sorted(gets(http_server)) == ["/u/upscaler.pth", "/v/vad.onnx", "/v/vad_half.onnx"]
    http_server.requests.clear()

    # the image moves to a GPU machine, without network
    result = run("sync", "--offline", "--env", "gpu", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    assert http_server.requests == []
    assert view_files(vad.root, "vad") == {"vad_half.onnx": vad.half}


def test_offline_switch_without_all_variants_lists_the_missing_variant(locked_vad, run, http_server):
    vad = locked_vad
    assert run("sync", cwd=vad.root, env=CPU).returncode == 0
    http_server.requests.clear()
    result = run("sync", "--offline", "--env", "gpu", cwd=vad.root)
    assert result.returncode == 1, result.stderr
    assert "vad/vad_half.onnx" in result.stderr
    assert http_server.requests == []
    assert view_files(vad.root, "vad") == {"vad.onnx": vad.full}  # the view is left as it was


def test_frozen_without_models_toml_selects_by_markers_from_the_lock(locked_vad, run, http_server):
    vad = locked_vad
    (vad.root / "models.toml").unlink()
    result = run("sync", "--frozen", cwd=vad.root, env=GPU)
    assert result.returncode == 0, result.stderr
    assert view_files(vad.root, "vad") == {"vad_half.onnx": vad.half}
    assert gets(http_server, "/v/vad.onnx") == []

    result = run("sync", "--frozen", cwd=vad.root, env=CPU)
    assert result.returncode == 0, result.stderr
    assert view_files(vad.root, "vad") == {"vad.onnx": vad.full}
    # and a named environment comes from the lock's table
    result = run("sync", "--frozen", "--env", "gpu", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    assert view_files(vad.root, "vad") == {"vad_half.onnx": vad.half}
    assert not (vad.root / "models.toml").exists()


def no_fallback_manifest(server, optional: bool) -> str:
    return f'''
        [models.plain]
        url = "{server.add("p/plain.bin", payload("plain", 300))}"

        [models.det]
        {"optional = true" if optional else ""}
        [[models.det.variant]]
        name = "cuda"
        when = "accelerator == 'cuda'"
        url = "{server.add("d/cuda.onnx", payload("det-cuda", 500))}"
        [[models.det.variant]]
        name = "rocm"
        when = "accelerator == 'rocm'"
        url = "{server.add("d/rocm.onnx", payload("det-rocm", 600))}"
    '''


def test_required_model_with_no_fitting_variant_fails_naming_it(http_server, project, cli):
    root = project(no_fallback_manifest(http_server, optional=False))
    result = cli("sync", cwd=root, env=CPU)
    assert_clean_failure(result, 1)
    assert "'det'" in result.stderr, result.stderr
    assert "modelsync explain det" in result.stderr, result.stderr
    assert not (root / "models" / "det").exists()


def test_optional_model_with_no_fitting_variant_warns_and_the_rest_syncs(http_server, project, run):
    import modelsync

    root = project(no_fallback_manifest(http_server, optional=True))
    result = run("sync", cwd=root, env=CPU)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "det" in result.stderr, result.stderr
    assert (root / "models" / "plain" / "plain.bin").is_file()
    assert view_files(root, "det") == {}
    assert "det" not in state(root)["models"]
    with pytest.raises(modelsync.NotSyncedError):
        modelsync.path("det", project=root)
    status = run("status", "--json", cwd=root, env=CPU)
    assert status.returncode == 0, status.stderr
    row = next(r for r in json.loads(status.stdout)["models"] if r["name"] == "det")
    assert row["variant"] is None and row["status"] == "no variant"
    # with a GPU the same lock gives it its variant
    assert run("sync", cwd=root, env=GPU).returncode == 0
    assert view_files(root, "det") == {"cuda.onnx": payload("det-cuda", 500)}


# --------------------------------------------------------------------------
# the state file and path()


def test_state_records_variant_reason_and_facts_with_sources(locked_vad, run):
    vad = locked_vad
    assert run("sync", cwd=vad.root, env=GPU).returncode == 0
    recorded = state(vad.root)
    entry = recorded["models"]["vad"]
    assert entry["variant"] == "fp16-gpu"
    assert FP16_WHEN in entry["reason"] and "holds" in entry["reason"]
    assert recorded["models"]["upscaler"]["variant"] is None
    selection = recorded["selection"]
    assert selection["environment"] is None
    facts = selection["facts"]
    assert facts["accelerator"] == {"value": "cuda", "source": "override:MODELSYNC_OVERRIDE_ACCELERATOR"}
    assert facts["vram_gib"] == {"value": 24.0, "source": "override:MODELSYNC_OVERRIDE_VRAM_GIB"}

    assert run("sync", cwd=vad.root, env=CPU).returncode == 0
    recorded = state(vad.root)
    assert recorded["models"]["vad"]["variant"] == "fp32-cpu"
    assert "fallback" in recorded["models"]["vad"]["reason"]
    assert recorded["selection"]["facts"]["accelerator"] == {"value": "cpu", "source": "override:MODELSYNC_OVERRIDE_ACCELERATOR"}


def test_path_reads_the_selection_and_never_probes_hardware(locked_vad, run, monkeypatch):
    vad = locked_vad
    assert run("sync", cwd=vad.root, env=GPU).returncode == 0
    import modelsync
    import modelsync.hardware

    def no_probe(*args, **kwargs):
        raise AssertionError("path() probed the hardware")

    monkeypatch.setattr(modelsync.hardware, "detect", no_probe)
    # the machine now claims to be a CPU: path() still gives what sync selected and placed
    for name, value in CPU.items():
        monkeypatch.setenv(name, value)
    _runtime._cache.clear()
    found = modelsync.path("vad", project=vad.root)
    assert found == vad.root / "models" / "vad" / "vad_half.onnx"
    assert found.read_bytes() == vad.half


def test_path_in_a_fresh_interpreter_imports_no_hardware_module(locked_vad, run, tmp_path):
    import subprocess

    vad = locked_vad
    assert run("sync", cwd=vad.root, env=GPU).returncode == 0
    code = (
        "import json, sys, modelsync\n"
        "p = modelsync.path('vad')\n"
        "print(json.dumps({'path': str(p), 'hardware': 'modelsync.hardware' in sys.modules,"
        " 'markers': 'modelsync.markers' in sys.modules}))\n"
    )
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSYNC_OVERRIDE_")}
    env.update(MODELSYNC_PROJECT=str(vad.root), PYTHONPATH=str(Path(__file__).resolve().parent.parent), **CPU)
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"path": str(vad.root / "models" / "vad" / "vad_half.onnx"), "hardware": False, "markers": False}


# --------------------------------------------------------------------------
# status


def test_status_shows_the_variant(locked_vad, run):
    vad = locked_vad
    assert run("sync", cwd=vad.root, env=GPU).returncode == 0
    table = run("status", cwd=vad.root, env=GPU)
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:2] == ["model", "variant"], table.stdout
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:] if line.strip()}
    assert rows["vad"][1] == "fp16-gpu" and rows["vad"][-1] == "synced", table.stdout
    assert rows["upscaler"][1] == "-", table.stdout

    as_json = run("status", "--json", cwd=vad.root, env=GPU)
    assert as_json.returncode == 0
    models = {row["name"]: row for row in json.loads(as_json.stdout)["models"]}
    assert models["vad"]["variant"] == "fp16-gpu" and models["vad"]["status"] == "synced"
    assert models["vad"]["size"] == len(vad.half) and models["vad"]["files"] == 1
    assert models["upscaler"]["variant"] is None

    # another environment's variant is not in the view (its blob is not in this cache either)
    other = run("status", "--json", "--env", "cpu", cwd=vad.root)
    assert other.returncode == 0, other.stderr
    models = {row["name"]: row for row in json.loads(other.stdout)["models"]}
    assert models["vad"]["variant"] == "fp32-cpu" and models["vad"]["status"] == "missing"
    assert models["vad"]["size"] == len(vad.full)

    assert run("status", "--env", "tpu", cwd=vad.root).returncode == 2


# --------------------------------------------------------------------------
# explain


def test_explain_on_a_gpu_machine(vad, run):
    result = run("explain", "vad", cwd=vad.root, env=GPU)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "model vad on this machine:"
    assert lines[1] == f"-> fp16-gpu: when {FP16_WHEN}: holds"
    assert re.fullmatch(r"\s+true\s+accelerator == 'cuda'\s+\[accelerator = cuda \(override:MODELSYNC_OVERRIDE_ACCELERATOR\)\]", lines[2]), lines[2]
    assert re.fullmatch(r"\s+true\s+vram_gib >= 4\s+\[vram_gib = 24(\.0)? \(override:MODELSYNC_OVERRIDE_VRAM_GIB\)\]", lines[3]), lines[3]
    assert lines[4].strip() == "fp32-cpu: fallback (no `when`)" and not lines[4].startswith("->")
    assert lines[-1] == "selected: fp16-gpu"


def test_explain_on_a_cpu_machine(vad, run):
    result = run("explain", "vad", cwd=vad.root, env={**CPU, "MODELSYNC_OVERRIDE_VRAM_GIB": "2"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"   fp16-gpu: when {FP16_WHEN}: does not hold" in out
    assert re.search(r"false\s+accelerator == 'cuda'\s+\[accelerator = cpu \(override:MODELSYNC_OVERRIDE_ACCELERATOR\)\]", out), out
    assert re.search(r"false\s+vram_gib >= 4\s+\[vram_gib = 2(\.0)? \(override:MODELSYNC_OVERRIDE_VRAM_GIB\)\]", out), out
    assert "-> fp32-cpu: fallback (no `when`)" in out
    assert out.splitlines()[-1] == "selected: fp32-cpu"


def test_explain_for_named_environments(vad, run):
    gpu = run("explain", "vad", "--env", "gpu", cwd=vad.root)
    assert gpu.returncode == 0, gpu.stderr
    assert gpu.stdout.splitlines()[0] == "model vad on environment 'gpu':"
    assert f"-> fp16-gpu: when {FP16_WHEN}: holds" in gpu.stdout
    assert re.search(r"true\s+vram_gib >= 4\s+\[vram_gib = 24(\.0)? \(environment:gpu\)\]", gpu.stdout), gpu.stdout
    assert gpu.stdout.splitlines()[-1] == "selected: fp16-gpu"

    cpu = run("explain", "vad", "--env", "cpu", cwd=vad.root)
    assert cpu.returncode == 0, cpu.stderr
    assert "does not hold" in cpu.stdout
    # the cpu environment says nothing about VRAM: that clause is false because the fact is missing
    assert re.search(r"false\s+vram_gib >= 4\s+\[missing", cpu.stdout), cpu.stdout
    assert cpu.stdout.splitlines()[-1] == "selected: fp32-cpu"

    by_variable = run("explain", "vad", cwd=vad.root, env={"MODELSYNC_ENV": "gpu"})
    assert by_variable.stdout.splitlines()[-1] == "selected: fp16-gpu"

    unknown = run("explain", "vad", "--env", "tpu", cwd=vad.root)
    assert unknown.returncode == 2
    assert "'tpu'" in unknown.stderr and "cpu, gpu" in unknown.stderr


def test_explain_json(vad, run):
    result = run("explain", "vad", "--json", cwd=vad.root, env=CPU)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "vad" and report["environment"] is None and report["winner"] == "fp32-cpu"
    fp16, fp32 = report["variants"]
    assert (fp16["name"], fp16["when"], fp16["holds"]) == ("fp16-gpu", FP16_WHEN, False)
    accelerator = fp16["clauses"][0]
    assert accelerator == {
        "text": "accelerator == 'cuda'",
        "fact": "accelerator",
        "value": "cpu",
        "result": False,
        "source": "override:MODELSYNC_OVERRIDE_ACCELERATOR",
    }
    assert [c["text"] for c in fp16["clauses"]] == ["accelerator == 'cuda'", "vram_gib >= 4"]
    assert (fp32["name"], fp32["when"], fp32["holds"], fp32["clauses"]) == ("fp32-cpu", None, True, [])

    gpu = json.loads(run("explain", "vad", "--json", "--env", "gpu", cwd=vad.root).stdout)
    assert gpu["environment"] == "gpu" and gpu["winner"] == "fp16-gpu"
    assert all(c["result"] and c["source"] == "environment:gpu" for c in gpu["variants"][0]["clauses"])


def test_explain_agrees_with_sync_and_works_from_the_lock_alone(locked_vad, run):
    vad = locked_vad
    for overrides in (GPU, CPU):
        explained = json.loads(run("explain", "vad", "--json", cwd=vad.root, env=overrides).stdout)["winner"]
        assert run("sync", cwd=vad.root, env=overrides).returncode == 0
        assert state(vad.root)["models"]["vad"]["variant"] == explained
    (vad.root / "models.toml").unlink()
    result = run("explain", "vad", cwd=vad.root, env=GPU)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "selected: fp16-gpu"


def test_explain_for_an_environment_from_the_lock_alone(locked_vad, run):
    """A deployment that syncs with `--frozen --env gpu` has only models.lock; its environments table answers."""
    vad = locked_vad
    (vad.root / "models.toml").unlink()
    assert run("sync", "--frozen", "--env", "gpu", cwd=vad.root).returncode == 0
    assert run("status", "--json", "--env", "gpu", cwd=vad.root).returncode == 0
    result = run("explain", "vad", "--env", "gpu", cwd=vad.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "selected: fp16-gpu"


def test_explain_model_without_variants_and_unknown_model(vad, run):
    plain = run("explain", "upscaler", cwd=vad.root)
    assert plain.returncode == 0, plain.stderr
    assert "no variants" in plain.stdout
    unknown = run("explain", "vda", cwd=vad.root)
    assert unknown.returncode == 2
    assert "did you mean 'vad'?" in unknown.stderr


# --------------------------------------------------------------------------
# detect


EVERY_OVERRIDE = {
    "MODELSYNC_OVERRIDE_ACCELERATOR": ("cuda", "cuda"),
    "MODELSYNC_OVERRIDE_CUDA": ("12.4", "12.4"),
    "MODELSYNC_OVERRIDE_CUDA_ARCH": ("8.9", "8.9"),
    "MODELSYNC_OVERRIDE_VRAM_GIB": ("24", 24.0),
    "MODELSYNC_OVERRIDE_GPU_COUNT": ("2", 2),
    "MODELSYNC_OVERRIDE_GPU_NAME": ("NVIDIA L4", "NVIDIA L4"),
    "MODELSYNC_OVERRIDE_RAM_GIB": ("64", 64.0),
    "MODELSYNC_OVERRIDE_OS": ("Linux", "linux"),
    "MODELSYNC_OVERRIDE_ARCH": ("AMD64", "x86_64"),
    "MODELSYNC_OVERRIDE_CPU_FLAGS": ("avx2,fma", ["avx2", "fma"]),
    "MODELSYNC_OVERRIDE_ORT_PROVIDERS": ("CUDAExecutionProvider,CPUExecutionProvider", ["CPUExecutionProvider", "CUDAExecutionProvider"]),
}


def test_detect_json_honours_every_override(cli, tmp_path):
    from modelsync.markers import FACT_TYPES

    assert {name.removeprefix("MODELSYNC_OVERRIDE_").lower() for name in EVERY_OVERRIDE} == set(FACT_TYPES)
    result = cli("detect", "--json", cwd=tmp_path, env={name: raw for name, (raw, _) in EVERY_OVERRIDE.items()})
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert set(facts) == set(FACT_TYPES)
    for name, (_, value) in EVERY_OVERRIDE.items():
        fact = name.removeprefix("MODELSYNC_OVERRIDE_").lower()
        assert facts[fact] == {"value": value, "source": f"override:{name}"}, fact


def test_detect_json_without_overrides_names_a_source_for_each_fact(run, tmp_path):
    from modelsync.markers import FACT_TYPES

    result = run("detect", "--json", cwd=tmp_path, env={"MODELSYNC_OVERRIDE_VRAM_GIB": "6"})
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert set(facts) <= set(FACT_TYPES)
    for name in ("accelerator", "os", "arch"):  # every machine has these
        assert name in facts, facts
    for name, fact in facts.items():
        assert set(fact) == {"value", "source"} and fact["source"], name
    assert facts["accelerator"]["value"] in ("cpu", "cuda", "rocm", "mps")
    assert not facts["accelerator"]["source"].startswith("override")
    assert facts["os"]["source"] == "platform"
    assert facts["vram_gib"] == {"value": 6.0, "source": "override:MODELSYNC_OVERRIDE_VRAM_GIB"}


def test_detect_table_says_override(run, tmp_path):
    result = run("detect", cwd=tmp_path, env={"MODELSYNC_OVERRIDE_ACCELERATOR": "cuda", "MODELSYNC_OVERRIDE_VRAM_GIB": "24"})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip() and not line.startswith(" ")}
    assert "cuda" in rows["accelerator"] and "override" in rows["accelerator"], result.stdout
    assert "24" in rows["vram_gib"] and "override" in rows["vram_gib"], result.stdout
    assert "override" not in rows["os"]


def test_detect_table_shows_whole_sources_when_piped(cli, tmp_path):
    """In a log or a pipe the table must not cut the source short: it is the point of `detect`."""
    result = cli("detect", cwd=tmp_path, env={"MODELSYNC_OVERRIDE_ACCELERATOR": "cuda", "MODELSYNC_OVERRIDE_GPU_COUNT": "1"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout, result.stdout
    assert "override:MODELSYNC_OVERRIDE_ACCELERATOR" in result.stdout, result.stdout
    assert "override:MODELSYNC_OVERRIDE_GPU_COUNT" in result.stdout, result.stdout


def test_detect_with_a_bad_override_is_exit_2(cli, tmp_path):
    result = cli("detect", cwd=tmp_path, env={"MODELSYNC_OVERRIDE_VRAM": "24"})
    assert_clean_failure(result, 2)
    assert "MODELSYNC_OVERRIDE_VRAM" in result.stderr and "MODELSYNC_OVERRIDE_VRAM_GIB" in result.stderr
