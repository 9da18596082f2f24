"""Where a weight layer sits in the network (filled by nndsl/passes/topology.py): its residual branch,
whether it is that branch's last layer, whether it is a readout. Fixup and the `depth`/`branches`
names of init rules read it."""
from __future__ import annotations

from . import Facet


class Residual(Facet, slot="residual", on=("node",)):
    branch: str = ""          # the `add` node that ends this layer's innermost residual branch ("": none)
    branch_depth: int = 0     # m: weight layers on the longest path through that branch
    last: bool = False        # no weight layer between this one and the end of its branch
    readout: bool = False     # no weight layer between this one and a model output
