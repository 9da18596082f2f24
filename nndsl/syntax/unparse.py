"""AST -> `.nn` source. `parse(unparse(ast))` equals `ast` up to spans (tested)."""
from __future__ import annotations

from . import ast as A

_PREC = {"or": 1, "and": 2, "not": 3, "compare": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "@": 6,
         "neg": 7, "**": 8}


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def expr(e, prec: int = 0) -> str:
    k = e.kind
    if k == "num":
        return e.text
    if k == "str":
        return _q(e.value)
    if k == "bool":
        return "true" if e.value else "false"
    if k == "name":
        return e.id
    if k == "ellipsis":
        return "..."
    if k == "list":
        return "[" + ", ".join(expr(x) for x in e.items) + "]"
    if k == "call":
        args = ", ".join((f"{a.name}=" if a.name else "") + expr(a.value) for a in e.args)
        return f"{expr(e.func, 9)}({args})"
    if k == "attr":
        return f"{expr(e.value, 9)}.{e.name}"
    if k == "index":
        return f"{expr(e.value, 9)}[{expr(e.index)}]"
    if k == "binop" and e.op == "**":          # right-associative; its right side may be a unary minus
        s = f"{expr(e.left, 9)} ** {expr(e.right, 7)}"
        return f"({s})" if 8 < prec else s
    if k == "binop":
        p = _PREC[e.op]
        left = expr(e.left, p)
        if e.left.kind == "binop" and e.left.op != e.op and _PREC[e.left.op] == p and {e.op, e.left.op} & {"//", "%"}:
            left = f"({left})"            # `(H // p) * W`: floor division mixed with products reads grouped
        s = f"{left} {e.op} {expr(e.right, p + 1)}"
        return f"({s})" if p < prec else s
    if k == "compare":
        p = _PREC["compare"]
        s = f"{expr(e.left, p + 1)} {e.op} {expr(e.right, p + 1)}"
        return f"({s})" if p < prec else s
    if k == "boolop":
        p = _PREC[e.op]
        s = f" {e.op} ".join(expr(v, p + 1) for v in e.values)
        return f"({s})" if p < prec else s
    if k == "not":
        s = f"not {expr(e.value, _PREC['not'])}"
        return f"({s})" if _PREC["not"] < prec else s
    if k == "neg":
        s = f"-{expr(e.value, _PREC['neg'])}"
        return f"({s})" if _PREC["neg"] < prec else s
    if k == "cond":
        s = f"if {expr(e.cond)} then {expr(e.then)} else {expr(e.orelse)}"
        return f"({s})" if prec > 0 else s
    if k == "pipe":
        s = " |> ".join([head(e)] + [stage(st) for st in e.stages])
        return f"({s})" if prec > 0 or e.head.kind in _STAGES else s
    raise ValueError(f"cannot unparse {k}")


_STAGES = ("repeat", "if_stage")


def head(e) -> str:
    """The head of a chain: a value, or (in parentheses) a `repeat` or `if` stage."""
    return stage(e.head) if e.head.kind in _STAGES else expr(e.head, 1)


def opening(st) -> str:
    """What a `repeat` or `if` stage says before its braces."""
    if st.kind == "repeat":
        var = f" as {st.var}" if st.var else ""
        if st.var and st.names is not None:
            var += f" {_q(st.names)}"
        return f"repeat {expr(st.count, 1)}{var}"
    return f"if {expr(st.cond, 1)}"


def branches(st) -> tuple:
    """The stages in the braces of a `repeat` or `if` stage, and of its `else` (None if it has none)."""
    return (st.stages, None) if st.kind == "repeat" else (st.then, st.orelse)


def stage(st) -> str:
    if st.kind in _STAGES:
        body, orelse = branches(st)
        out = f"{opening(st)} {{ {' |> '.join(stage(s) for s in body)} }}"
        if orelse is not None:
            out += f" else {{ {' |> '.join(stage(s) for s in orelse)} }}"
        return out
    return expr(st, 9)


def _entries(entries) -> str:
    return ", ".join(f"{'.'.join(e.key)}: {expr(e.rule)}" for e in entries)


def _init(clause) -> str:
    return f" init {{ {_entries(clause.entries)} }}" if clause is not None else ""


def _sparsity(clause) -> str:
    return f" sparsity {expr(clause.rule)}" if clause is not None else ""


def stmt(s, ind: str) -> list[str]:
    k = s.kind
    if k == "input":
        dt = f" {s.dtype}" if s.dtype else ""
        acted = f" acted by {', '.join(s.acted_by)}" if s.acted_by else ""
        return [f"{ind}input {s.name}: [{', '.join(expr(d) for d in s.shape)}]{dt}{acted}"]
    if k == "bind":
        return [f"{ind}{', '.join(s.targets)} = {expr(s.value)}{_init(s.init)}{_sparsity(s.sparsity)}"]
    if k == "output":
        return [f"{ind}output " + ", ".join((f"{i.name} = " if i.name else "") + expr(i.value) + _init(i.init) + _sparsity(i.sparsity)
                                            for i in s.items)]
    if k == "init":
        return [f"{ind}init {{ {_entries(s.entries)} }}"]
    if k == "sparsity":
        return [f"{ind}sparsity {{ {_entries(s.entries)} }}"]
    if k == "parametrization":
        return [f"{ind}parametrization {expr(s.rule)}"]
    if k == "ensure":
        claim = f" {s.claim} under {s.group}" if s.claim else ""
        return [f"{ind}ensure {expr(s.expr)}{claim}"]
    if k == "if":
        out = [f"{ind}if {expr(s.cond)} {{"]
        for x in s.then:
            out += stmt(x, ind + "  ")
        if s.orelse is not None:
            out.append(f"{ind}}} else {{")
            for x in s.orelse:
                out += stmt(x, ind + "  ")
        out.append(f"{ind}}}")
        return out
    raise ValueError(f"cannot unparse {k}")


def unparse(m: A.Module) -> str:
    out: list[str] = []
    for it in m.items:
        if it.kind == "import":
            tgt = _q(it.path) if it.path is not None else it.module
            out.append(f"import {tgt}" + (f" as {it.alias}" if it.alias else ""))
            continue
        if it.kind == "group":
            out.append(f"group {it.name} = {expr(it.value)}")
            continue
        if it.kind == "act":
            ps = "".join(f", {p.name}: {p.type}" + (f" = {expr(p.default)}" if p.default else "") for p in it.params)
            out.append(f"act {it.name}({it.arg}{ps}) = {expr(it.body)}")
            continue
        params = ""
        if it.params:
            params = "(" + ", ".join(f"{p.name}: {p.type}" + (f" = {expr(p.default)}" if p.default else "")
                                     for p in it.params) + ")"
        out.append(f"{'model' if it.is_model else 'block'} {it.name}{params} {{")
        for s in it.body:
            out += stmt(s, "  ")
        out.append("}")
    return "\n".join(out) + "\n"
