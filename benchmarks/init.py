"""Init rules and signal analysis, timed in one run:
- signal analysis of GPT-2 small (the pass alone, and `check --signal` against plain `check`);
  target: the analysis under 0.5 s;
- building GPT-2 small whose spec declares GPT-2's init (normal(0, 0.02) weights, zero biases: every
  parameter drawn from its own seeded generator) against constructing the hand-written module with
  PyTorch's default init; target: ratio <= 1.3. `build` constructs without PyTorch's draws and then
  draws every parameter once (its rule, else its layer's `reset_parameters` under a per-name seed)."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import references as R  # noqa: E402
from common import best, interleaved  # noqa: E402

import nndsl  # noqa: E402
from nndsl.passes.signal import analyse  # noqa: E402

EX = HERE.parent / "examples"

GPT2_INIT = """
import transformer

model GPT2Init(vocab: int = 50257, n_ctx: int = 1024, D: int = 768, depth: int = 12, heads: int = 12) {
  input tokens: [B, T] int64
  init {
    embedding.weight: normal(0, 0.02)
    linear.weight: normal(0, 0.02)
    linear.bias: zeros
  }
  output logits = GPT2(tokens, vocab, n_ctx, D, depth, heads)
}
"""



def main(repeat: int = 3) -> dict:
    ir = nndsl.check(EX / "gpt2_small.nn").ir
    t_pass = best(lambda: analyse(ir), 5)
    t_plain = best(lambda: nndsl.check(EX / "gpt2_small.nn"), 5)
    t_sig = best(lambda: nndsl.check(EX / "gpt2_small.nn", signal=True), 5)
    print("signal analysis of GPT-2 small")
    print(f"  the pass: {t_pass * 1000:.1f} ms   (target < 500 ms)")
    print(f"  check --signal {t_sig * 1000:.0f} ms   check {t_plain * 1000:.0f} ms   ratio {t_sig / t_plain:.2f}")
    t = interleaved({"nndsl": lambda: nndsl.load(source=GPT2_INIT, seed=0),
                     "default": lambda: nndsl.load(EX / "gpt2_small.nn", seed=0),
                     "hand-written": lambda: R.GPT2()}, repeat=repeat, warmup=1)
    ratio = t["nndsl"] / t["hand-written"]
    print("build GPT-2 small with init rules (spec -> module, every parameter ruled and seeded per name)")
    print(f"  nndsl {t['nndsl']:.2f} s   hand-written, PyTorch default init {t['hand-written']:.2f} s   "
          f"ratio {ratio:.2f}   (target <= 1.3)")
    print(f"  without rules (PyTorch's default per layer, seeded per name) {t['default']:.2f} s   "
          f"ratio {t['default'] / t['hand-written']:.2f}")
    return {"signal": t_pass, "build_ratio": ratio}


if __name__ == "__main__":
    main()
