"""The init rule in force for a parameter, and where it was declared (filled by nndsl/passes/init.py)."""
from __future__ import annotations

from typing import Optional, Union

from . import Facet


class Init(Facet, slot="init", on=("param",)):
    rule: str                                   # a name in nndsl.init.RULES
    args: dict[str, Union[float, int, str]] = {}
    declared_at: str = ""                       # file:line of the `key: rule` entry
    key: str = ""                               # the key as written: `weight`, `linear.weight`, `*.bias`
    std: Optional[float] = None                 # standard deviation of the entries the rule gives
    mean: Optional[float] = None                # mean and second moment of the entries (signal analysis);
    m2: Optional[float] = None                  # None: the layer's PyTorch default decides
    seed: int = 0                               # salt of this parameter's generator (from its name)
    path: str = ""                              # the parameter's name in the module's state dict
    prim: str = ""                              # what the module does (nndsl.init.PRIMITIVES); "" keeps
    prim_args: dict[str, Union[float, int]] = {}  # PyTorch's default
    frozen: bool = False                        # `frozen(...)`: not trained (requires_grad off)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.args.items())
        return f"frozen({self.rule}({args}))" if self.frozen else f"{self.rule}({args})"
