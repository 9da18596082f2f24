"""The predicted statistics of a node's output at init (filled by nndsl/passes/signal.py)."""
from __future__ import annotations

from typing import Optional

from . import Facet


class Signal(Facet, slot="signal", on=("node",)):
    q: float                                    # second moment of an output entry, E[h²]
    mu: float = 0.0                             # mean of an entry over the features of one sample
    k: float = 0.0                              # covariance of a feature between two samples / positions
    chi: Optional[float] = None                 # a weighted layer: fan_out·E[w²]·E[φ'(z)²] of the activation
                                                # its output feeds (1 when none): the mean-field gradient factor
    grad: Optional[float] = None                # E[grad²] at this output relative to the model output's
