"""Source text -> AST. The grammar is Lark's (grammar/nndsl.lark), and so is its LALR table (read from
grammar/nndsl.tables.json, see tables.py); nndsl's own lexer and driver loop run it, so that parsing imports
no Lark. Syntax errors become Diagnostics in plain words."""
from __future__ import annotations

import functools
import re
from pathlib import Path

from ..diagnostics import Abort, Diagnostic, Span
from ..resources import grammar_path
from . import ast as A

MAX_NESTING = 96

# Newlines after these tokens, or before the second group, do not end a statement.
_CONTINUE_AFTER = {"{", "(", "[", ",", "=", "|>", "+", "-", "*", "**", "/", "//", "%", "@", "==", "!=", "<=",
                   ">=", "<", ">", "and", "or", "not", "if", "then", "else", ":", "repeat", "as", "."}
_CONTINUE_BEFORE = {"}", "|>", "else", "then", ")", "]"}
_OPEN, _CLOSE = {"(", "["}, {")", "]"}


class Token(str):
    """A token: its text (the str itself and `.value`), terminal name and position, as Lark's Token has
    them, so the same callbacks serve Lark's own parser (the reference the tests compare with)."""

    __slots__ = ("type", "value", "start_pos", "line", "column", "end_line", "end_column", "end_pos")

    def __new__(cls, type: str, value: str, start_pos=None, line=None, column=None, end_line=None,
                end_column=None, end_pos=None):
        t = str.__new__(cls, value)
        t.type, t.value, t.start_pos, t.line, t.column = type, value, start_pos, line, column
        t.end_line, t.end_column, t.end_pos = end_line, end_column, end_pos
        return t

    @classmethod
    def new_borrow_pos(cls, type: str, value: str, borrow) -> "Token":
        return cls(type, value, borrow.start_pos, borrow.line, borrow.column, borrow.end_line, borrow.end_column,
                   borrow.end_pos)

    def __reduce__(self):
        return (Token, (self.type, self.value, self.start_pos, self.line, self.column, self.end_line,
                        self.end_column, self.end_pos))

    def __repr__(self) -> str:
        return f"Token({self.type!r}, {self.value!r})"


class UnexpectedInput(Exception):
    """A syntax error where the parser stopped (named as Lark names its own)."""

    token = None
    expected: set = set()


class UnexpectedToken(UnexpectedInput):
    def __init__(self, token: Token, expected: set):
        super().__init__(f"unexpected {token.type}")
        self.token, self.expected = token, expected
        self.line, self.column, self.pos_in_stream = token.line, token.column, token.start_pos


class UnexpectedCharacters(UnexpectedInput):
    def __init__(self, text: str, pos: int, line: int, column: int):
        super().__init__(f"no token starts at line {line}, column {column}")
        self.pos_in_stream, self.line, self.column = pos, line, column
        self.char = text[pos:pos + 1]


class _NestingTooDeep(Exception):
    def __init__(self, token: Token):
        self.token = token


class _LexState:
    """What the post-lexer knows while a parse runs; error recovery reads and resets it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, max_nesting: int = MAX_NESTING) -> None:
        self.max_nesting = max_nesting
        self.open_before = ""       # innermost open bracket before the last token handed to the parser
        self.open_since = 0         # the line of the outermost bracket still open then (0: none)


_LEX = _LexState()


# Keywords that only ever begin a statement or an item. Elsewhere, or followed by `=` or `,` (a binding's
# targets), they are names,
# so that any PyTorch attribute name can be a binding (`output = linear(h, D)`, `block = ...`).
SOFT_KEYWORDS = {"INPUT", "OUTPUT", "BLOCK", "MODEL", "IMPORT", "ENSURE", "PARAMETRIZATION", "ACT", "GROUP"}
_STATEMENT_START = {None, "_NL", "LBRACE"}


_CLAUSE_KEYWORDS = {"SPARSITY", "STRUCTURE"}
# `acted by G` after an input's shape and `invariant|equivariant under G` after an ensure's tensor: the
# first word is a keyword only when the second follows it, the second only right after the first
_PAIRS = {"ACTED": "BY", "INVARIANT": "UNDER", "EQUIVARIANT": "UNDER"}
_SECONDS = {"BY": ("ACTED",), "UNDER": ("INVARIANT", "EQUIVARIANT")}
# tokens after which an expression has ended, so that a clause (`sparsity monarch(4)`) may follow
_ENDS_EXPR = {"RPAR", "RSQB", "NAME", "NUMBER", "STRING", "RBRACE", "TRUE", "FALSE"}


def _keyword_or_name(held: Token, prev_type, tok: Token | None) -> Token:
    """A held keyword token, decided by the token after it (`tok`, None at the end)."""
    nxt = tok.type if tok is not None else None
    if held.type == "INIT":
        keep = nxt == "LBRACE"
    elif held.type in _PAIRS:
        keep = nxt == _PAIRS[held.type]
    elif held.type in _CLAUSE_KEYWORDS:
        keep = nxt == "LBRACE" if prev_type in _STATEMENT_START else \
            nxt == "NAME" or nxt in SOFT_KEYWORDS or nxt in _CLAUSE_KEYWORDS
    else:
        keep = nxt not in ("EQUAL", "COMMA")
    return held if keep else Token.new_borrow_pos("NAME", held.value, held)


_SPECIAL = {"INIT", *_CLAUSE_KEYWORDS, *_PAIRS, *_SECONDS, *SOFT_KEYWORDS}


class _PostLex:
    """Lark's post-lexer interface to `_postlex` (for the reference parser the tests compare with)."""

    always_accept = ("_NL",)

    def process(self, stream):
        return _postlex(stream)


