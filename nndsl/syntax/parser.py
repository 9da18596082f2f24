"""Source text -> AST. Lark LALR with positions; syntax errors become Diagnostics in plain words."""
from __future__ import annotations

import functools
import re
from pathlib import Path

from lark import Lark, Token, Transformer
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
        keep_all_tokens=True,
        maybe_placeholders=False,
        transformer=_TRANSFORMER,
        cache=_cache_file(),
    )


def _cache_file():
    """Lark caches its grammar analysis (about 70 ms) in a file keyed by the grammar's hash; a fresh
    process then starts faster. Where no writable cache directory exists, it is simply not used."""
    import hashlib
    import os
    import tempfile

    text = grammar_path().read_bytes()
    digest = hashlib.sha256(text).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for d in (os.path.join(base, "nndsl"), os.path.join(tempfile.gettempdir(), "nndsl-cache")):
        try:
            os.makedirs(d, exist_ok=True)
            if os.access(d, os.W_OK):
                return os.path.join(d, f"grammar-{digest}.lark.cache")
        except OSError:
            continue
    return False


_HUMAN = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "a new line or `;`",
    "COMP_OP": "a comparison", "ELLIPSIS": "`...`", "MUL_OP": "`*`, `/`, `//`, `%` or `@`",
    "$END": "the end of the file",
}


@functools.lru_cache(maxsize=None)
def _terminal_words() -> dict[str, str]:
    out = dict(_HUMAN)
    for t in _lark().terminals:
        if t.name not in out and t.pattern.type == "str":
            out[t.name] = f"`{t.pattern.value}`"
    return out


def _describe_expected(expected, in_bracket: str | None = None) -> str:
    """What could have come instead, in words. Inside an open bracket the useful news is `,` or the
    closer; outside, a statement that goes on too long wants its end."""
    words = _terminal_words()
    expected = set(expected)
    closer = {"(": "RPAR", "[": "RSQB"}.get(in_bracket or "")
    if closer and expected & {"COMMA", closer}:
        expected &= {"COMMA", closer}
    elif in_bracket == "":
        expected -= {"COMMA", "RPAR", "RSQB"}
        if "_NL" in expected:
            return "the end of the statement (a new line or `;`)"
    names = sorted({words.get(e) or e.lower() for e in expected})
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
        want = "`}` to close the block" if "RBRACE" in expected else _describe_expected(expected)
        return Diagnostic(code="E0002", message="unexpected end of file", span=span, label=f"expected {want}",
                          help="check that every `{`, `(` and `[` is closed")
    assert isinstance(e, UnexpectedToken)
    line, col = tok.line or 1, tok.column or 1
    end = (tok.end_column or col + max(1, len(tok.value))) if (tok.end_line or line) == line else col + 1
    if tok.type == "_NL":
        end = col + 1
    span = Span(file=file, line=line, col=col, end_line=line, end_col=max(end, col + 1))
    before = text.split("\n")[: line - 1] + [text.split("\n")[line - 1][: col - 1]] if line >= 1 else []
    in_bracket = _open_brackets(before)
    d = Diagnostic(code="E0001", message=f"unexpected {_found(tok)}", span=span,
                   label=f"expected {_describe_expected(expected, in_bracket)}")
    if tok.type in ("NAME", "NUMBER", "STRING") and in_bracket and "COMMA" in expected:  # noqa: SIM102
        d.help = "separate arguments with `,`"
    elif tok.type == "_NL" and ("RPAR" in expected or "RSQB" in expected):
        d.help = "a bracket is still open here"
    elif tok.type in {"INPUT", "OUTPUT", "BLOCK", "MODEL", "ENSURE", "REPEAT", "IMPORT"} and "NAME" in expected:
        d.help = f"`{tok.value}` is a keyword and cannot be used as a name"
    return d


def _span(file: str, meta) -> Span:
    return Span(file=file, line=meta.line, col=meta.column, end_line=meta.end_line, end_col=meta.end_column)


def _tspan(file: str, tok: Token) -> Span:
    return A.make(Span, file=file, line=tok.line, col=tok.column, end_line=tok.end_line,
                                end_col=tok.end_column)


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


_VALUE_TOKENS = {"NAME", "NUMBER", "STRING", "COMP_OP", "PLUS", "MINUS", "MUL_OP", "ELLIPSIS"}


class _Seq(list):
    """A list of children that remembers the span of its brackets."""

    span: Span


def _start(x):
    if isinstance(x, Token):
        return x.line, x.column
    return x.span.line, x.span.col


def _end(x):
    if isinstance(x, Token):
        return x.end_line, x.end_column
    return x.span.end_line, x.span.end_col


def _vals(ch):
    return [c for c in ch if not isinstance(c, Token) or c.type in _VALUE_TOKENS]


