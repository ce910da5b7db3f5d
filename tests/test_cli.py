"""The `modelsync` command as a user runs it: `python -m modelsync …` in a subprocess.

Exit codes (0 done, 1 failed, 2 bad input), messages on stderr, data on
stdout, and no traceback for an expected error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import blake3
import pytest

import modelsync


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def blob_path(cache: Path, data: bytes) -> Path:
    digest = b3(data)
    return cache / "blobs" / "blake3" / digest[:2] / digest[2:]


def write_manifest(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.toml").write_text(text, encoding="utf-8")
    return root


def three_models(http_server, project):
    data = {name: (name * 50).encode() + bytes(range(256)) * (i + 1) for i, name in enumerate(("aa", "bb", "cc"))}
    root = project(f'''
        [models.aa]
        url = "{http_server.add("aa.onnx", data["aa"])}"
        group = "g"

        [models.bb]
        url = "{http_server.add("bb.onnx", data["bb"])}"

        [models.cc]
        url = "{http_server.add("cc.onnx", data["cc"])}"
    ''')
    return root, data


# --------------------------------------------------------------------------
# version, exit codes


def test_version(cli, tmp_path):
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"modelsync {modelsync.__version__}"


def test_console_script_entry_point_matches_module(tmp_path):
    """`modelsync` (the console script) is the same program as `python -m modelsync`."""
    script = Path(sys.executable).with_name("modelsync")
    assert script.exists(), f"no console script next to {sys.executable}"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"modelsync {modelsync.__version__}"


@pytest.mark.parametrize("columns", [40, 120])
def test_help_fits_the_width_of_the_terminal(cli, tmp_path, columns):
    """Help is wrapped to $COLUMNS, as argparse does (sized without shutil: cli/main.py)."""
    result = cli("sync", "--help", cwd=tmp_path, env={"COLUMNS": str(columns)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "--frozen" in result.stdout and "--all-variants" in result.stdout
    assert max(len(line) for line in lines) <= columns
    if columns == 120:  # room for an option and its help on one line
        assert any("--frozen" in line and "use models.lock as it is" in line for line in lines)


_COMMAND_LINES = [
    ["init", "--project", "p", "-q"],
    ["lock", "--check", "--upgrade", "a", "b", "-j", "3", "--json"],
    ["lock", "--upgrade"],
    ["sync", "--frozen", "--dry-run", "--group", "g", "--group", "h", "-j", "2", "--env", "e", "--all-variants", "-v"],
    ["sync", "--locked", "--offline", "--json", "--project", "sync"],
    ["status", "--env", "e", "--json"],
    ["detect", "--json", "-q"],
    ["explain", "x", "--env", "e"],
    ["path", "x", "f.onnx"],
    ["pyinstaller-args", "--bundle", "a", "b", "--bundle", "c"],
]


@pytest.mark.parametrize("argv", _COMMAND_LINES, ids=lambda argv: " ".join(argv))
def test_a_command_reads_its_arguments_as_with_every_command_declared(argv):
    """The parser of the command given alone (argparse's cost at every start)
    reads each command line as the whole parser does."""
    from modelsync.cli import main as cli_main

    assert cli_main.build_parser(argv[0]).parse_args(argv) == cli_main.build_parser().parse_args(argv)


@pytest.mark.parametrize(
    "argv", [["sync", "--bogus"], ["sync", "-j", "x"], ["path"], ["explain", "--env"], ["lock", "--help"], ["sync", "--help"], ["pyinstaller-args", "-h"]]
)
def test_a_command_line_in_error_or_asking_for_help_gets_what_the_whole_parser_says(argv, capsys):
    from modelsync.cli import main as cli_main

    said = []
    for parser in (cli_main.build_parser(argv[0]), cli_main.build_parser()):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(argv)
        said.append((stopped.value.code, capsys.readouterr()))
    assert said[0] == said[1]
    assert said[0][1].out or said[0][1].err


def test_the_command_help_lists_every_command(cli, tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in ("init", "lock", "sync", "status", "detect", "explain", "path", "pyinstaller-args"))


def test_exit_codes_0_1_2(http_server, project, cli):
    good = b"good bytes" * 10
    root = project(f'''
        [models.good]
        url = "{http_server.add("good.bin", good)}"
    ''')
    ok = cli("sync", cwd=root)
    assert ok.returncode == 0, ok.stderr

    # 1: the world is wrong (a URL that 404s)
    failing = project(f'''
        [models.gone]
        url = "{http_server.url("missing.bin")}"
    ''', folder="failing")
    failed = cli("sync", cwd=failing)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr

    # 2: the input is wrong
    for args in (("sync", "--jobs", "0"), ("sync", "--no-such-flag"), ("no-such-command",), ("sync", "--group", "nope")):
        bad = cli(*args, cwd=root)
        assert bad.returncode == 2, (args, bad.stderr)
        assert "Traceback" not in bad.stderr


def test_project_not_found_is_exit_2_with_hint(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("lock", cwd=empty)
    assert result.returncode == 2
    assert "models.toml" in result.stderr
    assert "modelsync init" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [
        pytest.param('[models.a]\nurl = "https://example.com/a.onnx\n', 2, ["TOML"], id="broken-toml"),
        pytest.param(
            '# comment\n\n[models.a]\nurl = "https://example.com/a.onnx"\ndescripton = "x"\n',
            5,
            ["descripton", "description"],
            id="unknown-key-close-match",
        ),
        pytest.param(
            '[models.a]\nurl = "https://example.com/a.onnx"\npath = "a.onnx"\n', 3, ["path", "url"], id="two-sources"
        ),
        pytest.param('[models.ok]\nurl = "https://example.com/ok.onnx"\n\n[models.Bad_Name]\nurl = "https://example.com/b.onnx"\n', 4, ["Bad_Name"], id="bad-name"),
        pytest.param('[models.local]\npath = "assets/missing.onnx"\n', 2, ["assets/missing.onnx"], id="missing-local-file"),
        pytest.param('[models.a]\nurl = "https://example.com/a.onnx"\noptional = "yes"\n', 3, ["optional", "boolean"], id="wrong-type"),
        pytest.param('[settings]\nlink = "teleport"\n', 2, ["link", "teleport"], id="bad-link-mode"),
        pytest.param('[models.a]\nurl = "ftp://example.com/a.onnx"\n', 2, ["url", "ftp://example.com/a.onnx"], id="bad-scheme"),
    ],
)
def test_broken_manifest_is_exit_2_with_line_and_no_traceback(cli, tmp_path, text, line, fragments):
    root = write_manifest(tmp_path / "app", text)
    for command in (("lock",), ("sync",)):
        result = cli(*command, cwd=root)
        assert result.returncode == 2, (command, result.stderr)
        assert f"models.toml:{line}" in result.stderr, (command, result.stderr)
        for fragment in fragments:
            assert fragment in result.stderr, (command, fragment, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (root / "models.lock").exists()


def test_verbose_shows_the_traceback_of_an_expected_error(cli, tmp_path):
    root = write_manifest(tmp_path / "app", '[models.a]\nurl = "https://example.com/a.onnx"\nbogus = 1\n')
    quiet = cli("lock", cwd=root)
    loud = cli("lock", "-v", cwd=root)
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert "models.toml:3" in loud.stderr


def test_broken_lock_is_exit_2_naming_models_lock(http_server, project, cli):
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", b"abc" * 100)}"
    ''')
    (root / "models.lock").write_text("version = 1\nmanifest-hash = \n", encoding="utf-8")
    for command in (("sync", "--frozen"), ("sync",), ("lock",)):
        result = cli(*command, cwd=root)
        assert result.returncode == 2, (command, result.stderr)
        assert "models.lock" in result.stderr
        assert "Traceback" not in result.stderr


def test_lock_from_a_newer_modelsync_is_refused(http_server, project, cli):
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", b"abc" * 100)}"
    ''')
    assert cli("lock", cwd=root).returncode == 0
    lock = root / "models.lock"
    lock.write_text(lock.read_text().replace("version = 1", "version = 99"), encoding="utf-8")
    result = cli("sync", "--frozen", cwd=root)
    assert result.returncode == 2, result.stderr
    assert "newer" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------
# init


def test_init_writes_a_manifest_that_locks_and_refuses_to_overwrite(cli, tmp_path, http_server):
    root = tmp_path / "fresh"
    root.mkdir()
    result = cli("init", cwd=root)
    assert result.returncode == 0, result.stderr
    manifest = root / "models.toml"
    text = manifest.read_text()
    assert text.lstrip().startswith("#")  # commented
    tomllib.loads(text)

    locked = cli("lock", cwd=root)
    assert locked.returncode == 0, locked.stderr
    lock = tomllib.loads((root / "models.lock").read_text())
    assert lock["version"] == 1
    assert lock.get("model", []) == []
    assert cli("lock", "--check", cwd=root).returncode == 0
    synced = cli("sync", cwd=root)
    assert synced.returncode == 0, synced.stderr
    assert http_server.requests == []

    manifest.write_text(text + "\n# mine\n")
    again = cli("init", cwd=root)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert manifest.read_text() == text + "\n# mine\n"


def test_init_with_project_creates_the_folder(cli, tmp_path):
    result = cli("init", "--project", str(tmp_path / "new" / "app"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "app" / "models.toml").is_file()
    assert not (tmp_path / "models.toml").exists()


# --------------------------------------------------------------------------
# status


def _status_rows(stdout: str) -> dict[str, str]:
    rows = {}
    for line in stdout.splitlines():
        words = line.split()
        if words and words[0] in ("aa", "bb", "cc"):
            rows[words[0]] = words[-1]
    return rows


def test_status_table_and_json(http_server, project, cli, isolated):
    root, data = three_models(http_server, project)
    assert cli("sync", cwd=root).returncode == 0
    # bb: the view file is gone but the blob is cached; cc: both gone
    (root / "models" / "bb" / "bb.onnx").unlink()
    (root / "models" / "cc" / "cc.onnx").unlink()
    blob_path(isolated, data["cc"]).unlink()
    before = len(http_server.requests)

    table = cli("status", cwd=root)
    assert table.returncode == 0, table.stderr
    assert _status_rows(table.stdout) == {"aa": "synced", "bb": "cached", "cc": "missing"}, table.stdout
    for word in ("model", "files", "size", "status"):
        assert word in table.stdout

    as_json = cli("status", "--json", cwd=root)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    rows = {row["name"]: row for row in report["models"]}
    assert {name: row["status"] for name, row in rows.items()} == {"aa": "synced", "bb": "cached", "cc": "missing"}
    assert rows["aa"]["files"] == 1
    assert rows["cc"]["size"] == len(data["cc"])
    assert rows["aa"]["groups"] == ["g"]
    assert report["lock_stale"] is False
    assert len(http_server.requests) == before  # status never downloads

    # sync brings everything back; status says so
    assert cli("sync", cwd=root).returncode == 0
    again = json.loads(cli("status", "--json", cwd=root).stdout)
    assert {row["name"]: row["status"] for row in again["models"]} == {"aa": "synced", "bb": "synced", "cc": "synced"}


def test_status_after_lock_only_is_cached_and_with_empty_cache_missing(http_server, project, cli, monkeypatch, tmp_path):
    root, _ = three_models(http_server, project)
    assert cli("lock", cwd=root).returncode == 0
    report = json.loads(cli("status", "--json", cwd=root).stdout)
    assert {row["status"] for row in report["models"]} == {"cached"}
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "empty-cache"))
    report = json.loads(cli("status", "--json", cwd=root).stdout)
    assert {row["status"] for row in report["models"]} == {"missing"}


def test_status_warns_when_lock_is_stale(http_server, project, cli):
    root, _ = three_models(http_server, project)
    assert cli("sync", cwd=root).returncode == 0
    manifest = root / "models.toml"
    manifest.write_text(manifest.read_text().replace("[models.cc]", '[models.cc]\ndescription = "new"'))
    result = cli("status", cwd=root)
    assert result.returncode == 0
    assert "modelsync lock" in result.stderr
    assert json.loads(cli("status", "--json", cwd=root).stdout)["lock_stale"] is True


def test_status_without_lock_is_exit_2(project, cli):
    root = project('''
        [settings]
        dir = "models"
    ''')
    result = cli("status", cwd=root)
    assert result.returncode == 2
    assert "modelsync lock" in result.stderr


# --------------------------------------------------------------------------
# path


def test_path_prints_the_path_on_stdout_only(http_server, project, cli, tmp_path):
    root, data = three_models(http_server, project)
    assert cli("sync", cwd=root).returncode == 0
    result = cli("path", "aa", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == f"{root / 'models' / 'aa' / 'aa.onnx'}\n"
    assert Path(result.stdout.strip()).read_bytes() == data["aa"]

    with_file = cli("path", "bb", "bb.onnx", cwd=root)
    assert with_file.returncode == 0, with_file.stderr
    assert with_file.stdout.strip() == str(root / "models" / "bb" / "bb.onnx")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_option = cli("path", "cc", "--project", str(root), cwd=elsewhere)
    assert by_option.returncode == 0, by_option.stderr
    assert by_option.stdout.strip() == str(root / "models" / "cc" / "cc.onnx")
    by_env = cli("path", "cc", cwd=elsewhere, env={"MODELSYNC_PROJECT": str(root)})
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.strip() == str(root / "models" / "cc" / "cc.onnx")


def test_path_errors(http_server, project, cli):
    root, _ = three_models(http_server, project)
    assert cli("lock", cwd=root).returncode == 0
    not_synced = cli("path", "aa", cwd=root)
    assert not_synced.returncode == 1
    assert not_synced.stdout == ""
    assert "modelsync sync" in not_synced.stderr
    assert "Traceback" not in not_synced.stderr

    assert cli("sync", cwd=root).returncode == 0
    unknown = cli("path", "aaa", cwd=root)
    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert "'aaa'" in unknown.stderr
    assert "did you mean 'aa'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


# --------------------------------------------------------------------------
# output


def test_sync_output_is_plain_when_not_a_terminal(http_server, project, cli):
    root, _ = three_models(http_server, project)
    result = cli("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr
    assert result.stdout == ""  # messages go to stderr; stdout is for data
    assert "aa" in result.stderr


def test_sync_json_is_the_only_stdout(http_server, project, cli):
    root, _ = three_models(http_server, project)
    result = cli("sync", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["models"] == ["aa", "bb", "cc"]
    assert report["lock_written"] is True


def test_lock_check_json(http_server, project, cli):
    root, _ = three_models(http_server, project)
    stale = cli("lock", "--check", "--json", cwd=root)
    assert stale.returncode == 1
    assert json.loads(stale.stdout)["fresh"] is False
    assert cli("lock", cwd=root).returncode == 0
    fresh = cli("lock", "--check", "--json", cwd=root)
    assert fresh.returncode == 0
    assert json.loads(fresh.stdout) == {"fresh": True, "stale_models": []}


def test_sync_from_a_subfolder_finds_the_project(http_server, project, cli):
    root, data = three_models(http_server, project)
    sub = root / "src" / "pkg"
    sub.mkdir(parents=True)
    result = cli("sync", cwd=sub)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "aa" / "aa.onnx").read_bytes() == data["aa"]
    assert not (sub / "models").exists()
    assert not (sub / "models.lock").exists()


def test_settings_dir_moves_the_view(http_server, project, cli):
    data = b"weights" * 50
    root = project(f'''
        [settings]
        dir = "vendor/weights"

        [models.w]
        url = "{http_server.add("w.bin", data)}"
    ''')
    assert cli("sync", cwd=root).returncode == 0
    assert (root / "vendor" / "weights" / "w" / "w.bin").read_bytes() == data
    assert not (root / "models").exists()
    path = cli("path", "w", cwd=root)
    assert path.stdout.strip() == str(root / "vendor" / "weights" / "w" / "w.bin")


def test_settings_dir_outside_the_project_is_refused(project, cli):
    root = project('''
        [settings]
        dir = "../elsewhere"
    ''')
    result = cli("lock", cwd=root)
    assert result.returncode == 2
    assert "models.toml:3" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root.parent / "elsewhere").exists()


def test_url_credentials_are_refused(project, cli):
    root = project('''
        [models.secret]
        url = "https://user:hunter2@example.com/m.onnx"
    ''')
    result = cli("lock", cwd=root)
    assert result.returncode == 2
    assert "models.toml:3" in result.stderr
    assert not (root / "models.lock").exists()


def test_jobs_env_must_be_positive(http_server, project, cli):
    root, _ = three_models(http_server, project)
    result = cli("sync", cwd=root, env={"MODELSYNC_JOBS": "zero"})
    assert result.returncode == 2
    assert "MODELSYNC_JOBS" in result.stderr
    ok = cli("sync", cwd=root, env={"MODELSYNC_JOBS": "1"})
    assert ok.returncode == 0, ok.stderr
