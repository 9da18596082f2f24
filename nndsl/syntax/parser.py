"""Source text -> AST. Lark LALR with positions; syntax errors become Diagnostics in plain words."""
from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..diagnostics import Abort, Diagnostic, Span
from ..resources import grammar_path
from . import ast as A

MAX_NESTING = 96

# Newlines after these tokens, or before the second group, do not end a statement.
_CONTINUE_AFTER = {"{", "(", "[", ",", "=", "|>", "+", "-", "*", "/", "//", "%", "@", "==", "!=", "<=",
                   ">=", "<", ">", "and", "or", "not", "if", "then", "else", ":", "repeat", "as", "."}
_CONTINUE_BEFORE = {"}", "|>", "else", "then", ")", "]"}
_OPEN, _CLOSE = {"(", "["}, {")", "]"}


class _NestingTooDeep(Exception):
    def __init__(self, token: Token):
        self.token = token


class _PostLex:
    """Turns raw newlines into statement separators (see the comment atop the grammar)."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        prev = None
        pending = None
        for tok in stream:
            if tok.type == "_NL":
                if depth == 0 and prev is not None and prev.value not in _CONTINUE_AFTER:
                    pending = pending or tok
                continue
            if pending is not None:
                if tok.value not in _CONTINUE_BEFORE:
                    yield pending
                pending = None
            v = tok.value
            if v in _OPEN:
                depth += 1
                if depth > MAX_NESTING:
                    raise _NestingTooDeep(tok)
            elif v in _CLOSE:
                depth = max(0, depth - 1)
            yield tok
            prev = tok


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_path().read_text(),
        parser="lalr",
        lexer="basic",
        postlex=_PostLex(),
        propagate_positions=True,
        maybe_placeholders=False,
        cache=False,
    )


_HUMAN = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "a new line or `;`",
    "COMP_OP": "a comparison", "MUL_OP": "`*`, `/`, `//`, `%` or `@`",
    "$END": "the end of the file",
}


@functools.lru_cache(maxsize=None)
def _terminal_words() -> dict[str, str]:
    out = dict(_HUMAN)
    for t in _lark().terminals:
        if t.name not in out and t.pattern.type == "str":
            out[t.name] = f"`{t.pattern.value}`"
    return out


def _describe_expected(expected) -> str:
    words = _terminal_words()
    closers = {"COMMA", "RPAR", "RSQB", "RBRACE"} & set(expected)
    if closers and "COMMA" in closers and len(closers) > 1:
        expected = closers  # inside a bracket list: the useful news is `,` or the closer
    names = sorted({words.get(e, None) or e.lower() for e in expected if not e.startswith("__") or e in words})
    names = [n for n in names if not n.startswith("__")]
    if not names:
        return "something else"
    if len(names) > 8:
        names = names[:8] + ["..."]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _found(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "_NL":
        return "the end of the line" if tok.value != ";" else "`;`"
    return f"`{tok.value}`"


def _eof_span(file: str, text: str) -> Span:
    lines = text.splitlines() or [""]
    if text.endswith("\n"):
        return Span(file=file, line=len(lines) + 1, col=1, end_line=len(lines) + 1, end_col=1)
    return Span(file=file, line=len(lines), col=len(lines[-1]) + 1, end_line=len(lines), end_col=len(lines[-1]) + 2)


def _syntax_error(e: UnexpectedInput, file: str, text: str) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = Span(file=file, line=e.line, col=e.column, end_line=e.line, end_col=e.column + 1)
        if ch == '"':
            return Diagnostic(code="E0003", message="unterminated string", span=span,
                              label="this string is never closed", help="close the string with `\"` on the same line")
        return Diagnostic(code="E0003", message=f"unexpected character `{ch}`", span=span,
                          label="no token of `.nn` starts with this character",
                          help="names use letters, digits and `_`; comments start with `#`")
    tok = getattr(e, "token", None)
    expected = getattr(e, "expected", None) or set()
    if isinstance(e, UnexpectedEOF) or (tok is not None and tok.type == "$END"):
        span = _eof_span(file, text)
        return Diagnostic(code="E0002", message="unexpected end of file", span=span,
                          label=f"expected {_describe_expected(expected)}",
                          help="check that every `{`, `(` and `[` is closed")
    assert isinstance(e, UnexpectedToken)
    line, col = tok.line or 1, tok.column or 1
    end = (tok.end_column or col + max(1, len(tok.value))) if (tok.end_line or line) == line else col + 1
    if tok.type == "_NL":
        end = col + 1
    span = Span(file=file, line=line, col=col, end_line=line, end_col=max(end, col + 1))
    d = Diagnostic(code="E0001", message=f"unexpected {_found(tok)}", span=span,
                   label=f"expected {_describe_expected(expected)}")
    if tok.type == "NAME" and "COMMA" in expected:
        d.help = "separate arguments with `,`"
    elif tok.type == "_NL" and ("RPAR" in expected or "RSQB" in expected):
        d.help = "a bracket is still open here"
    elif tok.type in {"INPUT", "OUTPUT", "BLOCK", "MODEL", "ENSURE", "REPEAT", "IMPORT"} and "NAME" in expected:
        d.help = f"`{tok.value}` is a keyword and cannot be used as a name"
    return d


def _span(file: str, meta) -> Span:
    return Span(file=file, line=meta.line, col=meta.column, end_line=meta.end_line, end_col=meta.end_column)


def _tspan(file: str, tok: Token) -> Span:
    return Span(file=file, line=tok.line, col=tok.column, end_line=tok.end_line, end_col=tok.end_column)


_SUFFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}


def parse_number(text: str) -> int | float:
    mult = 1
    if text[-1] in _SUFFIX:
        mult = _SUFFIX[text[-1]]
        text = text[:-1]
    if any(c in text for c in ".eE"):
        v = float(text) * mult
        if mult != 1 and v == int(v):
            return int(v)
        return v
    return int(text) * mult


@v_args(meta=True)
class _ToAST(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, meta) -> Span:
        return _span(self.file, meta)

    # -- top level
    def start(self, meta, items):
        return A.Module.model_construct(file=self.file, items=list(items))

    def import_stmt(self, meta, ch):
        target, alias = ch[0], (str(ch[1]) if len(ch) > 1 else None)
        if isinstance(target, Token) and target.type == "STRING":
            return A.Import.model_construct(span=self._s(meta), path=_unquote(target), module=None, alias=alias)
        return A.Import.model_construct(span=self._s(meta), path=None, module=target, alias=alias)

    def dotted(self, meta, ch):
        return ".".join(str(c) for c in ch)

    def _blockdef(self, meta, ch, is_model):
        name = ch[0]
        params = ch[1] if len(ch) == 3 else []
        body = ch[-1]
        return A.BlockDef.model_construct(span=self._s(meta), is_model=is_model, name=str(name),
                                          name_span=_tspan(self.file, name), params=params, body=body)

    def block_def(self, meta, ch):
        return self._blockdef(meta, ch, False)

    def model_def(self, meta, ch):
        return self._blockdef(meta, ch, True)

    def param_list(self, meta, ch):
        return list(ch)

    def param(self, meta, ch):
        return A.Param.model_construct(span=self._s(meta), name=str(ch[0]), type=str(ch[1]),
                                       type_span=_tspan(self.file, ch[1]), default=ch[2] if len(ch) > 2 else None)

    def body(self, meta, ch):
        return list(ch)

    # -- statements
    def input_stmt(self, meta, ch):
        return A.Input.model_construct(span=self._s(meta), name=str(ch[0]), name_span=_tspan(self.file, ch[0]),
                                       shape=ch[1], dtype=str(ch[2]) if len(ch) > 2 else None)

    def shape(self, meta, ch):
        return list(ch)

    def bind_stmt(self, meta, ch):
        names = ch[:-1]
        return A.Bind.model_construct(span=self._s(meta), targets=[str(n) for n in names],
                                      target_spans=[_tspan(self.file, n) for n in names], value=ch[-1])

    def output_stmt(self, meta, ch):
        return A.Output.model_construct(span=self._s(meta), items=list(ch))

    def output_item(self, meta, ch):
        if len(ch) == 2:
            return A.OutputItem.model_construct(span=self._s(meta), name=str(ch[0]), value=ch[1])
        return A.OutputItem.model_construct(span=self._s(meta), name=None, value=ch[0])

    def ensure_stmt(self, meta, ch):
        return A.Ensure.model_construct(span=self._s(meta), expr=ch[0])

    def if_stmt(self, meta, ch):
        orelse = None
        if len(ch) > 2:
            orelse = ch[2] if isinstance(ch[2], list) else [ch[2]]
        return A.If.model_construct(span=self._s(meta), cond=ch[0], then=ch[1], orelse=orelse)

    # -- expressions
    def cond_expr(self, meta, ch):
        return A.Cond.model_construct(span=self._s(meta), cond=ch[0], then=ch[1], orelse=ch[2])

    def pipe_expr(self, meta, ch):
        return A.Pipe.model_construct(span=self._s(meta), head=ch[0], stages=list(ch[1:]))

    def repeat_stage(self, meta, ch):
        count = ch[0]
        rest = list(ch[1:])
        var = None
        if rest and isinstance(rest[0], Token):
            var = str(rest.pop(0))
        return A.Repeat.model_construct(span=self._s(meta), count=count, var=var, stages=rest)

    def or_expr(self, meta, ch):
        if len(ch) == 1:
            return ch[0]
        return A.BoolOp.model_construct(span=self._s(meta), op="or", values=list(ch))

    def and_expr(self, meta, ch):
        if len(ch) == 1:
            return ch[0]
        return A.BoolOp.model_construct(span=self._s(meta), op="and", values=list(ch))

    def not_expr(self, meta, ch):
        return A.Not.model_construct(span=self._s(meta), value=ch[0])

    def compare(self, meta, ch):
        if len(ch) == 1:
            return ch[0]
        return A.Compare.model_construct(span=self._s(meta), op=str(ch[1]), left=ch[0], right=ch[2])

    def binop(self, meta, ch):
        if len(ch) == 1:
            return ch[0]
        left = ch[0]
        for i in range(1, len(ch), 2):
            op, right = ch[i], ch[i + 1]
            sp = Span(file=self.file, line=left.span.line, col=left.span.col,
                      end_line=right.span.end_line, end_col=right.span.end_col)
            left = A.BinOp.model_construct(span=sp, op=str(op), left=left, right=right,
                                           op_span=_tspan(self.file, op))
        return left

    def neg(self, meta, ch):
        return A.Neg.model_construct(span=self._s(meta), value=ch[1])

    def call(self, meta, ch):
        args = ch[1] if len(ch) > 1 else []
        return A.Call.model_construct(span=self._s(meta), func=ch[0], args=args)

    def args(self, meta, ch):
        return [c if isinstance(c, A.Arg) else A.Arg.model_construct(span=c.span, name=None, value=c) for c in ch]

    def kwarg(self, meta, ch):
        return A.Arg.model_construct(span=self._s(meta), name=str(ch[0]), value=ch[1])

    def attr(self, meta, ch):
        return A.Attr.model_construct(span=self._s(meta), value=ch[0], name=str(ch[1]))

    def index(self, meta, ch):
        return A.Index.model_construct(span=self._s(meta), value=ch[0], index=ch[1])

    def number(self, meta, ch):
        return A.Num.model_construct(span=self._s(meta), value=parse_number(str(ch[0])), text=str(ch[0]))

    def string(self, meta, ch):
        return A.Str.model_construct(span=self._s(meta), value=_unquote(ch[0]))

    def true(self, meta, ch):
        return A.Bool.model_construct(span=self._s(meta), value=True)

    def false(self, meta, ch):
        return A.Bool.model_construct(span=self._s(meta), value=False)

    def name(self, meta, ch):
        return A.Name.model_construct(span=self._s(meta), id=str(ch[0]))

    def list(self, meta, ch):
        return A.ListExpr.model_construct(span=self._s(meta), items=list(ch))


def _unquote(tok) -> str:
    s = str(tok)[1:-1]
    if "\\" in s:
        s = s.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return s


def parse_text(text: str, file: str = "<string>") -> A.Module:
    """Parse `.nn` source. Raises Abort carrying a Diagnostic on a syntax error."""
    try:
        tree = _lark().parse(text)
        return _ToAST(file).transform(tree)
    except UnexpectedInput as e:
        raise Abort(_syntax_error(e, file, text)) from None
    except _NestingTooDeep as e:
        raise Abort(Diagnostic(code="E0112", message=f"brackets nested more than {MAX_NESTING} deep",
                               span=_tspan(file, e.token), label="nesting limit reached here")) from None
    except VisitError as e:
        if isinstance(e.orig_exc, Abort):
            raise e.orig_exc from None
        raise
    except RecursionError:
        raise Abort(Diagnostic(code="E0112", message="expression nested too deeply",
                               span=Span(file=file, line=1, col=1, end_line=1, end_col=2))) from None


def parse_file(path: str | Path) -> A.Module:
    p = Path(path)
    return parse_text(p.read_text(encoding="utf-8"), str(path))
