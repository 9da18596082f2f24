"""Registry-driven tests: every op's shape rule against the real torch output, FLOPs, lowering."""
from __future__ import annotations

import re

import pytest
import torch

import nndsl
from nndsl import ops as O

O.all_names()  # the registry loads its op families lazily

# (op, spec lines using input `x` (and `y`, `t` where declared), input shapes)
CASES = {
    "linear": ("linear(x, 7)", {"x": [2, 5]}),
    "embedding": ("embedding(t, 11, 6)", {"t": ("int64", [2, 4])}),
    "param": ("x + param([1, 5])", {"x": [2, 5]}),
    "conv1d": ('conv1d(x, 4, kernel=3, padding="same")', {"x": [2, 3, 9]}),
    "conv2d": ("conv2d(x, 4, kernel=3, stride=2, padding=1, dilation=1, groups=1)", {"x": [2, 3, 9, 8]}),
    "conv3d": ("conv3d(x, 4, kernel=[1, 3, 3])", {"x": [1, 2, 3, 6, 6]}),
    "equivariant_linear": ("equivariant_linear(x, 5, axis=1)", {"x": [2, 4, 3]}),
    "equivariant_linear2": ("equivariant_linear2(x, 5)", {"x": [2, 4, 4, 3]}),
    "gconv2d": ("gconv2d(x, 3, kernel=3, group=R, stride=2, padding=1)", {"x": [2, 2, 4, 7, 7]}),
    "group_pool": ('group_pool(x, mode="mean")', {"x": [2, 3, 8, 5, 5]}),
    "conv_transpose2d": ("conv_transpose2d(x, 4, kernel=2, stride=2)", {"x": [2, 3, 5, 5]}),
    "maxpool1d": ("maxpool1d(x, kernel=2)", {"x": [2, 3, 9]}),
    "maxpool2d": ("maxpool2d(x, kernel=3, stride=2, padding=1)", {"x": [2, 3, 9, 9]}),
    "maxpool3d": ("maxpool3d(x, kernel=2)", {"x": [1, 2, 4, 4, 4]}),
    "avgpool1d": ("avgpool1d(x, kernel=3, stride=1)", {"x": [2, 3, 9]}),
    "avgpool2d": ("avgpool2d(x, kernel=2, ceil_mode=true)", {"x": [2, 3, 7, 7]}),
    "avgpool3d": ("avgpool3d(x, kernel=2)", {"x": [1, 2, 4, 4, 4]}),
    "adaptive_avgpool2d": ("adaptive_avgpool2d(x, [2, 3])", {"x": [2, 3, 9, 8]}),
    "batchnorm1d": ("batchnorm1d(x)", {"x": [4, 3, 5]}),
    "batchnorm2d": ("batchnorm2d(x, eps=1e-3)", {"x": [4, 3, 5, 5]}),
    "batchnorm3d": ("batchnorm3d(x)", {"x": [2, 3, 2, 2, 2]}),
    "layernorm": ("layernorm(x)", {"x": [2, 4, 6]}),
    "groupnorm": ("groupnorm(x, 2)", {"x": [2, 4, 3, 3]}),
    "rmsnorm": ("rmsnorm(x)", {"x": [2, 4, 6]}),
    "dropout": ("dropout(x, p=0.3)", {"x": [2, 5]}),
    "relu": ("relu(x)", {"x": [2, 5]}),
    "leaky_relu": ("leaky_relu(x, slope=0.2)", {"x": [2, 5]}),
    "gelu": ('gelu(x, approximate="tanh")', {"x": [2, 5]}),
    "silu": ("silu(x)", {"x": [2, 5]}),
    "tanh": ("tanh(x)", {"x": [2, 5]}),
    "sin": ("sin(x)", {"x": [2, 5]}),
    "exp": ("exp(x)", {"x": [2, 5]}),
    "log": ("log(x)", {"x": [2, 5]}),
    "sqrt": ("sqrt(x)", {"x": [2, 5]}),
    "cos": ("cos(x)", {"x": [2, 5]}),
    "abs": ("abs(x)", {"x": [2, 5]}),
    "sigmoid": ("sigmoid(x)", {"x": [2, 5]}),
    "softplus": ("softplus(x)", {"x": [2, 5]}),
    "fn": ('fn(x, expr=["b", "*", ["x"], ["f", "sigmoid", ["x"]]])', {"x": [2, 5]}),
    "elu": ("elu(x)", {"x": [2, 5]}),
    "softmax": ("softmax(x, axis=1)", {"x": [2, 5]}),
    "log_softmax": ("log_softmax(x)", {"x": [2, 5]}),
    "identity": ("identity(x)", {"x": [2, 5]}),
    "activation": ('activation(x, fn="silu")', {"x": [2, 5]}),
    "relu6": ("relu6(x)", {"x": [2, 5]}),
    "hardswish": ("hardswish(x)", {"x": [2, 5]}),
    "hardsigmoid": ("hardsigmoid(x)", {"x": [2, 5]}),
    "mish": ("mish(x)", {"x": [2, 5]}),
    "hardtanh": ("hardtanh(x, min=-0.5, max=2.0)", {"x": [2, 5]}),
    "clamp": ("clamp(x, min=0.25)", {"x": [2, 5]}),
    "shifted_relu": ("shifted_relu(x, tau=0.5)", {"x": [2, 5]}),
    "soft_threshold": ("soft_threshold(x, tau=0.5, clip=1.0)", {"x": [2, 5]}),
    "drop_path": ("drop_path(x, p=0.2)", {"x": [4, 3, 5]}),
    "add": ("x + y", {"x": [2, 1, 5], "y": [3, 1]}),
    "sub": ("1.0 - x", {"x": [2, 5]}),
    "mul": ("x * y", {"x": [2, 5], "y": [5]}),
    "div": ("x / 2", {"x": [2, 5]}),
    "matmul": ("x @ y", {"x": [2, 3, 4], "y": [4, 6]}),
    "einsum": ('einsum("bij,bjk->bik", x, y)', {"x": [2, 3, 4], "y": [2, 4, 5]}),
    "rearrange": ('rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=2, q=2)', {"x": [2, 3, 4, 6]}),
    "reshape": ("reshape(x, [B, -1])", {"x": ("B", [2, 3, 4])}),
    "flatten": ("flatten(x, start=1)", {"x": [2, 3, 4]}),
    "permute": ("permute(x, [0, 2, 1])", {"x": [2, 3, 4]}),
    "transpose": ("transpose(x, 1, 2)", {"x": [2, 3, 4]}),
    "concat": ("concat(x, y, axis=1)", {"x": [2, 3], "y": [2, 5]}),
    "split": ("split(x, [2, 3], axis=1)", {"x": [2, 5]}),
    "chunk": ("chunk(x, 2, axis=1)", {"x": [2, 6]}),
    "sum": ("sum(x, axes=[1, 2])", {"x": [2, 3, 4]}),
    "mean": ("mean(x, axes=[2], keepdim=true)", {"x": [2, 3, 4]}),
    "max": ("max(x, axes=[1])", {"x": [2, 3, 4]}),
    "attention": ("attention(x, x, y, causal=true)", {"x": [2, 2, 5, 4], "y": [2, 2, 5, 3]}),
    "upsample": ('upsample(x, scale=2, mode="bilinear")', {"x": [2, 3, 4, 4]}),
    "pixel_shuffle": ("pixel_shuffle(x, 2)", {"x": [2, 8, 3, 3]}),
    "select": ("select(x, axis=1, index=0)", {"x": [2, 3, 4]}),
    "slice": ("slice(x, axis=2, start=1, end=3)", {"x": [2, 3, 4]}),
    "positions": ("embedding(positions(t, axis=1), 8, 3)", {"t": ("int64", [2, 5])}),
    "floordiv": ("x // 3", {"x": ("int64", [2, 5])}),
    "mod": ("x % 3", {"x": ("int64", [2, 5])}),
    "pow": ("x ** y", {"x": [2, 1, 5], "y": [3, 1]}),
    "eq": ("x == y", {"x": [2, 5], "y": [5]}),
    "ne": ("x != 0.5", {"x": [2, 5]}),
    "lt": ("x < y", {"x": [2, 5], "y": [2, 1]}),
    "le": ("0.0 <= x", {"x": [2, 5]}),
    "gt": ("x > 0", {"x": [2, 5]}),
    "ge": ("x >= y", {"x": [2, 5], "y": [2, 5]}),
    "arange": ("take(x, arange(3), axis=1)", {"x": [2, 5]}),
    "take": ("take(x, t, axis=0)", {"x": [6, 4], "t": ("int64", [2, 3])}),
    "roll": ("roll(x, [1, -2], [0, 1])", {"x": [3, 5]}),
    "where": ("where(x > y, x, y)", {"x": [2, 5], "y": [2, 5]}),
    "masked_fill": ("masked_fill(x, x < 0, -100.0)", {"x": [2, 5]}),
    "buffer": ("x + buffer(arange(5) * 2)", {"x": ("int64", [2, 5])}),
    "expand_like": ("concat(expand_like(param([1, 1, 4]), x, axes=[0]), x, axis=1)", {"x": [3, 2, 4]}),
}


