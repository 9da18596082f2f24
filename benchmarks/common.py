"""Timing helpers: interleaved repetitions, medians, ratios measured in the same run."""
from __future__ import annotations

import statistics
import time


def interleaved(fns: dict, repeat: int, warmup: int = 1) -> dict[str, float]:
    """Run each function `repeat` times, alternating between them; return the median seconds of each."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
