from pathlib import Path


def test_url_model_locks_syncs_and_resolves(http_server, project, cli):
    data = b"weights" * 1000
    url = http_server.add("models/tiny.onnx", data)
    root = project(f'''
        [models.tiny]
        url = "{url}"
    ''')
    result = cli("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "tiny" / "tiny.onnx").read_bytes() == data
    before = len(http_server.requests)
    again = cli("sync", cwd=root)
    assert again.returncode == 0, again.stderr
    assert len(http_server.requests) == before
    found = cli("path", "tiny", cwd=root)
    assert Path(found.stdout.strip()) == root / "models" / "tiny" / "tiny.onnx"