def spec_for(op: str) -> tuple[str, dict]:
    expr, ins = CASES[op]
    lines = (["group R = c4(S)"] if "group=R" in expr else []) + ["model T {"]
    tensors = {}
    for name, decl in ins.items():
        if isinstance(decl, tuple) and decl[0] == "int64":
            lines.append(f"  input {name}: [{', '.join(map(str, decl[1]))}] int64")
            tensors[name] = torch.randint(0, 5, decl[1])
        elif isinstance(decl, tuple):  # first axis symbolic
            shape = decl[1]
            lines.append(f"  input {name}: [{decl[0]}, {', '.join(map(str, shape[1:]))}]")
            tensors[name] = torch.randn(*shape)
        else:
            lines.append(f"  input {name}: [{', '.join(map(str, decl))}]")
            tensors[name] = torch.randn(*decl)
    lines.append(f"  output {expr}")
    lines.append("}")
    return "\n".join(lines) + "\n", tensors


def test_every_op_has_a_case():
    missing = sorted(set(O.OPS) - set(CASES))
    assert not missing, f"ops without a shape test: {missing}"


@pytest.mark.parametrize("op", sorted(CASES))
def test_shape_rule_matches_torch(op):
    src, tensors = spec_for(op)
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    ir = res.ir
    assert any(n.op == op for n in ir.nodes()), f"{op} not in the graph"
    m = nndsl.load(source=src, seed=0).eval()
    with torch.no_grad():
        out = m(*tensors.values())
    outs = out if isinstance(out, tuple) else (out,)
    declared = []
    for o in ir.meta.outputs:
        declared.append(ir.node(o.node).outputs[o.port])
    assert len(outs) == len(declared)
    for t, ty in zip(outs, declared):
        shape = [d.value if d.is_const else None for d in ty.shape]
        assert [s if s is not None else t.shape[i] for i, s in enumerate(shape)] == list(t.shape)
    for n in ir.nodes():
        if n.op not in ("input", "block_input"):
            assert n.flops is not None
    # parameter shapes declared by the op equal the torch module's
    sd = m.state_dict()
    for n in ir.nodes():
        for p in n.params:
            key = n.id if not p.name else f"{n.id}.{p.name}"
            assert tuple(sd[key].shape) == p.shape, key


@pytest.mark.parametrize("name", sorted(O.OPS))
def test_op_record_is_complete(name):
    od = O.get(name)
    assert od.infer is not None and od.flops is not None
    assert od.lower is not None or name in ("param", "buffer")   # the codegen lowers these two itself
    assert od.doc, f"{name} has no doc"
    if "weighted" in od.traits:
        assert od.params is not None


