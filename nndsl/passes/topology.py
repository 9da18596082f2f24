"""Residual structure, from the graph alone: which weight layers (ops with the `linear` trait: dense and
convolution layers) form the branch of each residual addition, how deep the branch is, which of its
layers come last, which layers are readouts, and the network's depth.

An `add` of u and v is residual when the two sides differ in weight layers and the shorter has at most
one (an identity or a projection shortcut): with anc() the ancestor sets, the side of v is the nodes of
anc(v) − anc(u) that descend from a node both sides share, and the branch is the side with more weight
layers. A layer in several branches belongs to the innermost. Ancestor sets are bitsets (Python ints),
so the pass is linear in the graph times a word operation per edge.

Writes the `residual` facet on weight layers and `ir.topology` (depth, branches).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import ops as O
from ..facets import attach
from ..facets.topology import Residual
from ..ir import IR


@dataclass(frozen=True)
class Topology:
    depth: int          # weight layers on the longest path from an input to an output
    branches: int       # residual branches (L)


def is_weight_layer(node) -> bool:
    od = O.get(node.op)
    return od is not None and "linear" in od.traits and any(p.name == "weight" for p in node.params)


def topology(ir: IR) -> Topology:
    got = getattr(ir, "topology", None)
    if got is not None:
        return got
    nodes = list(ir.nodes())
    index = {n.id: i for i, n in enumerate(nodes)}
    weight = [is_weight_layer(n) for n in nodes]
    wmask = sum(1 << i for i, w in enumerate(weight) if w)
    preds = [[index[u] for u, _ in ir.inputs_of(n.id) if u in index] for n in nodes]
    succs: list[list[int]] = [[] for _ in nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].append(i)
    anc = [0] * len(nodes)
    longest = [0] * len(nodes)           # weight layers on the longest path ending at a node
    for i, ps in enumerate(preds):
        a = 1 << i
        best = 0
        for p in ps:
            a |= anc[p]
            best = max(best, longest[p])
        anc[i] = a
        longest[i] = best + weight[i]
    depth = max((longest[index[o.node]] for o in ir.meta.outputs if o.node in index), default=0)

    facts: dict[int, Residual] = {}
    size: dict[int, int] = {}
    branches = 0
    for i, n in enumerate(nodes):
        if n.op != "add" or len(preds[i]) != 2 or preds[i][0] == preds[i][1]:
            continue
        u, v = preds[i]
        shared = anc[u] & anc[v]
        sides = []
        for a, b in ((u, v), (v, u)):
            side = anc[a] & ~anc[b]
            members = [j for j in _bits(side) if anc[j] & shared]
            sides.append((sum(weight[j] for j in members), a, members))
        sides.sort(key=lambda s: s[0])
        (w_skip, _, _), (w_branch, end, members) = sides
        if w_branch == 0 or w_skip > 1 or w_skip == w_branch:
            continue
        branches += 1
        inside = set(members)
        count = {}
        for j in sorted(inside):
            count[j] = weight[j] + max((count[p] for p in preds[j] if p in inside), default=0)
        m = count[end]
        clear = {end: True}
        for j in sorted(inside, reverse=True):
            if j != end:
                clear[j] = any(clear.get(s, False) and not weight[s] for s in succs[j] if s in inside)
        for j in inside:
            if weight[j] and (j not in size or len(inside) < size[j]):
                size[j] = len(inside)
                facts[j] = Residual(branch=n.id, branch_depth=m, last=clear[j])
    # readouts: weight layers that reach a model output through no other weight layer
    clear_out = [False] * len(nodes)
    for o in ir.meta.outputs:
        if o.node in index:
            clear_out[index[o.node]] = True
    for j in range(len(nodes) - 1, -1, -1):
        if not clear_out[j]:
            clear_out[j] = any(clear_out[s] and not weight[s] for s in succs[j])
    for j, n in enumerate(nodes):
        if weight[j]:
            f = facts.get(j, Residual())
            attach(n, f.model_copy(update={"readout": clear_out[j]}))
    ir.topology = Topology(depth=depth, branches=branches)
    return ir.topology


def _bits(x: int):
    i = 0
    while x:
        low = x & -x
        i = low.bit_length() - 1
        yield i
        x ^= low
