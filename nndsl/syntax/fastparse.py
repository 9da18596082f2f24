"""A recursive-descent parser for well-formed `.nn` text: the fast path of `parse_recovering`.

The LALR parser (parser.py, driven by the table Lark makes from grammar/nndsl.lark) stays the definition
of the language and the only source of syntax errors. This parser follows the same grammar rule for rule
and builds the same AST, spans included, about twice as fast: no token objects, no parse stack, the
post-lexer's newline and soft-keyword decisions made on parallel lists. It is sound but not complete by
design: wherever it is not certain that the LALR parser would build exactly what it builds (any syntax
error, a malformed literal, brackets nested past the limit, recursion too deep), it gives up and returns
None, and the LALR parser parses the text again and reports. tests/test_fastparse.py holds the two to the
same AST on every shipped spec, the fuzz corpus and generated and mutated programs.
"""
from __future__ import annotations

import functools
import re

from ..diagnostics import Span
from . import ast as A
from .parser import (
    _CLAUSE_KEYWORDS,
    _CONTINUE_AFTER,
    _CONTINUE_BEFORE,
    _ENDS_EXPR,
    _PAIRS,
    _SECONDS,
    _SPECIAL,
    _STATEMENT_START,
    MAX_NESTING,
    SOFT_KEYWORDS,
    NumberError,
    _EscapeError,
    _unquote,
    parse_number,
)


class _GiveUp(Exception):
    """Not certain: let the LALR parser decide."""


# Terminals that start with a character no other terminal starts with may be tried first (names, then the
# commonest punctuation and the newline); the rest keep Lark's order, which decides `**` before `*`, `==`
# before `=`, `.5` and `...` before `.`, `\r\n` before blanks.
_FIRST = ("NAME", "LPAR", "RPAR", "COMMA", "_NL")


@functools.lru_cache(maxsize=1)
def _scanner():
    """The LALR lexer's expression with the terminals reordered as above and a last alternative, BAD, that
    takes any character no terminal matches (so that `finditer` never skips one), for `finditer`; the
    terminal name of each group number; the keyword table."""
    from . import tables

    data = tables.load()
    terminals = dict(data["terminals"])
    assert terminals.get("WS") == "[ \t\x0c\r]+" and set(data["ignore"]) == {"WS", "COMMENT"}
    order = [*_FIRST, *(n for n in terminals if n not in _FIRST)]
    blanks = r"(?:[ \t\f][ \t\f\r]*)?"
    alternatives = [f"(?P<{name}>{terminals[name]})" for name in order] + [r"(?P<BAD>[\s\S])"]
    master = re.compile(blanks + "(?:" + "|".join(alternatives) + ")", data["flags"])
    names = [""] * (master.groups + 1)
    for name, k in master.groupindex.items():
        names[k] = name
    return master.finditer, tuple(names), data["keywords"]


def _keep(held_type: str, prev_type, nxt) -> bool:
    """Whether a held keyword stays a keyword before a token of type `nxt` (parser._keyword_or_name)."""
    if held_type == "INIT":
        return nxt == "LBRACE"
    if held_type in _PAIRS:
        return nxt == _PAIRS[held_type]
    if held_type in _CLAUSE_KEYWORDS:
        if prev_type in _STATEMENT_START:
            return nxt == "LBRACE"
        return nxt == "NAME" or nxt in SOFT_KEYWORDS or nxt in _CLAUSE_KEYWORDS
    return nxt not in ("EQUAL", "COMMA")


