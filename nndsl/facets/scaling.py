"""How a parameter and a layer scale with width under the model's parametrization (filled by
nndsl/passes/parametrize.py)."""
from __future__ import annotations

from . import Facet


class Scaling(Facet, slot="scaling", on=("param",)):
    cls: str                     # hidden (both fans grow with width), input, output, vector, fixed
    lr_adam: float = 1.0         # learning-rate multiplier with Adam-like optimizers
    lr_sgd: float = 1.0          # with SGD


class Multiplier(Facet, slot="multiplier", on=("node",)):
    input: float                 # the layer's input is multiplied by this (μP readout 1/m, NTK 1/√fan_in)
