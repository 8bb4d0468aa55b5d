"""The serving process's collector settings (process.py): the young generation's
threshold raised above the calls in flight, and cycles still collected without
anyone calling the collector."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from jobqueue.process import YOUNG_GC_THRESHOLD, collect_young_rarely


@pytest.fixture
def restored_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


class _Node:
    __slots__ = ("__weakref__", "other")

    def __init__(self) -> None:
        self.other: _Node = self  # a cycle: refcounting alone never frees it


@pytest.mark.usefixtures("restored_thresholds")
def test_the_young_threshold_is_raised_and_the_older_ones_kept() -> None:
    gc.set_threshold(700, 11, 12)
    collect_young_rarely()
    assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 11, 12)


@pytest.mark.usefixtures("restored_thresholds")
def test_cycles_are_still_collected_by_the_collector_on_its_own() -> None:
    collect_young_rarely()
    gc.collect()  # the young generation's count starts from zero
    gone = weakref.ref(_Node())
    assert gone() is not None
    for _ in range(2 * YOUNG_GC_THRESHOLD):  # more cycles, as garbage accumulates
        _Node()
    assert gone() is None
