"""Timing helpers: interleaved repetitions in alternating order, ratios measured in the same run."""
from __future__ import annotations

import statistics
import time


def interleaved(fns: dict, repeat: int, warmup: int = 1, stat: str = "median") -> dict[str, float]:
    """Run each function `repeat` times, alternating between them and reversing the order every other
    round (so neither side always runs first); return the median (or min) seconds of each."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    items = list(fns.items())
    for r in range(repeat):
        for k, f in (items if r % 2 == 0 else items[::-1]):
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    agg = min if stat == "min" else statistics.median
    return {k: agg(v) for k, v in times.items()}


def interleaved_both(fns: dict, repeat: int, warmup: int = 1) -> tuple[dict, dict]:
    """Median and minimum of the same interleaved runs."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    items = list(fns.items())
    for r in range(repeat):
        for k, f in (items if r % 2 == 0 else items[::-1]):
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return ({k: statistics.median(v) for k, v in times.items()}, {k: min(v) for k, v in times.items()})
