"""The symmetry runtime (nndsl/symmetry/runtime.py) as it is copied into generated source: group
convolutions and frame averaging, so that `nndsl compile` output runs with torch alone."""
from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def prelude() -> str:
    lines = (Path(__file__).with_name("runtime.py")).read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))   # after the header
    body = [line for line in lines[start:] if line not in ("import torch", "import torch.nn.functional as F",
                                                         "from torch import nn")]
    return "\n# -- group convolutions and frame averaging " + "-" * 56 + "\n" + "\n".join(body)