def _postlex(stream, prev=None):
    """Between the lexer and the parser, in one pass over the tokens:
    - newlines become statement separators: dropped inside brackets and where a statement goes on
      (after `=`, an operator, ...; before `}`, `|>`, `else`, ...; see the comment atop the grammar);
    - keywords that stand where a name must be become NAME tokens: a statement keyword (`input`, `block`,
      `output`, ...) is a keyword only at the start of a statement and when `=` or `,` does not follow it,
      `init` only before `{`, `sparsity`/`structure` only as a statement before `{` or after an expression,
      `acted by` / `invariant under` only as the pair.
    `prev` is the token before the stream (after a recovery: where the statement logic resumes from)."""
    st = _LEX
    opened: list[Token] = []
    pending = None              # a newline that ends the statement unless the next token continues it
    held = held_prev = None     # a keyword decided by the token after it
    prev_type = None
    for tok in stream:
        ttype = tok.type
        if ttype == "_NL":
            if not opened and prev is not None and prev.value not in _CONTINUE_AFTER:
                pending = pending or tok
            continue
        v = tok.value
        if pending is not None:
            if v not in _CONTINUE_BEFORE:
                st.open_before, st.open_since = "", 0
                if held is not None:
                    out = _keyword_or_name(held, held_prev, pending)
                    held = None
                    yield out
                prev_type = "_NL"
                yield pending
            pending = None
        if opened:
            st.open_before, st.open_since = opened[-1].value, opened[0].line
        else:
            st.open_before, st.open_since = "", 0
        if v in _OPEN:
            opened.append(tok)
            if len(opened) > st.max_nesting:
                raise _NestingTooDeep(tok)
        elif v in _CLOSE and opened:
            opened.pop()
        prev = tok
        if held is not None:
            out = _keyword_or_name(held, held_prev, tok)
            prev_type = out.type
            held = None
            yield out
        if ttype not in _SPECIAL:                 # most tokens: nothing to decide
            prev_type = ttype
            yield tok
            continue
        if ttype == "INIT" or ttype in _CLAUSE_KEYWORDS and (prev_type in _STATEMENT_START
                                                             or prev_type in _ENDS_EXPR) \
                or ttype in _PAIRS and prev_type in _ENDS_EXPR:
            held, held_prev = tok, prev_type
            continue
        if ttype in _PAIRS or ttype in _SECONDS and prev_type not in _SECONDS[ttype]:
            tok = Token.new_borrow_pos("NAME", v, tok)
        elif ttype in SOFT_KEYWORDS:
            if prev_type in _STATEMENT_START:
                held, held_prev = tok, prev_type  # a statement starts with it: a keyword unless `=` or `,` follows
                continue
            tok = Token.new_borrow_pos("NAME", v, tok)
        elif ttype in _CLAUSE_KEYWORDS:
            tok = Token.new_borrow_pos("NAME", v, tok)
        prev_type = tok.type
        yield tok
    if held is not None:
        yield _keyword_or_name(held, held_prev, None)


@functools.lru_cache(maxsize=1)
def _lark():
    """Lark's own LALR parser for the grammar, with the same post-lexer and callbacks: what the tables
    are made from (tables.py), and the reference the tests compare the driver with."""
    from lark import Lark

    lark = Lark(
        grammar_path().read_text(),
        parser="lalr",
        lexer="basic",
        postlex=_PostLex(),
        keep_all_tokens=True,
        maybe_placeholders=False,
        transformer=_TRANSFORMER,
        cache=_cache_file(),
    )
    return lark


def _cache_file():
    """Lark caches its grammar analysis (about 70 ms) as a pickle keyed by the grammar's hash; a fresh
    process then starts faster. Unpickling runs code, so the cache lives only in a per-user directory
    that this user owns and nobody else can write: created 0700, refused when it (or the file) is a
    symlink, owned by someone else, or writable by group or others. Otherwise no cache is used; there is
    no shared fallback location."""
    import hashlib
    import os
    import stat

    if os.environ.get("NNDSL_NO_CACHE") or not hasattr(os, "getuid"):
        return False
    text = grammar_path().read_bytes()
    digest = hashlib.sha256(text).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = os.path.join(base, "nndsl")
    uid = os.getuid()
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            return False
        if st.st_mode & 0o077:  # ours, but opened up: close it again before trusting its contents
            os.chmod(d, 0o700)
            if os.lstat(d).st_mode & 0o077:
                return False
        f = os.path.join(d, f"grammar-{digest}.lark.cache")
        try:
            fst = os.lstat(f)
        except FileNotFoundError:
            return f
        if not stat.S_ISREG(fst.st_mode) or fst.st_uid != uid or fst.st_mode & 0o022:
            return False
        return f
    except OSError:
        return False