def _size(t, ref):
    d = t.shape[ref.axis]
    return d.value if d.is_const else None


@pytest.mark.parametrize("op", sorted(CASES))
def test_recipe_keeps_the_promises_of_the_traits(op):
    """The contract: every op's rule leaves a recipe whose axis signature covers every output axis with
    references that exist and sizes that agree, and every weighted op's parameters say what each of their
    axes faces, so that fan-in and fan-out follow (and match PyTorch's own count for linear and conv)."""
    from nndsl.recipe import DERIVE, KEEP, MERGE, NEW

    src, _ = spec_for(op)
    ir = nndsl.check(source=src).ir
    od = O.get(op)
    for n in (n for n in ir.nodes() if n.op == op):
        ins = ir.in_types(n.id)
        sig = n.recipe.sig
        assert sig is not None, f"{op}: no axis signature"
        assert len(sig.outs) == len(n.outputs)
        parts: dict = {}
        for out, axes in zip(n.outputs, sig.outs):
            assert len(axes) == out.rank, f"{op}: {len(axes)} axis rules for a {out.rank}-d output"
            for ax, d in zip(axes, out.shape):
                assert ax.kind in (KEEP, MERGE, DERIVE, NEW)
                for r in ax.refs:
                    assert 0 <= r.arg < len(ins) and 0 <= r.axis < ins[r.arg].rank and 0 <= r.part < r.parts
                sizes = [_size(ins[r.arg], r) for r in ax.refs]
                if ax.kind == KEEP and d.is_const:
                    assert ax.refs, f"{op}: a kept axis with no source"
                    for r, s in zip(ax.refs, sizes):
                        if r.parts == 1:
                            assert s == d.value, f"{op}: kept axis of size {d} from an axis of size {s}"
                        else:
                            parts.setdefault((r.arg, r.axis), {})[r.part] = d.value
                if ax.kind == MERGE and d.is_const:
                    k = 1
                    for r, s in zip(ax.refs, sizes):
                        if r.parts == 1:
                            k *= s
                        else:
                            parts.setdefault((r.arg, r.axis), {})[r.part] = None
                    if all(r.parts == 1 for r in ax.refs):
                        assert k == d.value, f"{op}: merged axes of {k} elements make an axis of {d}"
        for (i, axis), got in parts.items():   # the factors of a split axis multiply back to it
            if None not in got.values() and len(got) == next(r.parts for a in sig.outs[0] for r in a.refs
                                                             if (r.arg, r.axis) == (i, axis)):
                k = 1
                for v in got.values():
                    k *= v
                assert k == ins[i].shape[axis].value
        for group in sig.contracted:           # contracted axes meet with equal sizes
            assert len({_size(ins[r.arg], r) for r in group}) == 1
        for p in n.params:
            assert len(p.faces) == len(p.shape), f"{op}.{p.name}: {len(p.faces)} faces for {len(p.shape)} axes"
        if "linear" in od.traits:
            assert n.recipe.fan[0] is not None
            w = next(p for p in n.params if p.name == "weight")
            roles = [f.role for f in w.faces]
            # PyTorch's formula reads a weight as [out, in, *window]; where the faces say it is one
            # (and ungrouped), the two counts agree
            if roles[:2] == ["out", "in"] and set(roles[2:]) <= {"window"} and w.faces[0].groups == 1:
                t = torch.empty(w.shape)
                assert (w.fan_in, w.fan_out) == torch.nn.init._calculate_fan_in_and_fan_out(t)


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError):
        O.register(O.OpDef(name="relu", inputs=("x",)))


def test_ir_json_round_trip_and_verifier():
    from nndsl.ir import IR
    from nndsl.passes.validate import verify

    for ex in ("resnet18", "gpt2_small", "unet"):
        res = nndsl.check(f"examples/{ex}.nn")
        assert res.ok
        assert verify(res.ir) == []
        text = res.ir.to_json()
        back = IR.from_json(text)
        assert back.to_json() == text
        assert list(back.g.nodes) == list(res.ir.g.nodes)
        assert verify(back) == []


def test_validation_proves_the_creation_order_topological():
    """The graph has no cycle because every edge runs forward in creation order (what passes rely on);
    an edge against that order is caught."""
    from nndsl.diagnostics import Sink
    from nndsl.passes.validate import _creation_order_is_topological, validate

    res = nndsl.check("examples/resnet18.nn")
    assert _creation_order_is_topological(res.ir)
    ids = list(res.ir.g.nodes)
    res.ir.g.add_edge(ids[-1], ids[1], key=7)
    assert not _creation_order_is_topological(res.ir)
    sink = Sink()
    validate(res.ir, sink)
    assert [d.code for d in sink.sorted()][:1] == ["E9999"]


def test_an_edge_against_creation_order_is_caught_where_it_is_made():
    """`IR.add_edge` keeps creation order topological by construction (an edge goes into the node made
    last, from one made before it); the pipeline's validation reports an IR where that did not hold."""
    from nndsl.diagnostics import Sink
    from nndsl.passes.validate import NodeChecks, validate

    ir = nndsl.check("examples/mlp.nn").ir
    assert ir.forward
    ids = ir.order
    ir.add_edge(ids[1], 0, ids[-1], 9)         # into the newest node, from an earlier one: forward
    assert ir.forward
    ir.add_edge(ids[-1], 0, ids[1], 9)         # into an older node
    assert not ir.forward
    sink = Sink()
    validate(ir, sink, checks=NodeChecks())
    assert [d.code for d in sink.sorted()][:1] == ["E9999"]


@pytest.mark.parametrize("spec", ["resnet18", "gpt2_small", "swin_t", "unet", "edge_gnn", "sparse_mlp",
                                  "frame_averaged_pointnet", "llama"])
