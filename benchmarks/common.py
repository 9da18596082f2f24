"""Timing helpers: interleaved repetitions in alternating order, ratios measured in the same run."""
from __future__ import annotations

import statistics
import time


def interleaved_both(fns: dict, repeat: int, warmup: int = 1) -> tuple[dict, dict]:
    """Run each function `repeat` times, alternating between them and reversing the order every other
    round (so neither side always runs first). Returns (median seconds, minimum seconds) per function."""
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


def interleaved(fns: dict, repeat: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per function of interleaved runs."""
    return interleaved_both(fns, repeat, warmup)[0]


def best(fn, n: int = 3) -> float:
    """The fastest of n runs, in seconds."""
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def paired(a, b, repeat: int, warmup: int = 2) -> tuple[float, float, float]:
    """Time `a` and `b` in pairs, alternating which runs first: (median of the per-pair ratios t_a / t_b,
    median t_a, median t_b). Paired ratios cancel most of a noisy machine's drift."""
    for _ in range(warmup):
        a()
        b()
    ratios, ta, tb = [], [], []
    for r in range(repeat):
        t = {}
        for f in ((a, b) if r % 2 == 0 else (b, a)):
            s = time.perf_counter()
            f()
            t[f] = time.perf_counter() - s
        ta.append(t[a])
        tb.append(t[b])
        ratios.append(t[a] / t[b])
    return statistics.median(ratios), statistics.median(ta), statistics.median(tb)
