"""Scaled dot-product attention (multi-head when given [B, heads, T, d] tensors)."""
from __future__ import annotations

from ..recipe import KEEP, Ax, Out, Ref, Signature
from ..types import TensorType
from .. import signal as S
from .registry import pyval, Attr, Lowered, OpDef, OpError, need_float, prod, register


def _infer(ins, a, facts):
    q, k, v = ins
    for i, t in enumerate(ins):
        need_float(t, "attention", arg=i)
        if t.rank < 2:
            raise OpError("E0202", "attention expects [..., T, d] tensors", arg=i)
    if q.shape[-1] != k.shape[-1]:
        raise OpError("E0201", f"attention: query and key feature sizes differ ({q.shape[-1]} vs {k.shape[-1]})",
                      arg_labels={0: str(q), 1: str(k)})
    if k.shape[-2] != v.shape[-2]:
        raise OpError("E0201", f"attention: keys and values have different lengths ({k.shape[-2]} vs {v.shape[-2]})",
                      arg_labels={1: str(k), 2: str(v)})
    if q.shape[:-2] != k.shape[:-2] or q.shape[:-2] != v.shape[:-2]:
        raise OpError("E0201", "attention: batch and head axes of q, k, v differ",
                      arg_labels={0: str(q), 1: str(k), 2: str(v)})
    r = q.rank
    # batch and head axes are one axis in q, k and v; queries come from q, features from v; the query
    # features meet the key features (q k^T) and the keys meet the values (softmax(...) v)
    sig = Signature((tuple(Ax(KEEP, (Ref(0, i), Ref(1, i), Ref(2, i))) for i in range(r - 2))
                     + (Ax(KEEP, (Ref(0, r - 2),)), Ax(KEEP, (Ref(2, r - 1),))),),
                    contracted=((Ref(0, r - 1), Ref(1, r - 1)), (Ref(1, r - 2), Ref(2, r - 2))))
    return Out([TensorType.make(q.shape[:-1] + (v.shape[-1],), q.dtype, q.axis_names())], sig)


def _lower(c):
    kw = []
    if c.a["causal"]:
        kw.append("is_causal=True")
    if c.a["dropout"]:
        kw.append(f"dropout_p={pyval(c.a['dropout'])} if self.training else 0.0")
    if c.a["scale"] is not None:
        kw.append(f"scale={pyval(c.a['scale'])}")
    extra = (", " + ", ".join(kw)) if kw else ""
    return Lowered(None, f"F.scaled_dot_product_attention({', '.join(c.args)}{extra})")


def _flops(ins, outs, a):
    q, k, v = ins
    return 2 * prod(q.shape) * k.shape[-2] + 2 * prod(outs[0].shape) * k.shape[-2]


register(OpDef(
    name="attention", inputs=("q", "k", "v"),
    attrs=(Attr("causal", "bool", False), Attr("dropout", "float", 0.0, lo=0, hi=1), Attr("scale", "float", None)),
    infer=_infer, flops=_flops, lower=_lower, traits=frozenset({"parameter_free", "attention", "random"}),
    aliases=("sdpa", "scaled_dot_product_attention"), glyph="attn", signal=S.attention,
    doc="softmax(q k^T / sqrt(d)) v over [..., T, d] tensors, with an optional causal mask.",
))
