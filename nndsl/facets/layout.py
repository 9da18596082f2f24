"""The storage layout of a parameter (how its values are held) and the structure of a layer's weight.

Every parameter is dense until a sparsity declaration says otherwise (nndsl/passes/sparsity.py). A
`Layout` records, per stored tensor, its size in elements and bytes and which logical weight it holds
part of; a structured layer's node carries a `Structure`: the rule, the dense shape it stands for, what
may be non-zero, its FLOPs and the path the module takes, which codegen and the summary read.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from ..types import dtype_bytes
from . import Facet

KIND = Literal["dense", "masked", "nm", "block", "monarch", "lowrank", "symmetric"]


class Layout(Facet, slot="layout", on=("param",)):
    kind: KIND = "dense"
    stored: int                    # values held in memory
    bytes: int                     # bytes held in memory
    density: float = 1.0           # fraction of the dense tensor's entries that can be non-zero
    of: str = ""                   # the logical weight a factor, block set or mask belongs to ("": itself)
    dense_shape: tuple[int, ...] = ()   # that weight's dense shape (for factors: not this tensor's)


class Structure(Facet, slot="structure", on=("node",)):
    """A layer whose weight is sparse or structured (one per layer: its `weight`)."""

    kind: KIND
    rule: str                      # the declared rule (random, erk, magnitude, mask, nm, block, monarch, lowrank)
    args: dict[str, Union[float, int, str, None]] = {}
    dense_shape: tuple[int, ...]
    stored: int                    # weights the layer stores for it (parameters, not masks)
    nonzero: int                   # entries of the dense weight that may be non-zero
    density: float
    kernel: str                    # the CPU path
    gpu: str                       # the path with Triton on a CUDA GPU
    dense_flops: Optional[int] = None   # one forward of the dense layer, when the batch is known
    note: str = ""
    declared_at: str = ""
    mask_file: str = ""            # `mask(...)` / `block(layout=...)`: the file, resolved
    fan_in: int = 1                # the dense weight's fans times the density
    fan_out: int = 1
    dense_fan_in: int = 1          # the dense weight's own fans
    dense_fan_out: int = 1
    # the fraction of E[w²] the mask keeps at init for normal and for uniform entries (the density for
    # random masks, more where the largest entries are kept): init rules and the signal pass scale by it
    energy: tuple[float, float] = (1.0, 1.0)
    paths: int = 1                 # products of two stored entries summed into one dense entry (factors)
    frozen: bool = False           # `frozen(rule)`: not trained

    def energy_of(self, family: str) -> float:
        """`energy` for entries drawn from a normal ("normal") or a uniform ("uniform") distribution."""
        return self.energy[1] if family == "uniform" else self.energy[0]


class DenseLayouts:
    """The dense layout of a parameter, one object per size and dtype (facets are frozen). Shape inference
    gives it to every parameter it makes: a parameter is dense until the sparsity pass, later, replaces
    the layout of the weights it stores otherwise."""

    def __init__(self) -> None:
        self.dense: dict[tuple, Layout] = {}

    def of(self, p) -> Layout:
        key = (p.numel, p.dtype)
        lay = self.dense.get(key)
        if lay is None:                       # from checked ints: built without validation
            from ..fastmodel import make

            lay = self.dense[key] = make(Layout, stored=p.numel, bytes=p.numel * dtype_bytes(p.dtype))
        return lay