def tokens(text: str, max_nesting: int = MAX_NESTING):
    """The tokens the LALR parser would receive (after its post-lexer), as parallel lists: types, values,
    lines, columns. Raises _GiveUp where the lexer would fail or brackets nest past `max_nesting`."""
    finditer, names, keywords = _scanner()
    T: list[str] = []
    V: list[str] = []
    L: list[int] = []
    C: list[int] = []
    tp, vp, lp, cp = T.append, V.append, L.append, C.append
    special, continue_after, continue_before = _SPECIAL, _CONTINUE_AFTER, _CONTINUE_BEFORE
    line, line_start = 1, 0
    depth = 0
    pending = None              # (line, col) of a newline that ends the statement unless the next token goes on
    held = -1                   # index of a keyword decided by the token after it
    held_prev = None
    prev_type = None
    prev_value = None           # the last token's text (None before the first)
    for m in finditer(text):
        k = m.lastindex
        typ = names[k]
        v = m.group(k)
        if typ == "NAME":
            typ = keywords.get(v, "NAME")
        elif typ in _RARE:
            if typ == "BAD":                # no terminal matches here (the last alternative takes any character)
                raise _GiveUp
            if typ == "_NL":
                if depth == 0 and prev_value is not None and prev_value not in continue_after and pending is None:
                    pending = (line, m.start(k) - line_start + 1, v)
                if "\n" in v:
                    line += v.count("\n")
                    line_start = m.start(k) + v.rindex("\n") + 1
            continue                        # blanks, comments and new lines are not tokens of their own
        if pending is not None:
            if v not in continue_before:
                if held >= 0:
                    if not _keep(T[held], held_prev, "_NL"):
                        T[held] = "NAME"
                    held = -1
                prev_type = "_NL"
                tp("_NL")
                vp(pending[2])
                lp(pending[0])
                cp(pending[1])
            pending = None
        if v in _BRACKETS:
            if _BRACKETS[v]:
                depth += 1
                if depth > max_nesting:
                    raise _GiveUp
            elif depth:
                depth -= 1
        prev_value = v
        if held >= 0:
            if not _keep(T[held], held_prev, typ):
                T[held] = "NAME"
            prev_type = T[held]
            held = -1
        tp(typ)
        vp(v)
        lp(line)
        cp(m.start(k) - line_start + 1)
        if typ not in special:
            prev_type = typ
            continue
        if typ == "INIT" or typ in _CLAUSE_KEYWORDS and (prev_type in _STATEMENT_START or prev_type in _ENDS_EXPR) \
                or typ in _PAIRS and prev_type in _ENDS_EXPR:
            held, held_prev = len(T) - 1, prev_type
            continue
        if typ in _PAIRS or typ in _SECONDS and prev_type not in _SECONDS[typ]:
            typ = T[-1] = "NAME"
        elif typ in SOFT_KEYWORDS:
            if prev_type in _STATEMENT_START:
                held, held_prev = len(T) - 1, prev_type
                continue
            typ = T[-1] = "NAME"
        elif typ in _CLAUSE_KEYWORDS:
            typ = T[-1] = "NAME"
        prev_type = typ
    if held >= 0 and not _keep(T[held], held_prev, None):
        T[held] = "NAME"
    tp("$END")
    vp("")
    lp(line)
    cp(len(text) - line_start + 1)
    return T, V, L, C


_BRACKETS = {"(": True, "[": True, ")": False, "]": False}
_RARE = frozenset(("WS", "COMMENT", "_NL", "BAD"))


def parse_fast(text: str, file: str = "<string>", max_nesting: int = MAX_NESTING,
               strict: bool = False) -> A.Module | None:
    """The AST of `text` as the LALR parser builds it, or None where this parser is not certain (then
    parse with `parse_recovering`, which reports). Any other exception in here is a bug of this parser:
    with `strict` (the tests and the fuzzer) it propagates; otherwise the LALR parser, the reference,
    parses the text instead."""
    try:
        return _Parser(file, *tokens(text, max_nesting)).module()
    except (_GiveUp, RecursionError, IndexError):
        return None
    except Exception:
        if strict:
            raise
        return None