def test_the_shared_walk_computes_what_the_passes_compute_alone(spec):
    """compiler.node_walk runs shapes, axes and validation's gathering in one walk over the nodes; each
    pass run on its own over a fresh elaboration of the same model gives the same IR and diagnostics."""
    from nndsl import compiler as C
    from nndsl.diagnostics import Sink
    from nndsl.elaborate import Elaborator
    from nndsl.limits import DEFAULT
    from nndsl.loader import Loader
    from nndsl.passes.axes import assign_axes
    from nndsl.passes.shapes import infer_shapes
    from nndsl.passes.validate import validate

    def elaborated():
        sink = Sink(DEFAULT)
        prog = Loader(sink, DEFAULT, None).load_path(f"examples/{spec}.nn")
        return Elaborator(prog, sink, DEFAULT).build(C._pick_model(prog, None, sink), {}), sink

    walked, s1 = elaborated()
    st = {"dims": {}, "limits": DEFAULT}
    C.node_walk(walked, st, s1)
    validate(walked, s1, DEFAULT, st["checks"])
    alone, s2 = elaborated()
    infer_shapes(alone, s2, {})
    alone.axes = assign_axes(alone)
    validate(alone, s2, DEFAULT)
    assert [d.model_dump() for d in s1.sorted()] == [d.model_dump() for d in s2.sorted()]
    assert walked.to_json() == alone.to_json()
    assert sum(len(n.params) for n in walked.nodes()) > 0
    assert all(p.facets["layout"].kind == "dense" for n in walked.nodes() for p in n.params)


def test_the_ir_builds_the_graph_networkx_would():
    """IR.add_node / add_edge write networkx's adjacency directly; the graph must equal the one networkx's
    own add_node / add_edge build from the same nodes and edges (adjacency, keys, attributes, order), and
    networkx's views and algorithms must read it as theirs."""
    import networkx as nx

    for spec in ("examples/resnet18.nn", "examples/gpt2_small.nn"):
        ir = nndsl.check(spec).ir
        ref = nx.MultiDiGraph()
        for nid, data in ir.g.nodes(data=True):
            ref.add_node(nid, **data)
        for u, v, k, data in ir.g.edges(keys=True, data=True):
            ref.add_edge(u, v, key=k, **data)
        assert nx.utils.graphs_equal(ir.g, ref)
        assert list(ir.g.nodes) == list(ref.nodes) == ir.order
        for nid in ir.g:
            assert ir.g._succ[nid] == ref._succ[nid] and ir.g._pred[nid] == ref._pred[nid]
            for u in ir.g._pred[nid]:
                assert ir.g._pred[nid][u] is ir.g._succ[u][nid]      # one key dict for both directions
        assert list(nx.topological_sort(ir.g))[0] == ir.order[0] and nx.is_directed_acyclic_graph(ir.g)
        assert ir.g.number_of_edges() == ref.number_of_edges()


def test_symbolic_shapes_and_divisibility_facts():
    src = """
    model M(heads: int = 4) {
      input x: [B, T, D]
      ensure D % heads == 0
      h = rearrange(x, "b t (h d) -> b h t d", h=heads)
      y = rearrange(h, "b h t d -> b t (h d)")
      output y + x
    }
    """
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    out = res.ir.node(res.ir.meta.outputs[0].node).outputs[0]
    assert str(out) == "[B, T, D]"
    no_fact = src.replace("ensure D % heads == 0", "")
    res = nndsl.check(source=no_fact)
    assert [d.code for d in res.errors] == ["E0205"]


_PATTERN_ERRORS = [  # call, message, the characters the caret is under, its label
    ('rearrange(x, "b t (h d -> b h t d", h=4)', "unbalanced `(` in a rearrange pattern", "(", "never closed"),
    ('rearrange(x, "b t h) d -> b h t d", h=4)', "unbalanced `)` in a rearrange pattern", ")", "no group to close"),
    ('rearrange(x, "b (t (h d)) -> b t h d", h=4)', "nested parentheses in a rearrange pattern", "(",
     "opened inside a group"),
    ('rearrange(x, "b t (h d) -> b h t d -> b", h=4)', "a rearrange pattern needs exactly one `->`", "->",
     "a second `->`"),
    ('rearrange(x, "b t (h d) -> b h t t", h=4)', "axis `t` appears twice on the right of the pattern", "t",
     "again here"),
    ('rearrange(x, "b t (h d) -> b h t e", h=4)', "axis `d` appears on only one side of the pattern", "d",
     "not on the other side"),
    ('rearrange(x, pattern="b t (h d) -> b h t d!", h=4)', "unexpected `!` in a rearrange pattern", "!",
     "not an axis name"),
    ('rearrange(x, "b t d → b d t")', "a rearrange pattern needs exactly one `->`", "→", "write `->`"),
    ('einsum("btd,btd,d->bt", x, x)', "the equation has 3 operands, 2 tensors were given", "btd,btd,d",
     "3 operands"),
    ('einsum("bt1,btd->bt", x, x)', "einsum subscripts must be letters, got `bt1`", "1", "not a letter"),
    ('einsum("btd,btd->bb", x, x)', "an output subscript appears twice", "b", "again here"),
    ('einsum("btd,btd->bz", x, x)', "output subscript `z` is on no input", "z", "on no input"),
]