_HUMAN = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "a new line or `;`",
    "COMP_OP": "a comparison", "ELLIPSIS": "`...`", "MUL_OP": "`*`, `/`, `//`, `%` or `@`",
    "$END": "the end of the file",
}


def _terminal_words() -> dict[str, str]:
    return {**_tables()[5], **_HUMAN}


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
    n = text.count("\n") + 1
    last = text[text.rfind("\n") + 1:]
    return Span(file=file, line=n, col=len(last) + 1, end_line=n, end_col=len(last) + 2)


def _syntax_error(e: UnexpectedInput, file: str, text: str, in_bracket: str = "") -> Diagnostic:
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
    if (tok is not None and tok.type == "$END"):
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
    d = Diagnostic(code="E0001", message=f"unexpected {_found(tok)}", span=span,
                   label=f"expected {_describe_expected(expected, in_bracket)}")
    if tok.type in ("NAME", "NUMBER", "STRING") and in_bracket and "COMMA" in expected:  # noqa: SIM102
        d.help = "separate arguments with `,`"
    elif tok.type == "_NL" and ("RPAR" in expected or "RSQB" in expected):
        d.help = "a bracket is still open here"
    elif tok.type in {"INPUT", "OUTPUT", "BLOCK", "MODEL", "ENSURE", "REPEAT", "IMPORT", "PARAMETRIZATION", "ACT"} and "NAME" in expected:
        d.help = f"`{tok.value}` is a keyword and cannot be used as a name"
    return d


def _tspan(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


_SUFFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}
MAX_INT = 2 ** 62
_NUMBER = re.compile(r"((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)[kMGB]?")


class NumberError(ValueError):
    """A number literal that is malformed or beyond what nndsl represents."""


def parse_number(text: str) -> int | float:
    """A number literal (`3`, `1.5k`, `1e-3`, `3M`). Integers beyond 2**62 and integer-valued literals that
    overflow are refused (NumberError); `1e999` is a float infinity, as in Python."""
    text = text.strip()
    if not _NUMBER.fullmatch(text) or len(text) > 400:
        raise NumberError(f"`{text[:40]}` is not a number" if text else "empty number")
    mult = 1
    if text[-1] in _SUFFIX:
        mult = _SUFFIX[text[-1]]
        text = text[:-1]
    if any(c in text for c in ".eE"):
        v = float(text) * mult
        if mult != 1 and v == v and abs(v) != float("inf") and v == int(v):
            v = int(v)
            if v > MAX_INT:
                raise NumberError(f"{text} is beyond the largest integer, 2**62")
        return v
    digits = text.lstrip("0") or "0"
    if len(digits) > 19:
        raise NumberError("an integer literal beyond 2**62")
    v = int(digits) * mult
    if v > MAX_INT:
        raise NumberError("an integer literal beyond 2**62")
    return v


_VALUE_TOKENS = {"NAME", "NUMBER", "STRING", "COMP_OP", "PLUS", "MINUS", "MUL_OP", "POW", "ELLIPSIS"}


class _Seq(list):
    """A list of children that remembers the span of its brackets."""

    span: Span


class _Key:
    """An init key while its entry is built: its parts and span."""

    __slots__ = ("parts", "span")

    def __init__(self, parts: list[str], span: Span):
        self.parts, self.span = parts, span


def _vals(ch):
    return [c for c in ch if not isinstance(c, str) or c.type in _VALUE_TOKENS]


class _Acted:
    def __init__(self, names: list[str], span: Span):
        self.names, self.span = names, span


class _Claim:
    def __init__(self, kind: str, group: str, span: Span, group_span: Span):
        self.kind, self.group, self.span, self.group_span = kind, group, span, group_span


