"""The `pypi = "name==version"` source: files inside wheels, found through pip.

pip honours its environment, so these tests stay off the network: they build
wheels into a find-links folder and run modelsync (and so pip) with
PIP_NO_INDEX=1, PIP_FIND_LINKS=<folder> and PIP_CONFIG_FILE=/dev/null (the
machine's own pip.conf lists other indexes and find-links folders).
Only the test marked `index` talks to the real package index.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest

from helpers import assert_clean_failure, blake3_hex, files_under, locked_files, read_lock

from wheels import build_wheel, pip_env, sha256_hex, wheel_name

REPO = Path(__file__).resolve().parent.parent

MODEL = b"ONNX-ish bytes\x00" + bytes(range(256)) * 64  # 16 KiB and a bit
OTHER = b"not a model, must never be extracted\n" * 10


def model_files(root: Path) -> list[Path]:
    """Files in the project's view, without the view's own bookkeeping (its .gitignore)."""
    return [p for p in files_under(root / "models") if p.parent != root / "models"]


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    return folder


@pytest.fixture
def pip(wheelhouse: Path) -> dict[str, str]:
    """The environment for a modelsync subprocess whose pip sees only the wheelhouse."""
    return pip_env(wheelhouse)


@pytest.fixture
def run(cli, pip):
    """`modelsync ARGS` with pip pointed at the wheelhouse (extra env on top)."""

    def go(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return cli(*args, cwd=cwd, env={**pip, **(env or {})})

    return go


def pkg_wheel(wheelhouse: Path) -> Path:
    members = {
        "pkg/__init__.py": b"",
        "pkg/data/model.onnx": MODEL,
        "pkg/data/other.bin": OTHER,
    }
    return build_wheel(wheelhouse, "pkg", "1.0", members)


ONE_FILE = """\
[models.m]
pypi = "pkg==1.0"
file = "pkg/data/model.onnx"
"""


# --------------------------------------------------------------------------
# lock


def test_lock_pins_the_member_by_wheel_name_and_hashes(project, wheelhouse, run, isolated):
    wheel = pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr

    text = (root / "models.lock").read_text(encoding="utf-8")
    (entry,) = locked_files(root, "m")
    assert entry["path"] == "model.onnx"
    assert entry["size"] == len(MODEL)
    assert entry["blake3"] == blake3_hex(MODEL)
    assert entry["sha256"] == sha256_hex(MODEL)  # RECORD's digest, as hex
    assert entry["source"] == {
        "pypi": "pkg",
        "version": "1.0",
        "wheel": "pkg-1.0-py3-none-any.whl",
        "wheel-sha256": sha256_hex(wheel.read_bytes()),
        "member": "pkg/data/model.onnx",
    }
    # No index host, no folder of this machine.
    assert str(wheelhouse) not in text
    assert str(wheelhouse.parent) not in text
    assert "file://" not in text and "invalid.invalid" not in text and "http" not in text
    assert str(isolated) not in text
    # The bytes went into the store on the way (one blob: only the member).
    blobs = files_under(isolated / "blobs")
    assert [b.read_bytes() for b in blobs] == [MODEL]


def test_sync_after_lock_needs_no_pip_and_places_the_view(project, wheelhouse, run):
    pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    shutil.rmtree(wheelhouse)  # lock filled the store: sync has nothing to download
    result = run("sync", "--locked", cwd=root)
    assert result.returncode == 0, result.stderr
    view = root / "models" / "m" / "model.onnx"
    assert view.read_bytes() == MODEL
    assert files_under(root / "models" / "m") == [view]
    found = run("path", "m", cwd=root)
    assert Path(found.stdout.strip()) == view


def test_relock_of_an_unchanged_manifest_is_identical_and_downloads_nothing(project, wheelhouse, run):
    pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    before = (root / "models.lock").read_bytes()
    shutil.rmtree(wheelhouse)  # pip would fail now
    again = run("lock", cwd=root)
    assert again.returncode == 0, again.stderr
    assert (root / "models.lock").read_bytes() == before
    assert run("lock", "--check", cwd=root).returncode == 0


def test_sync_in_a_fresh_cache_redownloads_with_require_hashes(project, wheelhouse, run, pip, monkeypatch, tmp_path):
    """In-process: spy on the pip command and on what is extracted from the wheel."""
    from modelsync import _runtime
    from modelsync.sources import pypi
    from modelsync.syncer import SyncOptions, sync_project

    wheel = pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    locked_sha = locked_files(root, "m")[0]["source"]["wheel-sha256"]

    fresh = tmp_path / "fresh-cache"
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(fresh))
    for key, value in pip.items():
        monkeypatch.setenv(key, value)
    _runtime._cache.clear()

    commands: list[list[str]] = []
    real_run = subprocess.run

    def spy_run(command, *args, **kwargs):
        commands.append(list(command))
        return real_run(command, *args, **kwargs)

    extracted: list[str] = []
    real_extract = pypi._extract

    def spy_extract(archive, member, expected, ctx):
        extracted.append(member)
        return real_extract(archive, member, expected, ctx)

    monkeypatch.setattr(pypi.subprocess, "run", spy_run)
    monkeypatch.setattr(pypi, "_extract", spy_extract)

    sync_project(root, SyncOptions(locked=True))

    pip_calls = [c for c in commands if "pip" in c and "download" in c]
    assert len(pip_calls) == 1, commands
    command = pip_calls[0]
    assert "--require-hashes" in command
    assert "--no-deps" in command
    assert "--only-binary=:all:" in command
    requirements = Path(command[command.index("-r") + 1])
    assert not requirements.exists()  # scratch space is cleaned up
    assert extracted == ["pkg/data/model.onnx"]
    assert (root / "models" / "m" / "model.onnx").read_bytes() == MODEL
    # The store holds exactly the member; no wheel and no other member stays behind.
    assert [b.read_bytes() for b in files_under(fresh / "blobs")] == [MODEL]
    assert files_under(fresh / "tmp") == []
    assert sha256_hex(wheel.read_bytes()) == locked_sha


def test_sync_in_a_fresh_cache_through_the_cli(project, wheelhouse, run, tmp_path):
    pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    fresh = tmp_path / "fresh-cache"
    result = run("sync", "--locked", cwd=root, env={"MODELSYNC_CACHE_DIR": str(fresh)})
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "m" / "model.onnx").read_bytes() == MODEL
    assert [b.read_bytes() for b in files_under(fresh / "blobs")] == [MODEL]


def test_globs_select_several_members_laid_out_below_their_common_folder(project, wheelhouse, run, tmp_path):
    a, b, c = b"A" * 1000, b"B" * 2000, b"C" * 3000
    build_wheel(
        wheelhouse,
        "pkg",
        "1.0",
        {
            "pkg/__init__.py": b"",
            "pkg/data/a.onnx": a,
            "pkg/data/b.onnx": b,
            "pkg/data/readme.txt": b"not selected",
            "pkg/data/extra/c.onnx": c,
        },
    )
    root = project(
        """\
        [models.m]
        pypi = "pkg==1.0"
        files = ["pkg/data/*.onnx", "pkg/data/extra/c.onnx"]
        """
    )
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    entries = {f["path"]: f for f in locked_files(root, "m")}
    assert set(entries) == {"a.onnx", "b.onnx", "extra/c.onnx"}
    assert entries["extra/c.onnx"]["source"]["member"] == "pkg/data/extra/c.onnx"
    assert entries["a.onnx"]["sha256"] == sha256_hex(a)
    assert {f["size"] for f in entries.values()} == {1000, 2000, 3000}

    fresh = tmp_path / "fresh-cache"
    synced = run("sync", "--locked", cwd=root, env={"MODELSYNC_CACHE_DIR": str(fresh)})
    assert synced.returncode == 0, synced.stderr
    view = root / "models" / "m"
    assert (view / "a.onnx").read_bytes() == a
    assert (view / "b.onnx").read_bytes() == b
    assert (view / "extra" / "c.onnx").read_bytes() == c
    assert files_under(view) == sorted([view / "a.onnx", view / "b.onnx", view / "extra" / "c.onnx"])
    assert sorted(p.read_bytes() for p in files_under(fresh / "blobs")) == sorted([a, b, c])


def test_globs_across_folders_keep_the_layout_below_the_common_folder(project, wheelhouse, run):
    build_wheel(wheelhouse, "pkg", "1.0", {"pkg/det/model.onnx": b"det", "pkg/rec/model.onnx": b"rec"})
    root = project(
        """\
        [models.m]
        pypi = "pkg==1.0"
        files = ["pkg/*/model.onnx"]
        """
    )
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "m" / "det" / "model.onnx").read_bytes() == b"det"
    assert (root / "models" / "m" / "rec" / "model.onnx").read_bytes() == b"rec"


def test_a_glob_that_matches_nothing_is_bad_input(project, wheelhouse, run):
    pkg_wheel(wheelhouse)
    root = project(
        """\
        [models.m]
        pypi = "pkg==1.0"
        files = ["pkg/data/*.onnx", "pkg/weights/*.pt"]
        """
    )
    result = run("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "pkg/weights/*.pt" in result.stderr
    assert not (root / "models.lock").exists()


@pytest.mark.parametrize(
    ("file", "hint"),
    [
        ("pkg/models/model.onnx", "did you mean 'pkg/data/model.onnx'"),  # same name elsewhere
        ("pkg/data/nothing.onnx", "hint"),  # no close match: still a hint
    ],
)
def test_a_file_not_in_the_wheel_is_bad_input_with_a_hint(project, wheelhouse, run, file, hint):
    pkg_wheel(wheelhouse)
    root = project(
        f"""\
        [models.m]
        pypi = "pkg==1.0"
        file = "{file}"
        """
    )
    result = run("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert file in result.stderr
    assert hint in result.stderr
    assert not (root / "models.lock").exists()


def test_sync_without_a_lock_locks_then_syncs(project, wheelhouse, run):
    pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models.lock").exists()
    assert (root / "models" / "m" / "model.onnx").read_bytes() == MODEL


def test_the_distribution_name_is_recorded_canonically(project, wheelhouse, run, tmp_path):
    build_wheel(wheelhouse, "My.Pkg", "1.0", {"my_pkg/model.onnx": MODEL})
    root = project(
        """\
        [models.m]
        pypi = "My.Pkg==1.0"
        file = "my_pkg/model.onnx"
        """
    )
    assert run("lock", cwd=root).returncode == 0
    (entry,) = locked_files(root, "m")
    assert entry["source"]["pypi"] == "my-pkg"
    assert entry["source"]["wheel"] == "my_pkg-1.0-py3-none-any.whl"
    result = run("sync", "--locked", cwd=root, env={"MODELSYNC_CACHE_DIR": str(tmp_path / "fresh")})
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "m" / "model.onnx").read_bytes() == MODEL


def test_two_models_from_one_wheel_sync_in_a_fresh_cache(project, wheelhouse, run, tmp_path):
    pkg_wheel(wheelhouse)
    root = project(
        """\
        [models.a]
        pypi = "pkg==1.0"
        file = "pkg/data/model.onnx"

        [models.b]
        pypi = "pkg==1.0"
        file = "pkg/data/other.bin"
        """
    )
    assert run("lock", cwd=root).returncode == 0
    fresh = tmp_path / "fresh"
    result = run("sync", "--locked", cwd=root, env={"MODELSYNC_CACHE_DIR": str(fresh)})
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "a" / "model.onnx").read_bytes() == MODEL
    assert (root / "models" / "b" / "other.bin").read_bytes() == OTHER


def test_sync_gets_the_locked_wheel_even_when_a_preferred_one_appears(project, wheelhouse, run, tmp_path):
    """pip would prefer a platform wheel of the same version; the locked hash decides."""
    pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    import sysconfig

    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    if platform == "linux_x86_64":
        platform = "manylinux_2_17_x86_64"
    build_wheel(
        wheelhouse, "pkg", "1.0", {"pkg/data/model.onnx": b"platform build"}, tag=f"py3-none-{platform}"
    )
    fresh = tmp_path / "fresh"
    result = run("sync", "--locked", cwd=root, env={"MODELSYNC_CACHE_DIR": str(fresh)})
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "m" / "model.onnx").read_bytes() == MODEL


def test_a_member_name_with_a_comma_keeps_its_record_digest(project, wheelhouse, run):
    """RECORD is CSV: a name with a comma is quoted, and its digest still counts."""
    name = "pkg/data/model,v2.onnx"
    build_wheel(wheelhouse, "pkg", "1.0", {name: MODEL})
    root = project(ONE_FILE.replace("pkg/data/model.onnx", name))
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    (entry,) = locked_files(root, "m")
    assert entry["path"] == "model,v2.onnx"
    assert entry.get("sha256") == sha256_hex(MODEL)


def test_a_wrong_record_digest_of_a_quoted_member_name_fails_lock(project, wheelhouse, run):
    name = "pkg/data/model,v2.onnx"
    build_wheel(wheelhouse, "pkg", "1.0", {name: MODEL}, wrong_record=[name])
    root = project(ONE_FILE.replace("pkg/data/model.onnx", name))
    result = run("lock", cwd=root)
    assert_clean_failure(result, 1)
    assert sha256_hex(MODEL) in result.stderr


# --------------------------------------------------------------------------
# integrity


def test_a_record_digest_that_does_not_match_the_member_fails_lock(project, wheelhouse, run, isolated):
    build_wheel(wheelhouse, "pkg", "1.0", {"pkg/data/model.onnx": MODEL}, wrong_record=["pkg/data/model.onnx"])
    root = project(ONE_FILE)
    result = run("lock", cwd=root)
    assert_clean_failure(result, 1)
    wrong = hashlib.sha256(b"not the member's bytes: " + MODEL).hexdigest()
    assert wrong in result.stderr  # expected (from RECORD)
    assert sha256_hex(MODEL) in result.stderr  # found
    assert "m/model.onnx" in result.stderr
    assert not (root / "models.lock").exists()
    assert files_under(isolated / "blobs") == []


def test_a_member_missing_from_record_still_locks_without_sha256(project, wheelhouse, run):
    build_wheel(wheelhouse, "pkg", "1.0", {"pkg/data/model.onnx": MODEL}, omit_from_record=["pkg/data/model.onnx"])
    root = project(ONE_FILE)
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    (entry,) = locked_files(root, "m")
    assert entry["blake3"] == blake3_hex(MODEL)
    assert "sha256" not in entry  # no upstream digest: none is invented


def test_a_user_blake3_that_does_not_match_fails_lock(project, wheelhouse, run, isolated):
    pkg_wheel(wheelhouse)
    wrong = "0" * 64
    root = project(ONE_FILE + f'blake3 = "{wrong}"\n')
    result = run("lock", cwd=root)
    assert_clean_failure(result, 1)
    assert wrong in result.stderr
    assert blake3_hex(MODEL) in result.stderr
    assert not (root / "models.lock").exists()
    assert files_under(isolated / "blobs") == []


def test_a_wheel_replaced_on_the_index_fails_sync_and_keeps_nothing(project, wheelhouse, run, tmp_path):
    original = pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    locked = locked_files(root, "m")[0]["source"]["wheel-sha256"]
    assert locked == sha256_hex(original.read_bytes())

    # Same file name, different content (a re-upload, a compromised mirror).
    replaced = build_wheel(wheelhouse, "pkg", "1.0", {"pkg/__init__.py": b"", "pkg/data/model.onnx": b"changed " + MODEL})
    assert replaced.name == original.name
    now = sha256_hex(replaced.read_bytes())
    assert now != locked

    fresh = tmp_path / "fresh-cache"
    result = run("sync", "--locked", cwd=root, env={"MODELSYNC_CACHE_DIR": str(fresh)})
    assert_clean_failure(result, 1)
    assert locked in result.stderr  # the expected digest is shown
    assert now in result.stderr  # and the one found
    assert not (root / "models" / "m" / "model.onnx").exists()
    assert files_under(root / "models" / "m") == []
    assert files_under(fresh / "blobs") == []
    assert files_under(fresh / "tmp") == []


# --------------------------------------------------------------------------
# member paths that would escape


def _no_evil_anywhere(*folders: Path) -> None:
    for folder in folders:
        hits = [p for p in folder.rglob("*evil*") if p.suffix != ".whl"] if folder.exists() else []
        assert hits == [], hits


@pytest.mark.parametrize("evil", ["../../evil.onnx", "/ABS/evil.onnx", "pkg/../../../evil.onnx"])
@pytest.mark.parametrize("glob", ["*evil.onnx", "*.onnx"])
def test_a_malicious_member_selected_by_a_glob_is_refused(project, wheelhouse, run, tmp_path, isolated, evil, glob):
    if evil.startswith("/ABS"):
        evil = f"{tmp_path}/abs-target/evil.onnx"
    build_wheel(wheelhouse, "pkg", "1.0", {"pkg/data/model.onnx": MODEL, evil: b"pwned"})
    root = project(
        f"""\
        [models.m]
        pypi = "pkg==1.0"
        files = ["{glob}"]
        """
    )
    result = run("sync", cwd=root)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "evil.onnx" in result.stderr
    assert not (root / "models.lock").exists()
    assert model_files(root) == []
    _no_evil_anywhere(tmp_path, isolated, isolated.parent)
    assert not Path(f"{tmp_path}/abs-target").exists()


@pytest.mark.parametrize("file", ["../../evil.onnx", "/tmp/evil.onnx"])
def test_an_escaping_file_key_is_bad_input(project, wheelhouse, run, file):
    root = project(
        f"""\
        [models.m]
        pypi = "pkg==1.0"
        file = "{file}"
        """
    )
    result = run("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "models.toml:3" in result.stderr


def test_a_tampered_lock_member_is_refused_at_sync(project, wheelhouse, run, tmp_path, isolated):
    build_wheel(wheelhouse, "pkg", "1.0", {"pkg/data/model.onnx": MODEL, "../../evil.onnx": b"pwned"})
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    lock = root / "models.lock"
    lock.write_text(lock.read_text().replace('member = "pkg/data/model.onnx"', 'member = "../../evil.onnx"'))
    fresh = tmp_path / "fresh-cache"
    result = run("sync", "--frozen", cwd=root, env={"MODELSYNC_CACHE_DIR": str(fresh)})
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "evil.onnx" in result.stderr
    assert model_files(root) == []
    _no_evil_anywhere(tmp_path, isolated)


def test_a_tampered_lock_path_is_refused(project, wheelhouse, run, tmp_path, isolated):
    pkg_wheel(wheelhouse)
    root = project(ONE_FILE)
    assert run("lock", cwd=root).returncode == 0
    lock = root / "models.lock"
    lock.write_text(lock.read_text().replace('path = "model.onnx"', 'path = "../../evil.onnx"'))
    result = run("sync", "--frozen", cwd=root, env={"MODELSYNC_CACHE_DIR": str(tmp_path / "fresh")})
    assert_clean_failure(result, 2)
    assert "models.lock" in result.stderr
    _no_evil_anywhere(tmp_path, isolated)


# --------------------------------------------------------------------------
# pip errors and the requirement's shape


def test_pip_not_finding_the_version_is_a_clean_failure(project, wheelhouse, run):
    pkg_wheel(wheelhouse)
    root = project(ONE_FILE.replace("pkg==1.0", "pkg==9.9"))
    result = run("lock", cwd=root)
    assert_clean_failure(result, 1)
    assert "pkg==9.9" in result.stderr
    assert "No matching distribution found" in result.stderr  # pip's own reason
    assert "index" in result.stderr and "pip config" in result.stderr  # what to check
    assert not (root / "models.lock").exists()


def test_pip_not_finding_the_package_at_all(project, wheelhouse, run):
    root = project(ONE_FILE.replace("pkg==1.0", "no-such-package-anywhere==1.0"))
    result = run("lock", cwd=root)
    assert_clean_failure(result, 1)
    assert "no-such-package-anywhere" in result.stderr
    assert "index" in result.stderr


@pytest.mark.parametrize("requirement", ["pkg>=1", "pkg", "pkg~=1.0", "pkg==1.*", "pkg[extra]==1.0", "pkg==1.0,<2", "pkg==1.0; python_version>'3'"])
def test_only_an_exact_pin_is_accepted(project, wheelhouse, run, requirement):
    root = project(
        f"""\
        [models.m]
        pypi = "{requirement}"
        file = "pkg/data/model.onnx"
        """
    )
    result = run("lock", cwd=root)
    assert_clean_failure(result, 2)
    assert "models.toml:2" in result.stderr
    assert "pypi" in result.stderr
    assert "==" in result.stderr


# --------------------------------------------------------------------------
# a lock made on another platform


def test_a_wheel_for_another_platform_syncs_from_a_lock_made_there(project, wheelhouse, run, tmp_path):
    """The lock is universal: a wheel pinned on Windows is fetched on Linux with pip's --platform."""
    from modelsync import lockfile, manifest
    from modelsync.lockfile import Lock, LockedFile, LockedModel

    tag = "cp311-cp311-win_amd64"
    wheel = build_wheel(wheelhouse, "pkg", "1.0", {"pkg/data/model.onnx": MODEL}, tag=tag)
    root = project(ONE_FILE)
    spec = manifest.load(root / "models.toml")
    made_elsewhere = Lock(
        manifest_hash=spec.hash,
        models=(
            LockedModel(
                name="m",
                source=dict(spec.specs[0].request),
                files=(
                    LockedFile(
                        path="model.onnx",
                        size=len(MODEL),
                        blake3=blake3_hex(MODEL),
                        sha256=sha256_hex(MODEL),
                        source={
                            "pypi": "pkg",
                            "version": "1.0",
                            "wheel": wheel_name("pkg", "1.0", tag),
                            "wheel-sha256": sha256_hex(wheel.read_bytes()),
                            "member": "pkg/data/model.onnx",
                        },
                    ),
                ),
            ),
        ),
    )
    lockfile.write(root / "models.lock", made_elsewhere)
    result = run("sync", "--locked", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "m" / "model.onnx").read_bytes() == MODEL


