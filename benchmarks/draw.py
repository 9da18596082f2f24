"""Circuit diagrams: `nndsl draw` of GPT-2 small collapsed at depth 1 to SVG, and of generated specs with
500 and 5,000 ops (layout alone and layout + Graphviz render), timed in one run.
Targets: GPT-2 small under 3 s, 5,000 ops under 10 s, layout time 10x the ops at most 12x."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best  # noqa: E402
from gen_spec import big_spec  # noqa: E402

import nndsl  # noqa: E402
from nndsl.backends.ncd import Options, layout  # noqa: E402
from nndsl.backends.ncd_dot import Drawing  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent



def main() -> dict:
    gpt = nndsl.check(ROOT / "examples" / "gpt2_small.nn").ir
    t_gpt = best(lambda: Drawing(gpt, "circuit", Options(depth=1)).render("svg"))
    small = nndsl.check(source=big_spec(500)).ir
    big = nndsl.check(source=big_spec(5000)).ir
    l_small = best(lambda: layout(small, Options()), 5)
    l_big = best(lambda: layout(big, Options()), 3)
    t_big = best(lambda: Drawing(big, "circuit", Options()).render("svg"), 1)
    print("circuit diagrams (nndsl draw, SVG through neato -n2)")
    print(f"  GPT-2 small at depth 1: {t_gpt:.2f} s   (target < 3 s)")
    print(f"  5,000-op spec: {t_big:.2f} s layout + render   (target < 10 s)")
    print(f"  layout 500 ops {l_small * 1000:.0f} ms, 5,000 ops {l_big * 1000:.0f} ms -> 10x ops = "
          f"{l_big / l_small:.1f}x time   (target <= 12x)")
    return {"gpt2": t_gpt, "big": t_big, "scaling": l_big / l_small}


if __name__ == "__main__":
    main()