@pytest.mark.parametrize("call,message,under,label", _PATTERN_ERRORS)
def test_an_error_inside_a_pattern_points_into_the_string(call, message, under, label):
    """A pattern or equation written as a literal: the caret stands under the characters at fault, the
    call is the secondary label; one that is not a plain literal is pointed at as a whole."""
    line = f"  y = {call}"
    src = f"model M {{\n  input x: [B, T, D]\n  ensure D % 4 == 0\n{line}\n  output y\n}}\n"
    res = nndsl.check(source=src)
    (d,) = res.errors
    assert (d.code, d.message, d.label) == ("E0207", message, label)
    assert d.span.line == d.span.end_line == 4
    assert line[d.span.col - 1:d.span.end_col - 1] == under
    assert d.secondary[0].span.col == line.index(call.split("(")[0]) + 1
    # the same pattern through a block parameter: the argument is the place
    quoted = call.split('"')[1]
    by_name = line.replace(f'"{quoted}"', "p")
    via = (f'block B(p: str) {{\n  input x: [B, T, D]\n  ensure D % 4 == 0\n{by_name}\n'
           f'  output y\n}}\nmodel M {{\n  input x: [B, T, D]\n  output B(x, "{quoted}")\n}}\n')
    (d,) = nndsl.check(source=via).errors
    assert d.message == message and d.label == ""     # the label speaks of characters it cannot show
    assert by_name[d.span.col - 1:d.span.end_col - 1] == "p"


def test_free_dims_conv_arithmetic():
    src = """
    model M {
      input x: [B, 3, H, W]
      y = conv2d(x, 8, kernel=3, stride=2, padding=1)
      output z = conv2d(y, 8, kernel=1)
    }
    """
    res = nndsl.check(source=src)
    assert res.ok
    assert str(res.ir.node("z").outputs[0]) == "[B, 8, (H - 1) // 2 + 1, (W - 1) // 2 + 1]"
    res = nndsl.check(source=src, H=32, W=17)
    assert str(res.ir.node("z").outputs[0]) == "[B, 8, 16, 9]"


def test_ellipsis_in_block_inputs_matches_any_leading_axes():
    src = """
    import mlp
    model M {
      input a: [B, T, 16]
      input b: [B, 16]
      output y = MLP(a, 32, 4), z = MLP(b, 32, 4)
    }
    """
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    outs = [str(res.ir.node(o.node).outputs[0]) for o in res.ir.meta.outputs]
    assert outs == ["[B, T, 4]", "[B, 4]"]
    m = nndsl.load(source=src, seed=0)
    y, z = m(torch.randn(2, 3, 16), torch.randn(2, 16))
    assert y.shape == (2, 3, 4) and z.shape == (2, 4)
    bad = nndsl.check(source="model M {\n  input x: [..., 4]\n  output x\n}\n")
    assert [d.code for d in bad.errors] == ["E0111"]


@pytest.mark.parametrize("expr,reference", [
    ("relu6(x * 4)", lambda x: torch.nn.functional.relu6(x * 4)),
    ("hardswish(x * 4)", lambda x: torch.nn.functional.hardswish(x * 4)),
    ("hardsigmoid(x * 4)", lambda x: torch.nn.functional.hardsigmoid(x * 4)),
    ("sin(x * 4)", lambda x: torch.sin(x * 4)),
    ("mish(x)", lambda x: torch.nn.functional.mish(x)),
    ("hardtanh(x, min=-0.5, max=2.0)", lambda x: torch.nn.functional.hardtanh(x, -0.5, 2.0)),
    ("clamp(x, max=0.1)", lambda x: torch.clamp(x, max=0.1)),
    ("clamp(x, min=-0.2, max=0.3)", lambda x: torch.clamp(x, -0.2, 0.3)),
    ("shifted_relu(x, tau=0.5)", lambda x: torch.relu(x - 0.5)),
    ("shifted_relu(x, tau=0.5, clip=0.7)", lambda x: torch.clamp(x - 0.5, 0, 0.7)),
    ("soft_threshold(x, tau=0.5)", lambda x: torch.nn.functional.softshrink(x, 0.5)),
    ("soft_threshold(x, tau=0.25, clip=0.5)", lambda x: torch.clamp(torch.nn.functional.softshrink(x, 0.25), -0.5, 0.5)),
    ('activation(x, fn="hardswish")', lambda x: torch.nn.functional.hardswish(x)),
])
def test_activation_values_match_torch(expr, reference):
    m = nndsl.load(source=f"model T {{\n  input x: [3, 7]\n  output {expr}\n}}\n")
    x = torch.randn(3, 7)
    assert torch.equal(m(x), reference(x))


def test_drop_path_is_stochastic_depth():
    m = nndsl.load(source="model T {\n  input x: [B, 3, 4]\n  output drop_path(x, p=0.25)\n}\n", seed=0)
    x = torch.ones(4000, 3, 4)
    m.eval()
    assert torch.equal(m(x), x)  # the identity in eval mode
    m.train()
    torch.manual_seed(0)
    y = m(x)
    per_sample = y.flatten(1)
    assert all(len(set(row.tolist())) == 1 for row in per_sample[:50])  # whole samples are kept or dropped
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert abs(kept - 0.75) < 0.03 and torch.allclose(per_sample[per_sample[:, 0] > 0], torch.tensor(1 / 0.75))
    src = nndsl.compile_source(source="model T {\n  input x: [B, 3]\n  output drop_path(x, p=0.25)\n}\n")
    assert "nndsl" not in src.split("\n", 1)[1]  # inline PyTorch: the emitted module needs no nndsl


def test_new_activation_attributes_are_checked():
    for expr, msg in (("clamp(x)", "clamp needs `min`, `max` or both"),
                      ("hardtanh(x, min=1.0, max=0.0)", "must be below `max`"),
                      ("drop_path(x, p=1.0)", "drop_path probability must be in [0, 1), got 1.0")):
        res = nndsl.check(source=f"model T {{\n  input x: [3, 7]\n  output {expr}\n}}\n")
        assert not res.ok and msg in res.errors[0].message, (expr, [d.message for d in res.diagnostics])
        assert res.errors[0].span.line == 3


def test_lowering_uses_the_facts_the_checker_used():
    """`ensure E % 4 == 0` lets `(h d)` split a symbolic axis; compile and load must agree with check."""
    src = ('model M {\n  input x: [N, L, E]\n  ensure E % 4 == 0\n'
           '  y = rearrange(x, "b t (h d) -> b h t d", h=4)\n  output y\n}\n')
    assert nndsl.check(source=src).ok
    assert "reshape(x.shape[0], x.shape[1], 4, x.shape[2] // 4)" in nndsl.compile_source(source=src)
    m = nndsl.load(source=src)
    assert m(torch.randn(2, 3, 8)).shape == (2, 4, 3, 2)


