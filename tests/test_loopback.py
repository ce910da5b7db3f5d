"""_loopback.is_loopback: plain http:// is allowed only to this machine."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync._loopback import is_loopback


def _reference(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789.", max_size=16),
        st.text(alphabet="0123456789abcdef:.", max_size=20),
        st.lists(st.integers(min_value=0, max_value=300).map(str), min_size=1, max_size=5).map(".".join),
        st.text(max_size=12),
    )
)
def test_loopback_agrees_with_ipaddress(host):
    assert is_loopback(host) is _reference(host)
