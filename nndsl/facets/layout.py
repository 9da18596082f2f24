"""The storage layout of a parameter: how its values are held.

Every parameter is dense until a sparsity constraint says otherwise; the layout records its size in
elements and bytes as stored, which the summary reports and later layouts (masked, structured) shrink.
"""
from __future__ import annotations

from typing import Literal

from ..ir import IR
from ..types import dtype_bytes
from . import Facet, attach


class Layout(Facet, slot="layout", on=("param",)):
    kind: Literal["dense", "masked", "structured"] = "dense"
    stored: int                    # values held in memory
    bytes: int                     # bytes held in memory
    density: float = 1.0           # fraction of the dense tensor's entries that can be non-zero


def fill_layouts(ir: IR) -> None:
    """Give every parameter without a layout the dense one (a pass that knows better runs before)."""
    for n in ir.nodes():
        for p in n.params:
            if "layout" not in p.facets:
                attach(p, Layout(stored=p.numel, bytes=p.numel * dtype_bytes(p.dtype)))
