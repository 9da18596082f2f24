"""Run every benchmark; each prints ratios measured in the same run."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build  # noqa: E402
import coldstart  # noqa: E402
import draw  # noqa: E402
import frontend  # noqa: E402
import init  # noqa: E402
import lsp  # noqa: E402
import runtime  # noqa: E402
import sparsity  # noqa: E402
import symmetry  # noqa: E402

if __name__ == "__main__":
    coldstart.main()
    print()
    frontend.main()
    print()
    build.main()
    print()
    draw.main()
    print()
    init.main()
    print()
    runtime.main()
    print()
    sparsity.main()
    print()
    symmetry.main()
    print()
    lsp.main()
