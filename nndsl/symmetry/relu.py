"""The parameter-space symmetries of ReLU networks ("Hidden symmetries of ReLU networks", Grigsby et
al. 2023): wherever a dense or convolution layer's units reach the next weighted layer only through a
positively homogeneous activation (relu, leaky_relu), permuting those units, or scaling one unit's
incoming weights and bias by c > 0 and its outgoing weights by 1/c, leaves the function unchanged.

`hidden_symmetries(ir)` finds these places in a checked IR (front end, no torch); `canonicalize(model,
ir)` maps a model's weights to one representative of their class: every hidden unit's incoming weights
and bias scaled to unit norm, then the units sorted by bias (ties by their weights), layer by layer in
forward order. Equivalent weights give the same representative; the function is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import IR

HOMOGENEOUS = ("relu", "leaky_relu")      # φ(c·x) = c·φ(x) for c > 0
WEIGHTED = ("linear", "conv1d", "conv2d", "conv3d")


@dataclass(frozen=True)
class HiddenLayer:
    first: str        # the layer whose output units are hidden
    act: str          # the activation between
    second: str       # the layer that reads them
    units: int        # how many: the group is S_units x (R_+)^units
    axis: int         # the axis of the units in the first layer's output (-1 for linear, 1 for conv)

    def describe(self) -> str:
        return (f"{self.first} -> {self.act} -> {self.second}: {self.units} units, permutations ({self.units}!) "
                f"and a positive scale each")


def hidden_symmetries(ir: IR) -> list[HiddenLayer]:
    """Every hidden layer of units between two weighted layers through a positively homogeneous
    activation, where nothing else reads the units (a residual or an output would see the change)."""
    consumers: dict[str, list[tuple[str, int]]] = {}
    for n in ir.nodes():
        for u, p in ir.inputs_of(n.id):
            consumers.setdefault(u, []).append((n.id, p))
    outputs = {o.node for o in ir.meta.outputs}
    found = []
    for n in ir.nodes():
        if n.op not in WEIGHTED or "structure" in n.facets or n.id in outputs:
            continue
        ps = {p.name: p for p in n.params}
        w = ps.get("weight")
        if w is None or w.tied_to is not None or int(n.attrs.get("groups", 1) or 1) != 1:
            continue
        nxt = consumers.get(n.id, [])
        if len(nxt) != 1:
            continue
        act = ir.node(nxt[0][0])
        if act.op not in HOMOGENEOUS or act.id in outputs:
            continue
        after = consumers.get(act.id, [])
        if len(after) != 1:
            continue
        second = ir.node(after[0][0])
        if second.op not in WEIGHTED or "structure" in second.facets or after[0][1] != 0:
            continue
        w2 = next((p for p in second.params if p.name == "weight"), None)
        if w2 is None or w2.tied_to is not None or int(second.attrs.get("groups", 1) or 1) != 1:
            continue
        conv = n.op != "linear"
        if conv != (second.op != "linear") or (conv and n.op != second.op):
            continue                                  # a conv's units are channels: read by a conv of its kind
        units = w.shape[0]
        if w2.shape[1] != units:
            continue
        found.append(HiddenLayer(n.id, act.op, second.id, units, 1 if conv else -1))
    return found


def canonicalize(model, ir: IR) -> None:
    """Map the model's weights, in place, to the representative of their class under the hidden
    symmetries of `ir` (the spec the model was built from)."""
    import torch

    with torch.no_grad():
        for h in hidden_symmetries(ir):
            a, b = model.get_submodule(h.first), model.get_submodule(h.second)
            w1 = a.weight.reshape(h.units, -1)
            rows = w1 if a.bias is None else torch.cat([w1, a.bias.reshape(-1, 1)], 1)
            scale = rows.norm(dim=1).clamp_min(1e-30)         # each unit's incoming weights and bias: norm 1
            a.weight.div_(scale.view(-1, *([1] * (a.weight.dim() - 1))))
            if a.bias is not None:
                a.bias.div_(scale)
            b.weight.mul_(scale.view(1, -1, *([1] * (b.weight.dim() - 2))))
            key = (a.bias if a.bias is not None else a.weight.reshape(h.units, -1)[:, 0])
            # sort by bias, then by the incoming weights (lexicographic through a stable sort per column)
            order = torch.arange(h.units)
            flat = a.weight.reshape(h.units, -1)
            for col in range(min(flat.shape[1], 8) - 1, -1, -1):
                order = order[torch.sort(flat[order, col], stable=True).indices]
            order = order[torch.sort(key[order], stable=True).indices]
            a.weight.copy_(a.weight[order])
            if a.bias is not None:
                a.bias.copy_(a.bias[order])
            b.weight.copy_(b.weight[:, order])