class _ToAST:
    """Applied inline by the LALR parser (no parse tree is built). With keep_all_tokens every child is
    present, so each node's span runs from its first to its last child, brackets included."""

    def __init__(self, file: str):
        self.file = file
        self.errors: list[Diagnostic] = []   # literal errors: reported, and the parse goes on

    def _s(self, ch) -> Span:
        a, b = ch[0], ch[-1]
        if isinstance(a, str):
            l1, c1 = a.line, a.column
        else:
            l1, c1 = a.span.line, a.span.col
        if isinstance(b, str):
            return Span(self.file, l1, c1, b.end_line, b.end_column)
        return Span(self.file, l1, c1, b.span.end_line, b.span.end_col)

    def _seq(self, ch, items) -> _Seq:
        out = _Seq(items)
        out.span = self._s(ch) if ch else Span(file=self.file, line=1, col=1, end_line=1, end_col=1)
        return out

    # -- top level
    def start(self, ch):
        return A.Module(file=self.file, items=[c for c in ch if not isinstance(c, str)])

    def import_stmt(self, ch):
        v = _vals(ch)
        target, alias = v[0], (str(v[1]) if len(v) > 1 else None)
        if isinstance(target, str) and target.type == "STRING":
            return A.Import(span=self._s(ch), path=_unquote(target), module=None, alias=alias)
        return A.Import(span=self._s(ch), path=None, module=str(target), alias=alias)

    def dotted(self, ch):
        sp = self._s(ch)
        return Token("NAME", ".".join(str(c) for c in _vals(ch)), None, sp.line, sp.col, sp.end_line, sp.end_col)

    def _blockdef(self, ch, is_model):
        v = _vals(ch)
        name = v[0]
        params = list(v[1]) if len(v) == 3 else []
        return A.BlockDef(span=self._s(ch), is_model=is_model, name=str(name),
                          name_span=_tspan(self.file, name), params=params, body=list(v[-1]))

    def block_def(self, ch):
        return self._blockdef(ch, False)

    def model_def(self, ch):
        return self._blockdef(ch, True)

    def act_def(self, ch):
        v = _vals(ch)
        name, arg = v[0], v[1]
        return A.ActDef(span=self._s(ch), name=str(name), name_span=_tspan(self.file, name), arg=str(arg),
                        params=[x for x in v[2:-1] if isinstance(x, A.Param)], body=v[-1])

    def param_list(self, ch):
        return self._seq(ch, _vals(ch))

    def param(self, ch):
        v = _vals(ch)
        return A.Param(span=self._s(ch), name=str(v[0]), type=str(v[1]),
                       type_span=_tspan(self.file, v[1]), default=v[2] if len(v) > 2 else None)

    def body(self, ch):
        return self._seq(ch, [c for c in _vals(ch)])

    # -- statements
    def input_stmt(self, ch):
        v = _vals(ch)
        acted = v.pop() if isinstance(v[-1], _Acted) else None
        return A.Input(span=self._s(ch), name=str(v[0]), name_span=_tspan(self.file, v[0]),
                       shape=list(v[1]), dtype=str(v[2]) if len(v) > 2 else None,
                       acted_by=acted.names if acted else [], acted_span=acted.span if acted else None)

    def acted_by(self, ch):
        names = [t for t in ch if isinstance(t, str) and t.type == "NAME"]
        return _Acted([str(t) for t in names], self._s(ch))

    def claim(self, ch):
        toks = [t for t in ch if isinstance(t, str)]
        return _Claim(toks[0].value, str(toks[-1]), self._s(ch), _tspan(self.file, toks[-1]))

    def group_def(self, ch):
        v = _vals(ch)
        return A.GroupDef(span=self._s(ch), name=str(v[0]), name_span=_tspan(self.file, v[0]), value=v[-1])

    def shape(self, ch):
        return self._seq(ch, [A.Ellipsis(span=_tspan(self.file, c))
                              if isinstance(c, str) and c.type == "ELLIPSIS" else c for c in _vals(ch)])

    def bind_stmt(self, ch):
        if len(ch) == 3:                  # `name = expr`, the commonest statement
            t = ch[0]
            return A.Bind(span=self._s(ch), targets=[t.value], target_spans=[_tspan(self.file, t)], value=ch[2],
                          init=None, sparsity=None)
        v = _vals(ch)
        sp = v.pop() if isinstance(v[-1], A.SparsityClause) else None
        init = v.pop() if isinstance(v[-1], A.InitClause) else None
        names = v[:-1]
        return A.Bind(span=self._s(ch), targets=[n.value for n in names],
                      target_spans=[_tspan(self.file, n) for n in names], value=v[-1], init=init, sparsity=sp)

    def sparsity_clause(self, ch):
        return A.SparsityClause(span=self._s(ch), rule=_vals(ch)[-1])

    def sparsity_stmt(self, ch):
        return A.SparsityStmt(span=self._s(ch), entries=[e for e in _vals(ch) if isinstance(e, A.InitEntry)])

    def init_stmt(self, ch):
        c = _vals(ch)[0]
        return A.InitStmt(span=self._s(ch), entries=c.entries)

    def init_clause(self, ch):
        return A.InitClause(span=self._s(ch), entries=_vals(ch))

    def init_entry(self, ch):
        v = _vals(ch)
        return A.InitEntry(span=self._s(ch), key=v[0].parts, key_span=v[0].span, rule=v[1])

    def init_key(self, ch):
        toks = [t for t in ch if isinstance(t, str) and t.type in ("NAME", "MUL_OP")]
        for t in toks:
            if t.type == "MUL_OP" and t.value != "*":
                self.errors.append(Diagnostic(code="E0001", message=f"unexpected `{t.value}` in an init key",
                                              span=_tspan(self.file, t), label="expected a name or `*`",
                                              help="keys look like `weight`, `linear.weight`, `conv2d.*` or `*.bias`"))
        return _Key([str(t) for t in toks], self._s(ch))

    def output_stmt(self, ch):
        return A.Output(span=self._s(ch), items=_vals(ch))

    def output_item(self, ch):
        v = _vals(ch)
        sp = v.pop() if isinstance(v[-1], A.SparsityClause) else None
        init = v.pop() if isinstance(v[-1], A.InitClause) else None
        if len(v) == 2:
            return A.OutputItem(span=self._s(ch), name=str(v[0]), value=v[1], init=init, sparsity=sp)
        return A.OutputItem(span=self._s(ch), name=None, value=v[0], init=init, sparsity=sp)

    def parametrization_stmt(self, ch):
        return A.Parametrization(span=self._s(ch), rule=_vals(ch)[0])

    def ensure_stmt(self, ch):
        v = _vals(ch)
        c = v[-1] if isinstance(v[-1], _Claim) else None
        return A.Ensure(span=self._s(ch), expr=v[0], claim=c.kind if c else None,
                        group=c.group if c else None, group_span=c.group_span if c else None)

    def if_stmt(self, ch):
        v = _vals(ch)
        orelse = None
        if len(v) > 2:
            orelse = list(v[2]) if isinstance(v[2], list) else [v[2]]
        return A.If(span=self._s(ch), cond=v[0], then=list(v[1]), orelse=orelse)

    # -- expressions
    def cond_expr(self, ch):
        v = _vals(ch)
        return A.Cond(span=self._s(ch), cond=v[0], then=v[1], orelse=v[2])

    def pipe_expr(self, ch):
        v = _vals(ch)
        return A.Pipe(span=self._s(ch), head=v[0], stages=v[1:])

    def repeat_stage(self, ch):
        v = _vals(ch)
        count, rest, var, names = v[0], v[1:], None, None
        if rest and isinstance(rest[0], str) and rest[0].type == "NAME":
            var = str(rest.pop(0))
        if rest and isinstance(rest[0], str) and rest[0].type == "STRING":
            names = _unquote(rest.pop(0))
        return A.Repeat(span=self._s(ch), count=count, var=var, names=names, stages=rest)

    def if_stage(self, ch):
        cut = next((i for i, c in enumerate(ch) if isinstance(c, str) and c.type == "ELSE"), len(ch))
        then = _vals(ch[:cut])
        orelse = _vals(ch[cut:]) if cut < len(ch) else None
        return A.IfStage(span=self._s(ch), cond=then[0], then=then[1:], orelse=orelse)

    def or_expr(self, ch):
        v = _vals(ch)
        left = v[0]
        vals = list(left.values) if isinstance(left, A.BoolOp) and left.op == "or" and left.span.line > 0 else [left]
        return A.BoolOp(span=self._s(ch), op="or", values=vals + [v[1]])

    def and_expr(self, ch):
        v = _vals(ch)
        left = v[0]
        vals = list(left.values) if isinstance(left, A.BoolOp) and left.op == "and" else [left]
        return A.BoolOp(span=self._s(ch), op="and", values=vals + [v[1]])

    def not_expr(self, ch):
        return A.Not(span=self._s(ch), value=_vals(ch)[0])

    def compare(self, ch):
        v = _vals(ch)
        return A.Compare(span=self._s(ch), op=str(v[1]), left=v[0], right=v[2])

    def binop(self, ch):
        v = _vals(ch)
        return A.BinOp(span=self._s(ch), op=v[1].value, left=v[0], right=v[2], op_span=_tspan(self.file, v[1]))

    def neg(self, ch):
        return A.Neg(span=self._s(ch), value=_vals(ch)[1])

    def call(self, ch):                   # postfix "(" [args] ")": the list is the one `args` made
        return A.Call(span=self._s(ch), func=ch[0], args=ch[2] if len(ch) == 4 else [])

    def args(self, ch):
        return [c if type(c) is A.Arg else A.Arg(span=c.span, name=None, value=c)
                for c in ch if not isinstance(c, str)]

    def kwarg(self, ch):
        v = _vals(ch)
        return A.Arg(span=self._s(ch), name=v[0].value, value=v[1])

    def attr(self, ch):
        v = _vals(ch)
        return A.Attr(span=self._s(ch), value=v[0], name=v[1].value)

    def index(self, ch):
        v = _vals(ch)
        return A.Index(span=self._s(ch), value=v[0], index=v[1])

    def number(self, ch):
        span = self._s(ch)
        try:
            value = parse_number(str(ch[0]))
        except NumberError as e:
            self.errors.append(Diagnostic(code="E0004", message=f"invalid number: {e}", span=span,
                                          label="this literal", help="integers may be at most 2**62"))
            value = 0
        return A.Num(span=span, value=value, text=ch[0].value)

    def string(self, ch):
        tok = ch[0]
        try:
            value = _unquote(tok)
        except _EscapeError as e:
            col = tok.column + 1 + e.offset
            span = Span(file=self.file, line=tok.line, col=col, end_line=tok.line, end_col=col + e.length)
            self.errors.append(Diagnostic(code="E0004", message=f"invalid escape `{e.text}` in a string", span=span,
                                          label=e.reason,
                                          help='escapes are \\\\, \\", \\n, \\t, \\r, \\xHH, \\uHHHH, \\UHHHHHHHH and \\N{name}'))
            value = ""
        return A.Str(span=self._s(ch), value=value)

    def true(self, ch):
        return A.Bool(span=self._s(ch), value=True)

    def false(self, ch):
        return A.Bool(span=self._s(ch), value=False)

    def name(self, ch):
        t = ch[0]
        return A.Name(span=Span(self.file, t.line, t.column, t.end_line, t.end_column), id=t.value)

    def list(self, ch):
        return A.ListExpr(span=self._s(ch), items=_vals(ch))

    def paren(self, ch):
        return _vals(ch)[0]


