"""Front end: `check` of generated specs with 1,000 and 10,000 ops (parse, elaborate, infer shapes).
Targets: 10,000 ops in under 2 s; 10x the ops costs at most 12x the time."""
from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_spec import big_spec  # noqa: E402

import nndsl  # noqa: E402


def best_of(src: str, n: int) -> float:
    ts = []
    for i in range(n):
        text = src + f"# run {i}\n"  # a new text each run: no cached parse
        gc.collect()  # free the previous run's IR outside the timed window
        t = time.perf_counter()
        res = nndsl.check(source=text)
        ts.append(time.perf_counter() - t)
        assert res.ok, res.diagnostics[:3]
        del res
    return min(ts), statistics.median(ts)


def main() -> dict:
    nndsl.check(source=big_spec(10))  # grammar built once per process, as in an editor session
    small, big = big_spec(1_000), big_spec(10_000)
    t1, m1 = best_of(small, 7)
    t10, m10 = best_of(big, 5)
    print("front end: nndsl.check of a generated spec (linear + relu pairs)")
    print(f"  1,000 ops:  {t1:.3f} s best, {m1:.3f} s median")
    print(f"  10,000 ops: {t10:.3f} s best, {m10:.3f} s median   (target < 2 s)")
    print(f"  scaling 10x ops -> {t10 / t1:.2f}x time (median {m10 / m1:.2f}x)   (target <= 12x)")
    return {"t1k": t1, "t10k": t10, "scaling": t10 / t1}


if __name__ == "__main__":
    main()