# --------------------------------------------------------------------------
# the real index


@pytest.mark.index
def test_the_repositorys_models_sync_from_the_real_index(tmp_path, cli):
    root = tmp_path / "repo-models"
    root.mkdir()
    shutil.copy(REPO / "models.toml", root / "models.toml")
    shutil.copy(REPO / "models.lock", root / "models.lock")
    lock = read_lock(root)
    # The machine's own pip configuration, whatever it is: no PIP_* override here.
    # The CPU environment's variants in the view, every variant in the cache.
    result = cli("sync", "--locked", "--env", "cpu", "--all-variants", cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (root / "models.lock").read_bytes() == (REPO / "models.lock").read_bytes()
    state = json.loads((root / ".modelsync" / "state.json").read_text())
    assert state["models"]["vad"]["variant"] == "fp32"

    def check_view() -> dict[str, Path]:
        views = {}
        state = json.loads((root / ".modelsync" / "state.json").read_text())
        for model in lock["model"]:
            variant = state["models"][model["name"]]["variant"]
            for entry in model["files"]:
                if entry.get("variant") != variant:
                    continue
                path = root / "models" / model["name"] / entry["path"]
                assert path.is_file(), path
                assert path.stat().st_size == entry["size"]
                digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
                digest.update_mmap(path)
                assert digest.hexdigest() == entry["blake3"]
                views[model["name"]] = path
        assert set(views) >= {"vad", "ocr-det"}
        return views

    import onnxruntime
    views = check_view()
    assert views["vad"].name == "silero_vad.onnx"
    session = onnxruntime.InferenceSession(str(views["vad"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs(), "a real model has inputs"

    # A CUDA machine gets the half-precision variant, already in the cache: no network needed.
    result = cli("sync", "--locked", "--env", "cuda", "--offline", cwd=root)
    assert result.returncode == 0, result.stderr
    views = check_view()
    assert views["vad"].name == "silero_vad_half.onnx"
    assert not (root / "models" / "vad" / "silero_vad.onnx").exists()
    session = onnxruntime.InferenceSession(str(views["vad"]), providers=["CPUExecutionProvider"])
    assert session.get_outputs()