_TRANSFORMER = _ToAST("<string>")  # held by the parser; the file name is set per parse


class _EscapeError(Exception):
    def __init__(self, text: str, offset: int, reason: str):
        self.text, self.offset, self.length, self.reason = text, offset, max(1, len(text)), reason


_SIMPLE_ESC = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a", "b": "\b",
               "f": "\f", "v": "\v"}
_HEX = {"x": 2, "u": 4, "U": 8}


def _unquote(tok) -> str:
    """The value of a string literal. Escapes are decoded here, by hand, so that a malformed one is a
    diagnostic at its column (never a codec error)."""
    s = str(tok)[1:-1]
    if "\\" not in s:
        return s
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = s[i + 1] if i + 1 < n else ""
        if e in _SIMPLE_ESC:
            out.append(_SIMPLE_ESC[e])
            i += 2
        elif e in _HEX:
            k = _HEX[e]
            digits = s[i + 2:i + 2 + k]
            if len(digits) != k or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise _EscapeError(s[i:i + 2 + k], i, f"`\\{e}` needs {k} hex digits")
            cp = int(digits, 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise _EscapeError(s[i:i + 2 + k], i, "not a Unicode scalar value")
            out.append(chr(cp))
            i += 2 + k
        elif e == "N":
            import unicodedata

            end = s.find("}", i)
            if i + 2 >= n or s[i + 2] != "{" or end < 0:
                raise _EscapeError(s[i:i + 3], i, "`\\N` needs a name in braces: `\\N{GREEK SMALL LETTER ALPHA}`")
            try:
                out.append(unicodedata.lookup(s[i + 3:end]))
            except KeyError:
                raise _EscapeError(s[i:end + 1], i, "no character has this name") from None
            i = end + 1
        else:
            raise _EscapeError(s[i:i + 2], i, "unknown escape")
    return "".join(out)


def parse_text(text: str, file: str = "<string>") -> A.Module:
    """Parse `.nn` source. Raises Abort carrying the first Diagnostic on a syntax error."""
    mod, diags = parse_recovering(text, file, max_errors=1)
    if diags:
        raise Abort(diags[0])
    assert mod is not None
    return mod


MAX_SYNTAX_ERRORS = 10


def parse_recovering(text: str, file: str = "<string>", max_errors: int = MAX_SYNTAX_ERRORS,
                     max_nesting: int = MAX_NESTING, fast: bool = True) -> tuple[A.Module | None, list[Diagnostic]]:
    """Parse, reporting every independent syntax error in one pass. After an error the parser drops the
    statement it was in (popping the LALR stack back to the last statement boundary), skips to the end
    of the line and resumes. It stops where recovery would guess: inside an open bracket, on a line with a
    brace, at the end of the file, or after `max_errors`. The cost is one parse plus one line per error.
    Well-formed text takes the fast path (fastparse.py, the same AST) unless `fast` is False; the LALR
    parser reports the rest."""
    if fast:
        from .fastparse import parse_fast

        mod = parse_fast(text, file, max_nesting)
        if mod is not None:
            return mod, []
    diags: list[Diagnostic] = []
    seen: set[int] = set()
    _TRANSFORMER.file = file
    _TRANSFORMER.errors = []
    _LEX.reset(max_nesting)

    def on_error(e: UnexpectedInput) -> bool:
        seen.add(id(e))
        d = _syntax_error(e, file, text, _LEX.open_before)
        diags.append(d)
        line = getattr(getattr(e, "token", None), "line", None) or getattr(e, "line", 0)
        if len(diags) + len(_TRANSFORMER.errors) >= max_errors or (_LEX.open_since and _LEX.open_since != line):
            return False  # inside a bracket opened on an earlier line: where the statement ends is a guess
        return True

    mod = None
    try:
        mod = _parse(text, on_error)
    except UnexpectedInput as e:
        if id(e) not in seen:
            diags.append(_syntax_error(e, file, text, _LEX.open_before))
    except _NestingTooDeep as e:
        diags.append(Diagnostic(code="E0112", message=f"brackets nested more than {max_nesting} deep",
                                span=_tspan(file, e.token), label="nesting limit reached here",
                                help="split the expression into several bindings"))
    except Abort as e:
        diags.append(e.diagnostic)
    diags = sorted(diags + _TRANSFORMER.errors, key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))
    diags = diags[:max(1, max_errors)]
    return (mod if not diags else None), diags


