"""A histogram kept as plain numbers, exposed through prometheus_client at scrape time.

prometheus_client's own Histogram takes a lock and walks its buckets in Python on
every observation; a worker observes two per job. Here an observation is one
bisect (in C) and two additions, made on the event loop's thread; a scrape (on
the worker's exporter thread) reads the numbers as they are: a scrape may see an
observation in its bucket before its sum, never a count that goes back.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from prometheus_client.metrics_core import HistogramMetricFamily

# Handler runs and RPCs: a millisecond to five minutes.
DURATION_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
# Waits in a queue: a millisecond to an hour.
WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = (*bounds, math.inf)
        self.counts = [0] * len(self.bounds)  # per bucket, not cumulative
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus' `le` counts.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str]) -> None:
        cumulative, buckets = 0, []
        for bound, count in zip(self.bounds, list(self.counts), strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        family.add_metric(labels, buckets, self.sum)


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)
