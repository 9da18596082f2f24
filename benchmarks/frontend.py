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
    recovery = syntax_errors()
    return {"t1k": t1, "t10k": t10, "scaling": t10 / t1, "recovery": recovery}


def syntax_errors(n_ops: int = 10_000, n_errors: int = 10) -> float:
    """Error recovery is one pass: parsing a spec with 10 independent syntax errors costs about one
    parse of the same spec without them (it used to be one parse per error)."""
    from common import interleaved_both
    from nndsl.syntax.parser import parse_recovering

    lines = big_spec(n_ops).split("\n")
    step = len(lines) // (n_errors + 1)
    bad = list(lines)
    for k in range(1, n_errors + 1):
        bad[k * step] = bad[k * step].replace("linear(", "linear(x x ", 1).replace("relu(", "relu(x x ", 1)
    clean, broken = "\n".join(lines), "\n".join(bad)
    assert len(parse_recovering(broken, "b.nn")[1]) == n_errors
    med, best = interleaved_both({"clean": lambda: parse_recovering(clean, "c.nn"),
                                  "broken": lambda: parse_recovering(broken, "b.nn")}, repeat=5)
    ratio = med["broken"] / med["clean"]
    print(f"syntax errors: parse of {n_ops:,} ops with {n_errors} errors vs without: {med['broken']:.3f} s vs "
          f"{med['clean']:.3f} s median, {ratio:.2f}x   (target <= 1.5x; one parse per error was {n_errors + 1}x)")
    return ratio


if __name__ == "__main__":
    main()