def _parse(text: str, on_error=None):
    """Parse `text` with Lark's LALR table and callbacks, through nndsl's own lexer and driver loop (Lark
    builds the table; this loop runs it, several times faster than Lark's per-token machinery). On a
    syntax error `on_error(e)` is asked whether to go on (an UnexpectedToken / UnexpectedCharacters, named
    and shaped as Lark's); if so, the statement in progress is dropped and parsing resumes at the end of
    the line (see `_recover`). Without `on_error` the first error is raised."""
    tables = _tables()
    states, start = tables[0], tables[1]
    ss, vs = [start], []
    pos, line, line_start, prev = 0, 1, 0, None
    while True:
        try:
            return _run(text, pos, line, line_start, prev, ss, vs, tables)
        except UnexpectedInput as e:
            if on_error is None or not on_error(e):
                raise
            resume = _recover(e, text, ss, vs)
            if resume is None:
                raise
            pos, line, line_start, prev = resume


def _run(text, pos, line, line_start, prev, ss, vs, tables):
    """The LALR loop from one lexer position to the end (or the first error). Chains of single-child rules
    (`expr -> ... -> atom`) are taken without a call."""
    states, _, end, scanner, chains, _ = tables
    token = None
    for token in _postlex(_lex(text, pos, line, line_start, scanner), prev):
        ttype = token.type
        while True:
            try:
                shift, arg = states[ss[-1]][ttype]
            except KeyError:
                raise _unexpected(token, ss, states) from None
            if shift:
                ss.append(arg)
                vs.append(token)
                break
            size, origin, cb = arg
            if cb is None:                           # a chain of single children passed up, in one step
                key = (ss[-2], ss[-1], ttype)
                top = chains.get(key)
                if top is None:
                    top = chains[key] = _chain(states, ss[-2], ss[-1], ttype)
                ss[-1] = top
                continue
            if size:
                s = vs[-size:]
                del ss[-size:]
                del vs[-size:]
                vs.append(cb(s))
            else:
                vs.append(cb([]))
            ss.append(states[ss[-1]][origin][1])
    token = Token.new_borrow_pos("$END", "", token) if token else Token("$END", "", 0, 1, 1)
    while True:
        try:
            shift, arg = states[ss[-1]]["$END"]
        except KeyError:
            raise _unexpected(token, ss, states) from None
        if shift:
            raise _unexpected(token, ss, states)
        size, origin, cb = arg
        if cb is None:
            ss.pop()
        else:
            s = vs[-size:] if size else []
            if size:
                del ss[-size:]
                del vs[-size:]
            vs.append(cb(s))
        ss.append(states[ss[-1]][origin][1])
        if ss[-1] == end:
            return vs[-1]


