"""Build: constructing and initialising ResNet-50 from its spec (parse, check, generate, construct)
against constructing the hand-written module. Target: ratio <= 1.5."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import references as R  # noqa: E402
from common import interleaved  # noqa: E402

import nndsl  # noqa: E402

EX = HERE.parent / "examples"

_COLD = """
import time
t = time.perf_counter()
{stmt}
print(time.perf_counter() - t)
"""


def cold(stmt: str) -> float:
    """Seconds for `stmt` in a fresh interpreter (imports excluded, everything else included)."""
    pre = f"import sys\nsys.path.insert(0, {str(HERE)!r})\nimport torch, nndsl, references as R\n"
    code = pre + _COLD.format(here=str(HERE), stmt=stmt)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(repeat: int = 7) -> dict:
    t = interleaved({"nndsl": lambda: nndsl.load(EX / "resnet50.nn"), "hand-written": lambda: R.resnet50()},
                    repeat=repeat, warmup=1)
    warm = t["nndsl"] / t["hand-written"]
    c_ours = min(cold(f"nndsl.load({str(EX / 'resnet50.nn')!r})") for _ in range(3))
    c_ref = min(cold("R.resnet50()") for _ in range(3))
    print("build: construct + initialise ResNet-50 (spec -> module, including parse and check)")
    print(f"  in a running process: nndsl {t['nndsl']:.3f} s   hand-written {t['hand-written']:.3f} s   "
          f"ratio {warm:.3f}   (target <= 1.5)")
    print(f"  fresh process:        nndsl {c_ours:.3f} s   hand-written {c_ref:.3f} s   ratio {c_ours / c_ref:.3f}")
    return {"warm": warm, "cold": c_ours / c_ref}


if __name__ == "__main__":
    main()
