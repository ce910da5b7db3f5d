"""Whether a URL's host is this machine: plain ``http://`` is accepted only there.

A module of its own because both the manifest and the lock ask, and a sync
from the lock alone must not import the manifest's reader (and tomllib) for it.
"""

from __future__ import annotations

import functools
import re

# 127.x.y.z as everyone writes it; other spellings of an address go to ipaddress,
# whose import (~3 ms) a sync from a lock of loopback URLs then does not pay.
_IPV4_LOOPBACK = re.compile(r"127(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
_IPV4_CHARACTERS = frozenset("0123456789.")


@functools.lru_cache(maxsize=256)  # asked once per URL of a manifest: 2000 times for the same host
def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost") or _IPV4_LOOPBACK.fullmatch(host):
        return True
    if ":" not in host and not set(host) <= _IPV4_CHARACTERS:
        return False  # a name, not an address (an IPv6 address has a colon, an IPv4 one only digits and dots)
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