_new_str = str.__new__


def _lex(text: str, pos: int, line: int, line_start: int, scanner):
    """Tokens of `text` from `pos`: Lark's terminals in Lark's order as one regular expression, keywords
    told from names as Lark tells them, positions as Lark's line counter gives them. Raises
    UnexpectedCharacters where no terminal matches. The expression takes the blanks before a token in the
    same match (see `_tables`)."""
    match, name_type, keywords, ignore, multiline = scanner
    n = len(text)
    while pos < n:
        m = match(text, pos)
        if m is None:
            raise UnexpectedCharacters(text, pos, line, pos - line_start + 1)
        typ, end = m.lastgroup, m.end()
        if typ in ignore:
            if typ in multiline and "\n" in m.group():
                v = m.group()
                line += v.count("\n")
                line_start = pos + v.rindex("\n") + 1
            pos = end
            continue
        v = m.group(typ)
        pos = end - len(v)
        if typ == name_type:
            typ = keywords.get(v, typ)
        t = _new_str(Token, v)
        t.type, t.value, t.start_pos, t.line, t.column = typ, v, pos, line, pos - line_start + 1
        if typ in multiline and "\n" in v:
            line += v.count("\n")
            line_start = pos + v.rindex("\n") + 1
        t.end_line, t.end_column, t.end_pos = line, end - line_start + 1, end
        yield t
        pos = end


def _chain(states, below: int, top: int, ttype: str) -> int:
    """Where a chain of single-child reductions (`atom -> postfix -> ... -> expr`) ends before `ttype`: each
    pops one state and pushes one, so the state beneath stays `below` and the end depends only on
    (below, top, ttype); the driver remembers it per triple."""
    while True:
        action = states[top].get(ttype)
        if action is None or action[0] or action[1][2] is not None:
            return top
        top = states[below][action[1][1]][1]


def _unexpected(token, ss, states) -> UnexpectedToken:
    expected = {s for s in states[ss[-1]] if s.isupper()}
    return UnexpectedToken(token, expected)


