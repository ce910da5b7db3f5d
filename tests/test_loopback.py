"""_loopback.is_loopback: plain http:// is allowed only to this machine."""

from __future__ import annotations

import pytest

from modelsync._loopback import is_loopback


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.255.255.255", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("0:0:0:0:0:0:0:1", True),
        ("localhost", True),
        ("models.localhost", True),
        ("127.0.0.256", False),
        ("127.00.0.1", False),  # a leading zero: not an address ipaddress reads
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("127.0.0.1.example.com", False),
        ("localhost.example.com", False),
        ("::2", False),
        ("", False),
    ],
)
def test_loopback_hosts(host, expected):
    assert is_loopback(host) is expected