def test_layernorm_over_a_channels_first_axis():
    """ConvNeXt's LayerNorm2d: normalise axis 1 of [B, C, H, W] with nn.LayerNorm's parameters."""
    src = "model M {\n  input x: [B, 6, 5, 4]\n  output ln = layernorm(x, eps=1e-6, axis=1)\n}\n"
    m = nndsl.load(source=src, seed=0)
    with torch.no_grad():
        m.ln.weight.uniform_()
        m.ln.bias.uniform_()
    x = torch.randn(2, 6, 5, 4)
    want = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), m.ln.weight, m.ln.bias, 1e-6).permute(0, 3, 1, 2)
    assert torch.allclose(m(x), want, atol=1e-6)
    assert sorted(m.state_dict()) == ["ln.bias", "ln.weight"] and m.ln.weight.shape == (6,)
    last = nndsl.compile_source(source=src.replace("axis=1", "axis=3"))
    assert "movedim" not in last  # the last axis is plain nn.LayerNorm
    bad = nndsl.check(source=src.replace("axis=1", "axis=1, dims=2"))
    assert bad.errors[0].message == "layernorm: give `axis` or `dims`, not both"


def test_a_block_parameter_that_names_an_axis_is_that_axis_in_axes():
    """ConvNeXt's LayerNorm2d written out: `input x: [B, C, H, W]` with `C` a parameter, so `axes=[C]`
    is the channel axis (it used to be axis number C, out of range)."""
    src = ("act root(x) = sqrt(x)\n"
           "block LayerNorm2d(C: int) {\n  input x: [B, C, H, W]\n  weight = param([C], fill=1.0)\n"
           "  bias = param([C], fill=0.0)\n  m = mean(x, axes=[C], keepdim=true)\n"
           "  v = mean((x - m) * (x - m), axes=[C], keepdim=true)\n  y = (x - m) / root(v + 1e-6)\n"
           "  output y * reshape(weight, [1, C, 1, 1]) + reshape(bias, [1, C, 1, 1])\n}\n"
           "model M(C: int = 5) {\n  input x: [B, C, 3, 4]\n  output norm = LayerNorm2d(x, C)\n}\n")
    m = nndsl.load(source=src, seed=0)
    assert sorted(m.state_dict()) == ["norm.bias", "norm.weight"]
    with torch.no_grad():
        m.norm.weight.uniform_()
        m.norm.bias.uniform_()
    x = torch.randn(2, 5, 3, 4)
    want = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (5,), m.norm.weight, m.norm.bias, 1e-6)
    assert torch.allclose(m(x), want.permute(0, 3, 1, 2), atol=1e-5)
    # a parameter that no input declares as an axis is still a number: an axis index
    idx = nndsl.check(source="model M(k: int = 1) {\n  input x: [B, 6, 5]\n  output mean(x, axes=[k])\n}\n")
    assert idx.ok and str(idx.ir.node(idx.ir.meta.outputs[0].node).outputs[0]) == "[B, 5]"


def test_elementwise_math_takes_numbers_and_tensors():
    """`exp`, `log`, `sqrt`, `cos`, `abs` compute on a number when the spec is checked and are elementwise
    ops on a tensor (RoPE's inverse frequencies: `exp(arange(half) * (-2.0 * log(base) / head_dim))`)."""
    src = ("model M(base: float = 10000.0) {\n  input x: [B, 6]\n  v = mean(x * x, axes=[1], keepdim=true)\n"
           "  inv = buffer(exp(arange(3) * (-2.0 * log(base) / 6)), persistent=false)\n"
           "  output x / sqrt(v + 1e-6) * cos(inv) + abs(x) * reshape(inv, [1, 3]) |> sum(axes=[1])\n}\n")
    src = src.replace(" + abs(x) * reshape(inv, [1, 3]) |> sum(axes=[1])", " + abs(x)")
    x = torch.randn(2, 6)
    inv = 10000.0 ** (-torch.arange(0, 6, 2) / 6)
    want = x / torch.sqrt((x * x).mean(1, keepdim=True) + 1e-6) * torch.cos(inv.repeat(2)) + x.abs()
    src2 = src.replace("cos(inv)", "cos(concat(inv, inv, axis=0))")
    m = nndsl.load(source=src2, seed=0)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-6)
    assert list(m.state_dict()) == []                       # persistent=false: no key
    res = nndsl.check(source=src2)
    assert [n.op for n in res.ir.nodes() if n.op in ("exp", "sqrt", "cos", "abs")] == ["exp", "sqrt", "cos", "abs"]
    assert "log" not in [n.op for n in res.ir.nodes()]      # log(base) is a number
    for expr, code, message in (("log(0)", "E0111", "`log` of 0 has no real value"),
                                ("sqrt(-4)", "E0111", "`sqrt` of -4 has no real value"),
                                ("exp(1e6)", "E0112", "`exp` of 1000000.0 is too large for a float"),
                                ('exp("a")', "E0106", "`exp` takes a number or a tensor, got a string"),
                                ("abs(1, 2)", "E0106", "`abs` takes one argument, a number or a tensor")):
        (d,) = nndsl.check(source=f"model M(k: float = {expr}) {{\n  input x: [B, 6]\n  output x\n}}\n").errors
        assert (d.code, d.message) == (code, message)
    (d,) = nndsl.check(source="model M {\n  input x: [B, 6]\n  v = sum(x)\n  output x\n  ensure sqrt(v) > 0\n}\n"
                       ).errors
    assert d.code == "E0115"
    (d,) = nndsl.check(source=src.replace("sqrt(v + 1e-6)", "float(v)")).errors
    assert d.message == "`float` takes numbers known when the spec is checked, not tensors"