class _ToAST(Transformer):
    """Applied inline by the LALR parser (no parse tree is built). With keep_all_tokens every child is
    present, so each node's span runs from its first to its last child, brackets included."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, ch) -> Span:
        (l1, c1), (l2, c2) = _start(ch[0]), _end(ch[-1])
        return A.make(Span, file=self.file, line=l1, col=c1, end_line=l2, end_col=c2)

    def _seq(self, ch, items) -> _Seq:
        out = _Seq(items)
        out.span = self._s(ch) if ch else Span(file=self.file, line=1, col=1, end_line=1, end_col=1)
        return out

    # -- top level
    def start(self, ch):
        return A.make(A.Module, file=self.file, items=[c for c in ch if not isinstance(c, Token)])

    def import_stmt(self, ch):
        v = _vals(ch)
        target, alias = v[0], (str(v[1]) if len(v) > 1 else None)
        if isinstance(target, Token) and target.type == "STRING":
            return A.make(A.Import, span=self._s(ch), path=_unquote(target), module=None, alias=alias)
        return A.make(A.Import, span=self._s(ch), path=None, module=str(target), alias=alias)

    def dotted(self, ch):
        t = Token("NAME", ".".join(str(c) for c in _vals(ch)))
        t.line, t.column = _start(ch[0])
        t.end_line, t.end_column = _end(ch[-1])
        return t

    def _blockdef(self, ch, is_model):
        v = _vals(ch)
        name = v[0]
        params = list(v[1]) if len(v) == 3 else []
        return A.make(A.BlockDef, span=self._s(ch), is_model=is_model, name=str(name),
                                          name_span=_tspan(self.file, name), params=params, body=list(v[-1]))

    def block_def(self, ch):
        return self._blockdef(ch, False)

    def model_def(self, ch):
        return self._blockdef(ch, True)

    def param_list(self, ch):
        return self._seq(ch, _vals(ch))

    def param(self, ch):
        v = _vals(ch)
        return A.make(A.Param, span=self._s(ch), name=str(v[0]), type=str(v[1]),
                                       type_span=_tspan(self.file, v[1]), default=v[2] if len(v) > 2 else None)

    def body(self, ch):
        return self._seq(ch, [c for c in _vals(ch)])

    # -- statements
    def input_stmt(self, ch):
        v = _vals(ch)
        return A.make(A.Input, span=self._s(ch), name=str(v[0]), name_span=_tspan(self.file, v[0]),
                                       shape=list(v[1]), dtype=str(v[2]) if len(v) > 2 else None)

    def shape(self, ch):
        return self._seq(ch, [A.make(A.Ellipsis, span=_tspan(self.file, c), kind="ellipsis")
                              if isinstance(c, Token) and c.type == "ELLIPSIS" else c for c in _vals(ch)])

    def bind_stmt(self, ch):
        v = _vals(ch)
        names = v[:-1]
        return A.make(A.Bind, span=self._s(ch), targets=[str(n) for n in names],
                                      target_spans=[_tspan(self.file, n) for n in names], value=v[-1])

    def output_stmt(self, ch):
        return A.make(A.Output, span=self._s(ch), items=_vals(ch))

    def output_item(self, ch):
        v = _vals(ch)
        if len(v) == 2:
            return A.make(A.OutputItem, span=self._s(ch), name=str(v[0]), value=v[1])
        return A.make(A.OutputItem, span=self._s(ch), name=None, value=v[0])

    def ensure_stmt(self, ch):
        return A.make(A.Ensure, span=self._s(ch), expr=_vals(ch)[0])

    def if_stmt(self, ch):
        v = _vals(ch)
        orelse = None
        if len(v) > 2:
            orelse = list(v[2]) if isinstance(v[2], list) else [v[2]]
        return A.make(A.If, span=self._s(ch), cond=v[0], then=list(v[1]), orelse=orelse)

    # -- expressions
    def cond_expr(self, ch):
        v = _vals(ch)
        return A.make(A.Cond, span=self._s(ch), cond=v[0], then=v[1], orelse=v[2])

    def pipe_expr(self, ch):
        v = _vals(ch)
        return A.make(A.Pipe, span=self._s(ch), head=v[0], stages=v[1:])

    def repeat_stage(self, ch):
        v = _vals(ch)
        count, rest, var = v[0], v[1:], None
        if rest and isinstance(rest[0], Token):
            var = str(rest.pop(0))
        return A.make(A.Repeat, span=self._s(ch), count=count, var=var, stages=rest)

    def or_expr(self, ch):
        v = _vals(ch)
        left = v[0]
        vals = list(left.values) if isinstance(left, A.BoolOp) and left.op == "or" and left.span.line > 0 else [left]
        return A.make(A.BoolOp, span=self._s(ch), op="or", values=vals + [v[1]])

    def and_expr(self, ch):
        v = _vals(ch)
        left = v[0]
        vals = list(left.values) if isinstance(left, A.BoolOp) and left.op == "and" else [left]
        return A.make(A.BoolOp, span=self._s(ch), op="and", values=vals + [v[1]])

    def not_expr(self, ch):
        return A.make(A.Not, span=self._s(ch), value=_vals(ch)[0])

    def compare(self, ch):
        v = _vals(ch)
        return A.make(A.Compare, span=self._s(ch), op=str(v[1]), left=v[0], right=v[2])

    def binop(self, ch):
        v = _vals(ch)
        return A.make(A.BinOp, span=self._s(ch), op=str(v[1]), left=v[0], right=v[2],
                                       op_span=_tspan(self.file, v[1]))

    def neg(self, ch):
        return A.make(A.Neg, span=self._s(ch), value=_vals(ch)[1])

    def call(self, ch):
        v = _vals(ch)
        args = list(v[1]) if len(v) > 1 else []
        return A.make(A.Call, span=self._s(ch), func=v[0], args=args)

    def args(self, ch):
        return [c if isinstance(c, A.Arg) else A.make(A.Arg, span=c.span, name=None, value=c)
                for c in _vals(ch)]

    def kwarg(self, ch):
        v = _vals(ch)
        return A.make(A.Arg, span=self._s(ch), name=str(v[0]), value=v[1])

    def attr(self, ch):
        v = _vals(ch)
        return A.make(A.Attr, span=self._s(ch), value=v[0], name=str(v[1]))

    def index(self, ch):
        v = _vals(ch)
        return A.make(A.Index, span=self._s(ch), value=v[0], index=v[1])

    def number(self, ch):
        return A.make(A.Num, span=self._s(ch), value=parse_number(str(ch[0])), text=str(ch[0]))

    def string(self, ch):
        return A.make(A.Str, span=self._s(ch), value=_unquote(ch[0]))

    def true(self, ch):
        return A.make(A.Bool, span=self._s(ch), value=True)

    def false(self, ch):
        return A.make(A.Bool, span=self._s(ch), value=False)

    def name(self, ch):
        return A.make(A.Name, span=self._s(ch), id=str(ch[0]))

    def list(self, ch):
        return A.make(A.ListExpr, span=self._s(ch), items=_vals(ch))

    def paren(self, ch):
        return _vals(ch)[0]


_TRANSFORMER = _ToAST("<string>")  # held by the parser; the file name is set per parse


def _unquote(tok) -> str:
    s = str(tok)[1:-1]
    if "\\" in s:
        s = s.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return s


def parse_text(text: str, file: str = "<string>") -> A.Module:
    """Parse `.nn` source. Raises Abort carrying a Diagnostic on a syntax error."""
    try:
        _TRANSFORMER.file = file
        return _lark().parse(text)
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


MAX_SYNTAX_ERRORS = 10


def parse_recovering(text: str, file: str = "<string>") -> tuple[A.Module | None, list[Diagnostic]]:
    """Parse, reporting every independent syntax error: after an error, the offending line is blanked
    (positions are kept) and the text parsed again. It stops where recovery would guess: inside an open
    bracket, on a line with a brace, at the end of the file, or after MAX_SYNTAX_ERRORS."""
    diags: list[Diagnostic] = []
    cur = text
    while True:
        try:
            mod = parse_text(cur, file)
            return (mod if not diags else None), diags
        except Abort as e:
            d = e.diagnostic
            diags.append(d)
            if len(diags) >= MAX_SYNTAX_ERRORS or not _recoverable(d):
                return None, diags
            lines = cur.split("\n")
            i = d.span.line - 1
            if not 0 <= i < len(lines) or any(c in lines[i] for c in "{}") or _open_brackets(lines[:i]):
                return None, diags
            lines[i] = " " * len(lines[i])
            cur = "\n".join(lines)


def _recoverable(d: Diagnostic) -> bool:
    return d.code in ("E0001", "E0003") and d.span is not None


_STRINGS_COMMENTS = re.compile(r'"([^"\\\n]|\\.)*"|#[^\n]*')


def _open_brackets(lines: list[str]) -> str:
    """The innermost `(` or `[` opened on these lines and still open ("" when none)."""
    stack: list[str] = []
    for line in lines:
        for ch in _STRINGS_COMMENTS.sub("", line):
            if ch in "([":
                stack.append(ch)
            elif ch in ")]" and stack:
                stack.pop()
    return stack[-1] if stack else ""


def parse_file(path: str | Path) -> A.Module:
    p = Path(path)
    return parse_text(p.read_text(encoding="utf-8"), str(path))