# binary operators: precedence, and the least precedence of their right operand (left-associative: one
# more; `**` takes a unary operand, which may be `-x` or another `**`)
_CLAUSES = frozenset(("INIT", "SPARSITY", "STRUCTURE"))
_PREC = {"OR": 1, "AND": 2, "COMP_OP": 4, "PLUS": 5, "MINUS": 5, "MUL_OP": 6, "POW": 8}
_RIGHT = {1: 2, 2: 3, 4: 5, 5: 6, 6: 7, 8: 7}


class _Parser:
    """One method per grammar rule; each takes the index of its first token and returns the node and the
    index after it. A node's span runs from its first child to its last, as the LALR callbacks make it."""

    def __init__(self, file, T, V, L, C):
        self.file, self.T, self.V, self.L, self.C = file, T, V, L, C

    # -- spans
    def tspan(self, k: int) -> Span:
        ln, c = self.L[k], self.C[k]
        return Span(self.file, ln, c, ln, c + len(self.V[k]))

    def from_tok(self, k: int, end: Span) -> Span:
        return Span(self.file, self.L[k], self.C[k], end.end_line, end.end_col)

    def to_tok(self, start: Span, k: int) -> Span:
        return Span(self.file, start.line, start.col, self.L[k], self.C[k] + len(self.V[k]))

    def join(self, a: Span, b: Span) -> Span:
        """From the start of span `a` to the end of span `b`."""
        return Span(self.file, a.line, a.col, b.end_line, b.end_col)

    def between(self, a: int, b: int) -> Span:
        return Span(self.file, self.L[a], self.C[a], self.L[b], self.C[b] + len(self.V[b]))

    def expect(self, i: int, typ: str) -> int:
        if self.T[i] != typ:
            raise _GiveUp
        return i + 1

    # -- top level
    def module(self) -> A.Module:
        items, _ = self.seq(0, "$END", self.item, "_NL", trailing=False)
        return A.Module(file=self.file, items=items)

    def item(self, i: int):
        t = self.T[i]
        if t == "BLOCK" or t == "MODEL":
            return self.block_def(i, t == "MODEL")
        if t == "IMPORT":
            return self.import_stmt(i)
        if t == "ACT":
            return self.act_def(i)
        if t == "GROUP":
            j = self.expect(i + 1, "NAME")
            j = self.expect(j, "EQUAL")
            value, j = self.expr(j)
            return A.GroupDef(span=self.from_tok(i, value.span), name=self.V[i + 1], name_span=self.tspan(i + 1),
                              value=value), j
        raise _GiveUp

    def import_stmt(self, i: int):
        T, V = self.T, self.V
        j = i + 1
        if T[j] == "STRING":
            try:
                path, module = _unquote(V[j]), None
            except _EscapeError:
                raise _GiveUp from None
            j += 1
        elif T[j] == "NAME":
            parts = [V[j]]
            j += 1
            while T[j] == "DOT":
                j = self.expect(j + 1, "NAME")
                parts.append(V[j - 1])
            path, module = None, ".".join(parts)
        else:
            raise _GiveUp
        alias = None
        if T[j] == "AS":
            j = self.expect(j + 1, "NAME")
            alias = V[j - 1]
        return A.Import(span=self.between(i, j - 1), path=path, module=module, alias=alias), j

    def block_def(self, i: int, is_model: bool):
        j = self.expect(i + 1, "NAME")
        params = []
        if self.T[j] == "LPAR":
            params, j = self.param_list(j)
        body, j, close = self.body(j)
        return A.BlockDef(span=self.between(i, close), is_model=is_model, name=self.V[i + 1],
                          name_span=self.tspan(i + 1), params=params, body=body), j

    def seq(self, j: int, close: str, item, sep: str = "COMMA", trailing: bool = True, empty: bool = True):
        """Items parsed by `item` and separated by `sep` (a trailing one allowed if `trailing`), up to the
        token `close` (none at all allowed if `empty`): the items and the index of `close`."""
        T = self.T
        out = []
        if T[j] == close and empty:
            return out, j
        while True:
            x, j = item(j)
            out.append(x)
            t = T[j]
            if t == sep:
                j += 1
                if trailing and T[j] == close:
                    return out, j
            elif t == close:
                return out, j
            else:
                raise _GiveUp

    def param_list(self, i: int):
        params, j = self.seq(i + 1, "RPAR", self.param)
        return params, j + 1

    def param(self, i: int):
        j = self.expect(i, "NAME")
        j = self.expect(j, "COLON")
        j = self.expect(j, "NAME")
        default = None
        if self.T[j] == "EQUAL":
            default, j = self.expr(j + 1)
            span = self.from_tok(i, default.span)
        else:
            span = self.between(i, j - 1)
        return A.Param(span=span, name=self.V[i], type=self.V[i + 2], type_span=self.tspan(i + 2),
                       default=default), j

    def act_def(self, i: int):
        T = self.T
        j = self.expect(i + 1, "NAME")
        j = self.expect(j, "LPAR")
        j = self.expect(j, "NAME")
        arg = self.V[j - 1]
        params = []
        while T[j] == "COMMA":
            j += 1
            if T[j] == "RPAR":
                break
            p, j = self.param(j)
            params.append(p)
        j = self.expect(j, "RPAR")
        j = self.expect(j, "EQUAL")
        body, j = self.expr(j)
        return A.ActDef(span=self.from_tok(i, body.span), name=self.V[i + 1], name_span=self.tspan(i + 1), arg=arg,
                        params=params, body=body), j

    def body(self, i: int):
        """`{ stmt (NL stmt)* }`: the statements, the index after `}` and the index of `}`."""
        stmts, j = self.seq(self.expect(i, "LBRACE"), "RBRACE", self.stmt, "_NL", trailing=False)
        return stmts, j + 1, j

    # -- statements
    def stmt(self, i: int):
        t = self.T[i]
        if t == "NAME":
            return self.bind_stmt(i)
        if t == "INPUT":
            return self.input_stmt(i)
        if t == "OUTPUT":
            return self.output_stmt(i)
        if t == "ENSURE":
            return self.ensure_stmt(i)
        if t == "IF":
            return self.if_stmt(i)
        if t == "INIT":
            clause, j = self.entries(i, A.InitClause)
            return A.InitStmt(span=clause.span, entries=clause.entries), j
        if t == "PARAMETRIZATION":
            rule, j = self.expr(i + 1)
            return A.Parametrization(span=self.from_tok(i, rule.span), rule=rule), j
        if t == "SPARSITY" or t == "STRUCTURE":
            clause, j = self.entries(i, A.SparsityStmt)
            return clause, j
        raise _GiveUp

    def bind_stmt(self, i: int):
        T, V = self.T, self.V
        j = i + 1
        names = [i]
        while T[j] == "COMMA":
            j = self.expect(j + 1, "NAME")
            names.append(j - 1)
        j = self.expect(j, "EQUAL")
        value, j = self.expr(j)
        if T[j] in _CLAUSES:
            init, sparsity, j, end = self.clauses(j, value.span)
        else:
            init = sparsity = None
            end = value.span
        if len(names) == 1:
            targets, spans = [V[i]], [self.tspan(i)]
        else:
            targets, spans = [V[k] for k in names], [self.tspan(k) for k in names]
        return A.Bind(span=self.from_tok(i, end), targets=targets, target_spans=spans, value=value, init=init,
                      sparsity=sparsity), j

    def clauses(self, j: int, end: Span):
        """`[init { ... }] [sparsity rule]` after a binding or an output; the span's new end."""
        T = self.T
        init = sparsity = None
        if T[j] == "INIT":
            init, j = self.entries(j, A.InitClause)
            end = init.span
        if T[j] == "SPARSITY" or T[j] == "STRUCTURE":
            rule, k = self.expr(j + 1)
            sparsity = A.SparsityClause(span=self.from_tok(j, rule.span), rule=rule)
            j, end = k, rule.span
        return init, sparsity, j, end

    def entries(self, i: int, cls):
        """`init { key: rule, ... }` or `sparsity { ... }`: entries separated by `,` or new lines."""
        T, V = self.T, self.V
        j = self.expect(i + 1, "LBRACE")
        entries = []
        while T[j] != "RBRACE":
            k0 = j
            parts = []
            while True:
                if T[j] == "NAME" or T[j] == "MUL_OP" and V[j] == "*":
                    parts.append(V[j])
                    j += 1
                else:
                    raise _GiveUp
                if len(parts) == 1 and T[j] == "DOT":
                    j += 1
                    continue
                break
            key_span = self.between(k0, j - 1)
            j = self.expect(j, "COLON")
            rule, j = self.expr(j)
            entries.append(A.InitEntry(span=self.join(key_span, rule.span), key=parts, key_span=key_span, rule=rule))
            if T[j] == "COMMA" or T[j] == "_NL":
                j += 1
            elif T[j] != "RBRACE":
                raise _GiveUp
        return cls(span=self.between(i, j), entries=entries), j + 1

    def input_stmt(self, i: int):
        T, V = self.T, self.V
        j = self.expect(i + 1, "NAME")
        j = self.expect(j, "COLON")
        shape, j, close = self.shape(j)
        last = close
        dtype = None
        if T[j] == "NAME":
            dtype, last = V[j], j
            j += 1
        acted, acted_span = [], None
        if T[j] == "ACTED":
            k = self.expect(j + 1, "BY")
            k = self.expect(k, "NAME")
            acted.append(V[k - 1])
            while T[k] == "COMMA":
                k = self.expect(k + 1, "NAME")
                acted.append(V[k - 1])
            acted_span = self.between(j, k - 1)
            j, last = k, k - 1
        return A.Input(span=self.between(i, last), name=V[i + 1], name_span=self.tspan(i + 1), shape=shape,
                       dtype=dtype, acted_by=acted, acted_span=acted_span), j

    def shape(self, i: int):
        items, j = self.seq(self.expect(i, "LSQB"), "RSQB", self.shape_item)
        return items, j + 1, j

    def shape_item(self, j: int):
        if self.T[j] == "ELLIPSIS":
            return A.Ellipsis(span=self.tspan(j)), j + 1
        return self.expr(j)

    def output_stmt(self, i: int):
        T, V = self.T, self.V
        j = i + 1
        items = []
        while True:
            k = j
            name = None
            if T[j] == "NAME" and T[j + 1] == "EQUAL":
                name = V[j]
                j += 2
            value, j = self.expr(j)
            init, sparsity, j, end = self.clauses(j, value.span)
            span = self.join(value.span, end) if name is None else self.from_tok(k, end)
            items.append(A.OutputItem(span=span, name=name, value=value, init=init, sparsity=sparsity))
            if T[j] != "COMMA":
                break
            j += 1
        return A.Output(span=self.from_tok(i, items[-1].span), items=items), j

    def ensure_stmt(self, i: int):
        T, V = self.T, self.V
        e, j = self.expr(i + 1)
        end = e.span
        claim = group = group_span = None
        if T[j] == "INVARIANT" or T[j] == "EQUIVARIANT":
            claim = V[j]
            k = self.expect(j + 1, "UNDER")
            k = self.expect(k, "NAME")
            group, group_span = V[k - 1], self.tspan(k - 1)
            j, end = k, group_span
        return A.Ensure(span=self.from_tok(i, end), expr=e, claim=claim, group=group, group_span=group_span), j

    def if_stmt(self, i: int):
        T = self.T
        cond, j = self.expr(i + 1)
        then, j, close = self.body(j)
        end = self.tspan(close)
        orelse = None
        if T[j] == "ELSE":
            if T[j + 1] == "IF":
                nested, j = self.if_stmt(j + 1)
                orelse, end = [nested], nested.span
            else:
                orelse, j, close = self.body(j + 1)
                end = self.tspan(close)
        return A.If(span=self.from_tok(i, end), cond=cond, then=then, orelse=orelse), j

    # -- expressions
    def expr(self, i: int):
        T = self.T
        if T[i] == "IF":
            cond, j = self.expr(i + 1)
            j = self.expect(j, "THEN")
            then, j = self.expr(j)
            j = self.expect(j, "ELSE")
            orelse, j = self.expr(j)
            return A.Cond(span=self.from_tok(i, orelse.span), cond=cond, then=then, orelse=orelse), j
        head, j = self.or_expr(i)
        if T[j] != "__ANON_0":
            return head, j
        stages, j = self.more_stages(j)
        return A.Pipe(span=self.join(head.span, stages[-1].span), head=head, stages=stages), j

    def more_stages(self, j: int):
        """`(|> stage)*`: the stages and the index after them."""
        T, out = self.T, []
        while T[j] == "__ANON_0":
            s, j = self.stage(j + 1)
            out.append(s)
        return out, j

    def stage(self, i: int):
        t = self.T[i]
        if t == "REPEAT":
            return self.repeat_stage(i)
        if t == "IF":
            return self.if_stage(i)
        return self.postfix(i)

    def stages(self, i: int):
        """`{ stage (|> stage)* }`: the stages, the index after `}` and the index of `}`."""
        out, j = self.seq(self.expect(i, "LBRACE"), "RBRACE", self.stage, "__ANON_0", trailing=False, empty=False)
        return out, j + 1, j

    def repeat_stage(self, i: int):
        T, V = self.T, self.V
        count, j = self.or_expr(i + 1)
        var = names = None
        if T[j] == "AS":
            j = self.expect(j + 1, "NAME")
            var = V[j - 1]
            if T[j] == "STRING":
                try:
                    names = _unquote(V[j])
                except _EscapeError:
                    raise _GiveUp from None
                j += 1
        stages, j, close = self.stages(j)
        return A.Repeat(span=self.between(i, close), count=count, var=var, names=names, stages=stages), j

    def if_stage(self, i: int, cond=None, j: int = 0):
        if cond is None:
            cond, j = self.or_expr(i + 1)
        then, j, close = self.stages(j)
        orelse = None
        if self.T[j] == "ELSE":
            orelse, j, close = self.stages(j + 1)
        return A.IfStage(span=self.between(i, close), cond=cond, then=then, orelse=orelse), j

    def or_expr(self, i: int, min_prec: int = 1):
        """`or_expr` and the levels below it by precedence climbing, with one call per operand instead of
        one per level: `or` 1, `and` 2, `not` (prefix) 3, comparisons 4 (they do not chain), `+ -` 5,
        `* / // % @` 6, unary `-` 7, `**` 8 (right-associative; its left operand is a postfix expression).
        Parses the operators of precedence `min_prec` and above."""
        T = self.T
        t = T[i]
        if t == "NOT":
            if min_prec > 3:                    # `a == not b`, `a + not b`: not in the grammar
                raise _GiveUp
            value, j = self.or_expr(i + 1, 3)
            left = A.Not(span=self.from_tok(i, value.span), value=value)
        elif t == "MINUS":
            value, j = self.or_expr(i + 1, 7)
            left = A.Neg(span=self.from_tok(i, value.span), value=value)
        else:
            left, j = self.postfix(i)
        prec = _PREC.get(T[j])
        while prec is not None and prec >= min_prec:
            k = j
            right, j = self.or_expr(k + 1, _RIGHT[prec])
            span = self.join(left.span, right.span)
            if prec <= 2:
                op = "or" if prec == 1 else "and"
                vals = list(left.values) if type(left) is A.BoolOp and left.op == op and left.span.line > 0 else [left]
                left = A.BoolOp(span=span, op=op, values=vals + [right])
            elif prec == 4:
                if T[j] == "COMP_OP":
                    raise _GiveUp               # comparisons do not chain
                left = A.Compare(span=span, op=self.V[k], left=left, right=right)
            else:
                left = A.BinOp(span=span, op=self.V[k], left=left, right=right, op_span=self.tspan(k))
            prec = _PREC.get(T[j])
        return left, j

    def postfix(self, i: int):
        T = self.T
        if T[i] == "NAME":
            ln, c, v = self.L[i], self.C[i], self.V[i]
            value, j = A.Name(span=Span(self.file, ln, c, ln, c + len(v)), id=v), i + 1
        else:
            value, j = self.atom(i)
        while True:
            t = T[j]
            if t == "LPAR":
                args, j = self.args(j + 1)
                value = A.Call(span=self.to_tok(value.span, j), func=value, args=args)
                j += 1
            elif t == "DOT":
                j = self.expect(j + 1, "NAME")
                value = A.Attr(span=self.to_tok(value.span, j - 1), value=value, name=self.V[j - 1])
            elif t == "LSQB":
                index, j = self.expr(j + 1)
                if T[j] != "RSQB":
                    raise _GiveUp
                value = A.Index(span=self.to_tok(value.span, j), value=value, index=index)
                j += 1
            else:
                return value, j

    def args(self, i: int):
        """Arguments up to `)`: the list and the index of `)`."""
        return self.seq(i, "RPAR", self.arg)

    def arg(self, j: int):
        T = self.T
        if T[j] == "NAME":
            t = T[j + 1]
            if t == "EQUAL":
                value, k = self.expr(j + 2)
                return A.Arg(span=self.from_tok(j, value.span), name=self.V[j], value=value), k
            if t == "COMMA" or t == "RPAR":           # a name and nothing more: the commonest argument
                span = self.tspan(j)
                return A.Arg(span=span, name=None, value=A.Name(span=span, id=self.V[j])), j + 1
        value, k = self.expr(j)
        return A.Arg(span=value.span, name=None, value=value), k

    def atom(self, i: int):
        t = self.T[i]
        if t == "NAME":
            return A.Name(span=self.tspan(i), id=self.V[i]), i + 1
        if t == "NUMBER":
            try:
                value = parse_number(self.V[i])
            except NumberError:
                raise _GiveUp from None
            return A.Num(span=self.tspan(i), value=value, text=self.V[i]), i + 1
        if t == "LPAR":
            return self.paren(i)
        if t == "STRING":
            try:
                value = _unquote(self.V[i])
            except _EscapeError:
                raise _GiveUp from None
            return A.Str(span=self.tspan(i), value=value), i + 1
        if t == "TRUE" or t == "FALSE":
            return A.Bool(span=self.tspan(i), value=t == "TRUE"), i + 1
        if t == "LSQB":
            items, j = self.seq(i + 1, "RSQB", self.expr)
            return A.ListExpr(span=self.between(i, j), items=items), j + 1
        raise _GiveUp

    def paren(self, i: int):
        """`( expr )` (the expression itself), or a chain that starts with a `repeat` or `if` stage."""
        T = self.T
        t = T[i + 1]
        if t == "REPEAT":
            head, j = self.repeat_stage(i + 1)
        elif t == "IF" and T[i + 2] != "IF":
            cond, j = self.or_expr(i + 2)
            if T[j] == "LBRACE":
                head, j = self.if_stage(i + 1, cond, j)
            else:                                   # `(if c then a else b)`
                e, j = self.expr(i + 1)
                if T[j] != "RPAR":
                    raise _GiveUp
                return e, j + 1
        else:
            e, j = self.expr(i + 1)
            if T[j] != "RPAR":
                raise _GiveUp
            return e, j + 1
        stages, j = self.more_stages(j)
        if T[j] != "RPAR":
            raise _GiveUp
        return A.Pipe(span=self.between(i, j), head=head, stages=stages), j + 1
