"""Whether a URL's host is this machine: plain ``http://`` is accepted only there.

A module of its own because both the manifest and the lock ask, and a sync
from the lock alone must not import the manifest's reader (and tomllib) for it.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=256)  # asked once per URL of a manifest: 2000 times for the same host
def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
