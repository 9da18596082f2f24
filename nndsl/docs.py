"""Reference documentation generated from the op registry (docs/ops.md)."""
from __future__ import annotations

from . import ops as O
from .elaborate import signature


def ops_markdown() -> str:
    O.all_names()
    out = ["# Operations", "", "Generated from the op registry (`python scripts/gen_docs.py`). Tensor inputs come "
           "first, then attributes, positionally or by keyword.", "",
           "| op | signature | traits | description |", "| --- | --- | --- | --- |"]
    for name in sorted(O.OPS):
        od = O.OPS[name]
        alias = f" (also {', '.join(od.aliases)})" if od.aliases else ""
        sig = signature(od).replace("|", "\\|")
        out.append(f"| `{name}`{alias} | `{sig}` | {', '.join(sorted(od.traits))} | {od.doc.replace('|', '/')} |")
    return "\n".join(out) + "\n"
