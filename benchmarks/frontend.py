"""Front end: `check` of generated specs with 1,000 and 10,000 ops (parse, elaborate, shapes, axes,
ensures, layouts), beside what a user has without nndsl: the same layers built and run by PyTorch on the
meta device (construct + forward, concrete shapes only), timed in the same run.
Targets: 10,000 ops in under 0.8 s, 10x faster than the meta-device run; 10x the ops at most 11x the time."""
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
    t1, m1 = best_of(small, 15)
    t10, m10 = best_of(big, 9)
    meta = meta_device(10_000)
    print("front end: nndsl.check of a generated spec (linear + relu pairs)")
    print(f"  1,000 ops:  {t1:.3f} s best, {m1:.3f} s median")
    print(f"  10,000 ops: {t10:.3f} s best, {m10:.3f} s median   (target < 0.8 s)")
    print(f"  scaling 10x ops -> {t10 / t1:.2f}x time (median {m10 / m1:.2f}x)   (target <= 11x)")
    print(f"  PyTorch on the meta device, same 10,000 layers (construct + forward): {meta:.3f} s best -> nndsl is "
          f"{meta / t10:.1f}x faster   (target >= 10x)")
    recovery = syntax_errors()
    return {"t1k": t1, "t10k": t10, "scaling": t10 / t1, "meta": meta, "vs_meta": meta / t10, "recovery": recovery}


def meta_device(n_ops: int, width: int = 32, repeat: int = 3) -> float:
    """What the shapes of the same network cost without nndsl: build the modules on the meta device and
    run a forward pass (best of `repeat`)."""
    import torch
    from torch import nn

    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        with torch.device("meta"):
            layers = []
            for _i in range(n_ops // 2):
                layers += [nn.Linear(width, width), nn.ReLU()]
            net = nn.Sequential(*layers)
            y = net(torch.empty(8, width))
        best = min(best, time.perf_counter() - t)
        assert y.shape == (8, width)
        del net, layers
    return best


def syntax_errors(n_ops: int = 10_000, n_errors: int = 10) -> float:
    """Error recovery is one pass: parsing a spec with 10 independent syntax errors costs about one
    LALR parse of the same spec without them (it used to be one parse per error). Text with errors goes
    to the LALR parser after the fast parser gives up at the first error, so the broken spec is timed as
    `check` parses it and the clean one by the LALR parser alone; the fast parser's own time on the
    clean spec is printed beside them."""
    from common import interleaved_both
    from nndsl.syntax.parser import parse_recovering

    lines = big_spec(n_ops).split("\n")
    step = len(lines) // (n_errors + 1)
    bad = list(lines)
    for k in range(1, n_errors + 1):
        bad[k * step] = bad[k * step].replace("linear(", "linear(x x ", 1).replace("relu(", "relu(x x ", 1)
    clean, broken = "\n".join(lines), "\n".join(bad)
    assert len(parse_recovering(broken, "b.nn")[1]) == n_errors
    gc.collect()
    gc.disable()                      # as `check` parses (an AST has no cycles: refcounting frees it)
    try:
        med, best = interleaved_both({"clean": lambda: parse_recovering(clean, "c.nn", fast=False),
                                      "broken": lambda: parse_recovering(broken, "b.nn"),
                                      "fast": lambda: parse_recovering(clean, "c.nn")}, repeat=5)
    finally:
        gc.enable()
    ratio = med["broken"] / med["clean"]
    print(f"syntax errors: parse of {n_ops:,} ops with {n_errors} errors vs the LALR parse without: "
          f"{med['broken']:.3f} s vs {med['clean']:.3f} s median, {ratio:.2f}x   (target <= 1.5x; one parse per "
          f"error was {n_errors + 1}x)")
    print(f"  the fast parser on the clean spec: {med['fast']:.3f} s median, {med['clean'] / med['fast']:.2f}x "
          f"faster than the LALR parser")
    return ratio


if __name__ == "__main__":
    main()