def test_power_of_numbers_dims_and_tensors():
    """`**` as in Python: right-associative, tighter than a unary minus on its left (`-x ** 2`), a unary
    minus allowed on its right (`d ** -0.5`); ints stay ints, a symbolic dim takes a small constant
    exponent, a tensor either side is the elementwise op; results are bounded before they are computed."""
    src = ("model M(d: int = 64, base: float = 10000.0) {\n  input x: [B, S, 4]\n  scale = d ** -0.5\n"
           "  inv = buffer(base ** (arange(4) * -2.0 / 4), persistent=false)\n"
           "  y = x ** 2 * scale + 2 ** x - inv |> sum(axes=[2])\n  ensure S ** 2 >= 1\n"
           "  ensure 2 ** 3 ** 2 == 512 and 4 ** 0.5 == 2.0 and -2 ** 2 == -4\n  output y, -x ** 2, x ** x\n}\n")
    m = nndsl.load(source=src)
    x = torch.rand(2, 3, 4)
    y, neg, xx = m(x)
    inv = 10000.0 ** (torch.arange(4) * -2.0 / 4)
    torch.testing.assert_close(y, (x ** 2 * 64 ** -0.5 + 2 ** x - inv).sum(2))
    torch.testing.assert_close(neg, -x ** 2)
    torch.testing.assert_close(xx, x ** x)
    for expr, code, message in (("2 ** 1000000000", "E0112", "integer too large"),
                                ("0 ** -1", "E0111", "division by zero"),
                                ("(-8) ** 0.5", "E0111", "`(-8) ** 0.5` has no real value"),
                                ("10.0 ** 400", "E0112", "too large for a float")):
        (d,) = nndsl.check(source=f"model M(k: float = {expr}) {{\n  input x: [B, 6]\n  output x\n}}\n").errors
        assert (d.code, d.message) == (code, message), expr
    (d,) = nndsl.check(source=src.replace("S ** 2 >= 1", "S ** 9 >= 1")).errors
    assert d.code == "E0106" and "constant integer exponent from 0 to 8" in d.message
    wide = "model M {\n  input x: [A, B, C, D, E, F]\n  ensure (A + B + C + D + E + F) ** 8 >= 1\n  output x\n}\n"
    (d,) = nndsl.check(source=wide).errors         # bounded after each product, never expanded in full
    assert d.code == "E0112" and d.message.endswith("more than the limit of 64")
    ints = "model M {\n  input t: [B, 4] int64\n  output t ** -1\n}\n"
    (d,) = nndsl.check(source=ints).errors
    assert d.code == "E0208" and d.help == "write the exponent as a float: `** -1.0`"
    assert nndsl.check(source=ints.replace("** -1", "** -1.0")).ok
    masks = "model M {\n  input x: [B, 4]\n  m = x > 0\n  output m ** m, m ** 2\n}\n"
    (d,) = nndsl.check(source=masks).errors          # PyTorch has no pow of two bools (found by the fuzzer)
    assert (d.code, d.message) == ("E0208", "`**` of two bool tensors is not defined")
    res = nndsl.check(source=masks.replace("m ** m, ", ""))
    assert res.ok and res.ir.node(res.ir.meta.outputs[0].node).outputs[0].dtype == "int64"


def test_tensors_of_two_dtypes_promote_as_in_pytorch():
    """int64 positions times float32 frequencies is float32 (RoPE's angle table); a mask times a float
    tensor is float; `-` with a bool tensor is refused, as PyTorch refuses it."""
    src = ("model M {\n  input x: [B, T, 4]\n  t = positions(x, axis=1)\n"
           "  f = reshape(t, [-1, 1]) * sum(x, axes=[0, 1], keepdim=true)\n  m = x > 0\n  output f, m * x, t / t\n}\n")
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    assert [res.ir.node(o.node).outputs[o.port].dtype for o in res.ir.meta.outputs] == ["float32"] * 3
    x = torch.randn(2, 3, 4)
    f, mx, _ = nndsl.load(source=src)(x)
    torch.testing.assert_close(f[0], torch.arange(3.0)[:, None] * x.sum((0, 1))[None, :])
    torch.testing.assert_close(mx, (x > 0) * x)
    (d,) = nndsl.check(source=src.replace("m * x", "x - m")).errors
    assert (d.code, d.message) == ("E0208", "`-` with a bool tensor is not defined")
    from nndsl.types import promote
    assert [promote(a, b) for a, b in (("int64", "float32"), ("float16", "bfloat16"), ("int32", "int64"),
                                       ("uint8", "int8"), ("bool", "int32"), ("float64", "float16"))] == \
        ["float32", "float32", "int64", "int16", "int32", "float64"]
    for a, b in (("int64", "float32"), ("float16", "bfloat16"), ("uint8", "int8"), ("bool", "int32")):
        assert str(torch.promote_types(getattr(torch, a), getattr(torch, b))) == f"torch.{promote(a, b)}"


def _node_of(src, op):
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    n = next(n for n in res.ir.nodes() if n.op == op)
    return n, res.ir.in_types(n.id)


