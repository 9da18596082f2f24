"""Cold start: fresh processes, as an editor or a pre-commit hook runs nndsl. Prints medians of
interleaved runs and ratios against `python -c pass` measured in the same run.
Targets: `import nndsl` within 0.25 s; `nndsl check examples/gpt2_small.nn` within 0.5 s.

nndsl's modules are compiled to bytecode first, as `pip install` does for an installed package: where
PYTHONDONTWRITEBYTECODE is set (as in CI) a source checkout would otherwise compile every module again in
every process, which is not what a user's editor or pre-commit hook pays."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_both  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _proc(*args: str):
    def run():
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return run


def main(repeat: int = 11) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "nndsl")], check=True,
                   stdout=subprocess.DEVNULL)
    med, best = interleaved_both({
        "python -c pass": _proc("-c", "pass"),
        "import nndsl": _proc("-c", "import nndsl"),
        "nndsl check gpt2_small": _proc("-m", "nndsl", "check", "examples/gpt2_small.nn"),
    }, repeat=repeat)
    base = med["python -c pass"]
    print(f"cold start, fresh processes (median of {repeat}, interleaved)")
    for k in med:
        target = {"import nndsl": "   (target <= 0.25 s)", "nndsl check gpt2_small": "   (target <= 0.5 s)"}.get(k, "")
        print(f"  {k:24s} {med[k]:.3f} s median, {best[k]:.3f} s best, {med[k] / base:5.2f}x python -c pass{target}")


if __name__ == "__main__":
    main()
