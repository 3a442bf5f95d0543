"""Settings of the Python runtime for liaison's long-running processes (server, pusher,
converters)."""

from __future__ import annotations

import gc

# CPython collects its youngest generation every 700 new container objects, and every collection
# of an older one walks every object alive. Delivering one letter allocates tens of thousands of
# dicts and lists that reference counting frees by itself, in a process holding hundreds of
# thousands of long-lived objects (modules, SQLAlchemy, FHIR model classes, validation caches):
# measured, the collector took ~25 % of the pusher's CPU and ~10 % of a conversion process's;
# in a server under a thousand readers, a full collection every ~5 s held every request ~0.2 s.
YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (20, 20)


def settle_after_start() -> None:
    """Call once a long-running process has built what it keeps for its whole life: those
    objects are set aside from the collector's scans (`gc.freeze`), and collections come less
    often. Cycles created later are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
