"""The collector settings of liaison's worker processes (`adapter.runtime`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from adapter.runtime import OLDER_THRESHOLDS, YOUNG_THRESHOLD, settle_after_start


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_a_worker_built_at_start_is_left_out_of_collections(
    restored_collector: None,
) -> None:
    kept_for_life = [{"n": n} for n in range(1000)]
    settle_after_start()
    assert gc.get_freeze_count() >= len(kept_for_life)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


def test_cycles_made_after_start_are_still_collected(restored_collector: None) -> None:
    settle_after_start()

    class Node:
        pass

    import weakref

    node = Node()
    node.itself = node  # type: ignore[attr-defined]  # a cycle: refcounting alone keeps it
    alive = weakref.ref(node)
    del node
    gc.collect()
    assert alive() is None