@functools.lru_cache(maxsize=1)
def _tables():
    """The driver's tables (see tables.py): per state and token (shift?, target state or reduction), each
    reduction as (size, rule name, callback or None for a single child passed up); the start and end
    states; the lexer (one regular expression over the terminals in Lark's order, keywords folded into
    NAME); a memo of reduction chains; the terminals' words for messages."""
    from . import tables

    data = tables.load()
    reductions = [(size, origin, None if expand1 and size == 1 and expand is None
                   else _callback(name, expand1, expand, _TRANSFORMER))
                  for origin, size, name, expand1, expand in data["rules"]]
    states = {st: {tok: (True, arg) if shift else (False, reductions[arg]) for tok, (shift, arg) in row.items()}
              for st, row in enumerate(data["states"])}
    terminals = dict(data["terminals"])
    # Blanks before a token are taken in the same match, as the WS terminal would take them: only where a
    # blank other than \r starts (there Lark's lexer can match nothing but WS; at \r it tries `\r\n` as a
    # newline first). Half the matches of a spec are blanks.
    blanks = r"(?:[ \t\f][ \t\f\r]*)?" if terminals.get("WS") == "[ \t\x0c\r]+" and "WS" in data["ignore"] else ""
    master = re.compile(blanks + "(?:" + "|".join(f"(?P<{name}>{rx})" for name, rx in data["terminals"]) + ")",
                        data["flags"])
    scan = (master.match, data["name"], data["keywords"], frozenset(data["ignore"]), frozenset(data["newline"]))
    return states, data["start"], data["end"], scan, {}, data["words"]


class _Inlined(list):
    """The children of an `_inlined` rule (`_stmt`, Lark's `__body_star_3`), spliced into its parent's."""


def _callback(name: str | None, expand1: bool, expand: list | None, transformer):
    """How a rule builds its value, as Lark's parse-tree builder does with keep_all_tokens: the
    transformer's method (or the children kept for the parent to splice), a single child passed through
    for `?rule`, and the children of inlined rules spliced in. None: a single child passed up as it is."""
    f = getattr(transformer, name) if name is not None else _Inlined
    if expand1:
        if expand is None and f is not _Inlined:
            inner = f
            f = lambda ch: ch[0] if len(ch) == 1 else inner(ch)  # noqa: E731
        elif expand is None:
            f = lambda ch: ch[0] if len(ch) == 1 else _Inlined(ch)  # noqa: E731
    if expand is not None:
        fast = None if expand1 else _splicer(tuple(expand), f)
        if fast is not None:
            return fast
        build, single = f, expand1

        def f(ch):
            out = None
            for c, splice in zip(ch, expand):
                if out is None:          # a left-recursive list (`a: a _NL b`) grows in place, as in Lark
                    out = c if splice else [c]
                elif splice:
                    out += c
                else:
                    out.append(c)
            if single and len(out) == 1:
                return out[0]
            return out if build is _Inlined and type(out) is _Inlined else build(out)
    return f


def _splicer(expand: tuple, build):
    """The builders of the commonest list rules, written out (what the general loop in `_callback` does for
    them, without the loop): a left-recursive list growing in place by a separator and an item or a
    spliced part (`__body_star: __body_star _NL _stmt`, `__args_star: __args_star "," arg`), and an item
    followed by a spliced part (`args: arg __args_star`). None for the others."""
    inlined = build is _Inlined
    if expand == (True, False, True) and inlined:
        def grow(ch):
            out, sep, more = ch
            out.append(sep)
            out += more
            return out if type(out) is _Inlined else _Inlined(out)
        return grow
    if expand == (True, False, False) and inlined:
        def append(ch):
            out, sep, item = ch
            out.append(sep)
            out.append(item)
            return out if type(out) is _Inlined else _Inlined(out)
        return append
    if expand == (False, True):
        return lambda ch: build([ch[0], *ch[1]])
    return None


def _recover(e: UnexpectedInput, text: str, ss: list, vs: list):
    """After an error: drop the statement in progress (pop the stacks back to the last statement boundary)
    and resume lexing at the end of the line. Returns (pos, line, line_start, previous token) to resume
    from, or None where recovery would guess: at the end of the file, or on a line with a brace."""
    tok = getattr(e, "token", None)
    if (tok is not None and tok.type == "$END"):
        return None
    pos = tok.start_pos if tok is not None else e.pos_in_stream
    if pos is None:
        return None
    start = text.rfind("\n", 0, pos) + 1
    eol = text.find("\n", pos)
    eol = len(text) if eol < 0 else eol
    line_text = _STRINGS_COMMENTS.sub("", text[start:eol])
    if "{" in line_text or "}" in line_text:
        return None
    while vs and not (isinstance(vs[-1], str) and vs[-1].type in ("_NL", "LBRACE")):
        vs.pop()
        ss.pop()
    if vs and vs[-1].type == "_NL":
        vs.pop()
        ss.pop()
        prev = Token("NAME", "_")        # a statement ended here: the next newline separates
    else:
        prev = vs[-1] if vs else None    # after `{` or at the top of the file: newlines are dropped
    line = text.count("\n", 0, start) + 1 if tok is None or tok.line is None else tok.line
    return eol, line, start, prev


_STRINGS_COMMENTS = re.compile(r'"([^"\\\n]|\\.)*"|#[^\n]*')


def parse_file(path: str | Path) -> A.Module:
    p = Path(path)
    return parse_text(p.read_text(encoding="utf-8"), str(path))