@pytest.mark.parametrize("spec,op,flops,fan", [
    # conv: 2 * C_in/groups * k_h * k_w * C_out * H_out * W_out * B; fan_in = C_in/groups * k_h * k_w
    ("conv2d(x, 8, kernel=3, stride=2, padding=1, groups=2)", "conv2d",
     2 * (4 // 2) * 3 * 3 * 8 * 5 * 4 * 3, (4 // 2 * 9, 8 // 2 * 9)),
    ("conv2d(x, 6, kernel=[3, 1])", "conv2d", 2 * 4 * 3 * 1 * 6 * 7 * 8 * 3, (4 * 3, 6 * 3)),
    ("conv1d(flatten(x, start=2), 5, kernel=4)", "conv1d", 2 * 4 * 4 * 5 * (72 - 3) * 3, (16, 20)),
    # linear: 2 * in * out per row
    ("linear(x, 10)", "linear", 2 * 8 * 10 * (3 * 4 * 9), (8, 10)),
    # transposed: each input channel (of its group) feeds C_out/groups * k_h * k_w outputs; PyTorch's own
    # formula reads the transposed weight positionally and swaps the two
    ("conv_transpose2d(x, 6, kernel=2, stride=2)", "conv_transpose2d", 2 * (3 * 4 * 9 * 8) * 6 * 4, (4 * 4, 6 * 4)),
    # conv3d over [B, C, D, H, W] = [3, 4, 9, 8, 1]: out 2 x (9-2) x (8-2) x 1 per sample
    ("conv3d(reshape(x, [3, 4, 9, 8, 1]), 2, kernel=[3, 3, 1])", "conv3d", 2 * 4 * 9 * 2 * 7 * 6 * 1 * 3, (4 * 9, 2 * 9)),
    # embedding: a lookup, no multiply-adds; one row per index value, one column per output feature
    ("embedding(positions(x, axis=2), 11, 5)", "embedding", 0, (11, 5)),
    # a free parameter: its last axis is its fan-in, its first its fan-out
    ("x + param([1, 9, 8])", "param", 0, (8, 1)),
])
def test_flops_and_fan_against_independent_counts(spec, op, flops, fan):
    """FLOPs count a multiply-add as 2; fan is what one output unit sees and one input unit feeds."""
    n, ins = _node_of(f"model M {{\n  input x: [3, 4, 9, 8]\n  output {spec}\n}}\n", op)
    assert n.flops.value == flops
    assert n.recipe.fan == fan


def test_flops_of_attention_and_matmul():
    n, _ = _node_of("model M {\n  input q: [2, 3, 5, 4]\n  input v: [2, 3, 5, 6]\n  output attention(q, q, v)\n}\n",
                    "attention")
    assert n.flops.value == 2 * (2 * 3 * 5 * 4) * 5 + 2 * (2 * 3 * 5 * 6) * 5  # q k^T, then (softmax) v
    n, _ = _node_of("model M {\n  input a: [2, 3, 4]\n  input b: [4, 6]\n  output a @ b\n}\n", "matmul")
    assert n.flops.value == 2 * 2 * 3 * 6 * 4


def _with_free_batch(src: str) -> str:
    """Axis 0 of the inputs that share it becomes the free dim `N` (as a user's batch would be)."""
    decls = re.findall(r"input (\w+): \[(\d+)((?:, \d+)+)\]", src)
    sizes = {first for _n, first, _rest in decls}
    if len(sizes) != 1:
        decls = decls[:1]
    for name, first, rest in decls:
        src = src.replace(f"input {name}: [{first}{rest}]", f"input {name}: [N{rest}]")
    return src


@pytest.mark.parametrize("op", sorted(CASES))
def test_every_op_checks_compiles_and_runs_with_a_free_batch(op):
    src, tensors = spec_for(op)
    free = _with_free_batch(src)
    assert free != src or "[B," in src
    res = nndsl.check(source=free)
    assert res.ok, [d.message for d in res.diagnostics]
    m = nndsl.load(source=free, seed=0).eval()
    ref = nndsl.load(source=src, seed=0).eval()
    with torch.no_grad():
        got, want = m(*tensors.values()), ref(*tensors.values())
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):       # the same numbers as with the batch known
        assert g.shape == w.shape and (torch.equal(g, w) if not g.is_floating_point() else torch.allclose(g, w, equal_nan=True))


def test_facts_carry_through_the_whole_pipeline():
    src = """model M(heads: int = 4) {
  input x: [N, L, E]
  ensure E % heads == 0
  ensure E % 2 == 0
  a, b = chunk(x, 2, axis=2)
  h = rearrange(x, "n l (h d) -> n h l d", h=heads)
  back = rearrange(h, "n h l d -> n l (h d)")
  flat = reshape(back, [N, -1])
  output y = concat(a, b, axis=2) + back
  output z = flat
}
"""
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    m = nndsl.load(source=src)
    x = torch.randn(3, 5, 8)
    y, z = m(x)
    assert torch.equal(y, 2 * x) and torch.equal(z, x.reshape(3, -1))


def test_objects_built_without_validation_hold_every_field_in_order():
    """The hot paths build pydantic records from their fields directly (fastmodel.make / from_fields):
    every IR node, edge, parameter spec, recipe and tensor type of an example holds exactly its model's
    fields, in declared order, as a validated one would."""
    from pydantic import BaseModel

    res = nndsl.check("examples/gpt2_small.nn")
    seen = set()

    def walk(x):
        if isinstance(x, BaseModel):
            assert list(x.__dict__) == list(type(x).model_fields), type(x).__name__
            assert x.model_fields_set == set(type(x).model_fields), type(x).__name__   # shared, never narrower
            seen.add(type(x).__name__)
            for v in x.__dict__.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)

    for node in res.ir.nodes():
        walk(node)
    for _u, _v, a in res.ir.g.edges(data="attr"):
        walk(a)
    assert {"Node", "EdgeAttr", "ParamSpec", "Recipe", "TensorType"} <= seen


def test_a_symbolic_dim_with_a_float_is_an_error_not_a_crash():
    """Found by the fuzzer: `ensure S % 21e-3 == 0` on a free dim raised inside the evaluator (E9999)."""
    for expr, message in (("ensure S % 21e-3 == 0", "cannot mix a symbolic dim with a float"),
                          ("z = S * 0.5", "cannot mix a symbolic dim with a float"),
                          ("ensure 0.5 < S", "cannot compare a float with a symbolic dim")):
        src = f"model M {{\n  input x: [B, S]\n  {expr}\n  output x\n}}\n"
        (d,) = nndsl.check(source=src).errors
        assert (d.code, d.message, d.span.line) == ("E0106", message, 3)
