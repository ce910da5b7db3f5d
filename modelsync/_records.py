"""Why the records of the sync path are NamedTuples and plain classes, not dataclasses.

A sync of 2000 small files lasts about half a second, and every millisecond
before the first download counts. On Python 3.11, ``import dataclasses``
costs ~12 ms (it imports inspect, ast, dis and tokenize), and each class it
makes ~0.75 ms more: it compiles every generated method with ``exec``. The 21
records a sync used cost it ~28 ms, a twentieth of its time, before any work.
A ``typing.NamedTuple`` is made in ~0.2 ms, and built faster too (a frozen
dataclass sets each field through ``object.__setattr__``): 2000 models are
6000 records.

So: immutable records are NamedTuples (equality, ``repr`` and ``_replace``
come with them; like any tuple they also compare equal to a plain tuple of
the same values, which nothing here relies on). Mutable state is a plain
class. Modules off the sync path (the manifest, markers, the locker,
hardware detection) keep their dataclasses.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

# The default of a record's mapping field: shared by every record, so read-only.
EMPTY: Mapping[str, Any] = MappingProxyType({})
