"""Runtime: forward + backward of the compiled ResNet-18 and GPT-2 small against the hand-written
PyTorch models (same weights, CPU, small batch), timed interleaved. Target: ratio <= 1.03."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import references as R  # noqa: E402
from common import interleaved_both  # noqa: E402

import nndsl  # noqa: E402

EX = HERE.parent / "examples"


def copy_by_order(src, dst):
    sd = dst.state_dict()
    vals = [v for k, v in src.state_dict().items()]
    keys = list(sd)
    if len(keys) != len(vals):  # GPT-2: both state dicts list the tied head once more at the end
        raise ValueError("state dicts differ in length")
    dst.load_state_dict(dict(zip(keys, vals)), strict=True)


def step(model, x, loss_fn):
    def run():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x)).backward()
    return run


def bench(name, ours, ref, x, loss_fn, repeat):
    ours.train()
    ref.train()
    med, best = interleaved_both({"nndsl": step(ours, x, loss_fn), "hand-written": step(ref, x, loss_fn)},
                                 repeat=repeat, warmup=2)
    ratio, ratio_min = med["nndsl"] / med["hand-written"], best["nndsl"] / best["hand-written"]
    print(f"  {name:<12} nndsl {med['nndsl'] * 1e3:8.1f} ms   hand-written {med['hand-written'] * 1e3:8.1f} ms   "
          f"ratio {ratio:.3f} (median), {ratio_min:.3f} (min)   (target <= 1.03)")
    return ratio


def main(repeat: int = 30) -> dict:
    torch.manual_seed(0)
    print(f"runtime: forward + backward, CPU, {torch.get_num_threads()} threads, {repeat} interleaved runs (ABBA)")
    out = {}
    ours = nndsl.load(EX / "resnet18.nn", seed=0)
    ref = R.resnet18()
    copy_by_order(ref, ours)
    x = torch.randn(4, 3, 112, 112)
    out["resnet18"] = bench("ResNet-18", ours, ref, x, lambda y: y.square().mean(), repeat)
    ours = nndsl.load(EX / "gpt2_small.nn", seed=0)
    ref = R.GPT2()
    sd = ref.state_dict()
    keys = [k for k in ours.state_dict()]
    ours.load_state_dict(dict(zip(keys, sd.values())), strict=True)
    idx = torch.randint(0, 50257, (1, 64))
    out["gpt2"] = bench("GPT-2 small", ours, ref, idx, lambda y: y.float().logsumexp(-1).mean(), max(5, repeat // 2))
    return out


if __name__ == "__main__":
    main()
