"""Symbolic dims: integer polynomials over named symbols, with floor division and modulo.

A `Dim` is immutable and kept in a canonical form, so equality is structural: `H*2 + 1` and
`1 + 2*H` are the same Dim. Floor division and modulo by a constant that divides every coefficient
simplify exactly; otherwise they become opaque atoms (`(H - 1) // 2`), which is enough for the
shape rules of convolutions and pools. Divisibility facts (`ensure D % heads == 0`) let
`(D // heads) * heads` simplify back to `D`.
"""
from __future__ import annotations

import re
from functools import reduce
from typing import Union

IntLike = Union[int, "Dim"]


# -- scoped symbols ------------------------------------------------------------------------------
# A dim a model declares (`B`, `T`) is a symbol of the model's scope, named as written. A dim a block
# declares is local to each instance of the block: `H` of the instance `layer1.0` is the symbol
# (H, layer1.0), bound by unification when the instance is called.
class Sym(str):
    """A dim symbol: the name as the user wrote it and the block instance it belongs to (`scope`; None for
    a dim of the model itself). A symbol is its own key: it compares and hashes as its canonical text,
    `H@layer1.0` (`B` for a model dim), so facts, bindings, `--dim` values and JSON dumps key on it
    directly, while passes read `.name` and `.scope` instead of taking text apart. Only this class knows
    how a scope is written into that text."""

    __slots__ = ("name", "scope")

    def __new__(cls, name: str, scope: str | None = None):
        s = str.__new__(cls, name if scope is None else f"{name}@{scope or '_'}")
        s.name, s.scope = name, scope
        return s

    @staticmethod
    def of(sym: str) -> "Sym":
        """The symbol whose canonical text is `sym` (a Sym is returned as it is)."""
        if type(sym) is Sym:
            return sym
        name, at, scope = sym.partition("@")
        return Sym(name, (scope if scope != "_" else "") if at else None)

    @property
    def is_local(self) -> bool:
        """The symbol belongs to a block instance (unification binds it), not to the model."""
        return self.scope is not None

    def __getnewargs__(self):
        return (self.name, self.scope)

    def __repr__(self) -> str:
        return f"Sym({self.name!r}, {self.scope!r})"


def scoped(name: str, scope: str | None) -> Sym:
    """The symbol of dim `name` declared in the block instance `scope` (None: the model's own)."""
    return Sym(name, scope)


def sym_name(sym: str) -> str:
    """The dim's name as the user wrote it."""
    return Sym.of(sym).name


def is_local(sym: str) -> bool:
    """The symbol belongs to a block instance (unification binds it), not to the model."""
    return Sym.of(sym).scope is not None


_SCOPE = re.compile(r"@[A-Za-z0-9_.@]+")


def display(text: str) -> str:
    """`text` with every symbol shown by its name only (diagnostics speak the user's names)."""
    return _SCOPE.sub("", text)
_ATOM_ORDER = {"s": 0, "f": 1, "m": 2}


class Atom(tuple):
    """('s', name) | ('f', num, den) | ('m', num, den)."""

    def key(self) -> tuple:
        if self[0] == "s":
            return (0, self[1])
        return (_ATOM_ORDER[self[0]], str(self[1]), str(self[2]))

    def __str__(self) -> str:
        if self[0] == "s":
            return self[1]
        op = "//" if self[0] == "f" else "%"
        return f"{_paren(self[1])} {op} {_paren(self[2])}"


def _paren(d: "Dim") -> str:
    s = str(d)
    return s if d.is_atomic() else f"({s})"


class Dim:
    __slots__ = ("terms", "_h")

    def __init__(self, terms: dict):
        # terms: {monomial(tuple of (Atom, power)): coeff}; zero coefficients dropped
        items = [(m, c) for m, c in terms.items() if c != 0]
        if len(items) > 1:
            items.sort(key=lambda t: _mkey(t[0]))
        self.terms = tuple(items)
        self._h = hash(self.terms)

    @staticmethod
    def _raw(terms: tuple) -> "Dim":
        """From terms already in canonical order (no zero coefficients)."""
        d = Dim.__new__(Dim)
        d.terms = terms
        d._h = hash(terms)
        return d

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def const(n: int) -> "Dim":
        n = int(n)
        d = _CONSTS.get(n)
        if d is None:
            d = Dim._raw((((), n),)) if n else _ZERO
            if -1024 <= n <= 1 << 20:
                _CONSTS[n] = d
        return d

    @staticmethod
    def sym(name: str) -> "Dim":
        return Dim({((Atom(("s", Sym.of(name))), 1),): 1})

    @staticmethod
    def of(x: IntLike) -> "Dim":
        if type(x) is Dim:
            return x
        if isinstance(x, bool) or not isinstance(x, int):
            raise TypeError(f"not a dim: {x!r}")
        return Dim.const(x)

    # -- queries -----------------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return not self.terms or (len(self.terms) == 1 and self.terms[0][0] == ())

    @property
    def value(self) -> int:
        if not self.terms:
            return 0
        if self.is_const:
            return self.terms[0][1]
        raise ValueError(f"dim {self} is symbolic")

    def as_int(self) -> int | None:
        return self.value if self.is_const else None

    def is_atomic(self) -> bool:
        if self.is_const:
            return self.value >= 0
        return len(self.terms) == 1 and self.terms[0][1] == 1 and len(self.terms[0][0]) == 1 and self.terms[0][0][0][1] == 1 and self.terms[0][0][0][0][0] == "s"

    def symbol_name(self) -> Sym | None:
        """The symbol when this Dim is a bare one, else None."""
        if len(self.terms) == 1:
            mono, c = self.terms[0]
            if c == 1 and len(mono) == 1 and mono[0][1] == 1 and mono[0][0][0] == "s":
                return mono[0][0][1]
        return None

    def free_symbols(self) -> set[Sym]:
        out: set[Sym] = set()
        for mono, _ in self.terms:
            for atom, _p in mono:
                if atom[0] == "s":
                    out.add(atom[1])
                else:
                    out |= atom[1].free_symbols() | atom[2].free_symbols()
        return out

    def content(self) -> int:
        """gcd of all coefficients (the largest constant that divides this Dim exactly)."""
        from math import gcd

        return reduce(gcd, (abs(c) for _, c in self.terms), 0)

    # -- arithmetic ----------------------------------------------------------------------------
    def __add__(self, other: IntLike) -> "Dim":
        other = Dim.of(other)
        if not other.terms:
            return self
        if not self.terms:
            return other
        if self.is_const and other.is_const:
            return Dim.const(self.value + other.value)
        t = dict(self.terms)
        for m, c in other.terms:
            t[m] = t.get(m, 0) + c
        return Dim(t)

    __radd__ = __add__

    def __neg__(self) -> "Dim":
        return Dim({m: -c for m, c in self.terms})

    def __sub__(self, other: IntLike) -> "Dim":
        return self + (-Dim.of(other))

    def __rsub__(self, other: IntLike) -> "Dim":
        return Dim.of(other) - self

    def __mul__(self, other: IntLike) -> "Dim":
        other = Dim.of(other)
        # fast paths: a constant factor scales the coefficients and keeps the canonical order
        if other.is_const or self.is_const:
            k, d = (other.value, self) if other.is_const else (self.value, other)
            if k == 0:
                return _ZERO
            if k == 1:
                return d
            if d.is_const:
                return Dim.const(d.value * k)
            return Dim._raw(tuple((m, c * k) for m, c in d.terms))
        t: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = _mono_mul(m1, m2)
                t[m] = t.get(m, 0) + c1 * c2
        return Dim(t)

    __rmul__ = __mul__

    def floordiv(self, other: IntLike, facts: "Facts | None" = None) -> "Dim":
        other = Dim.of(other)
        if other.is_const:
            k = other.value
            if k == 0:
                raise ZeroDivisionError("division of a dim by zero")
            if self.is_const:
                return Dim.const(self.value // k)
            if self.content() % k == 0:
                return Dim({m: c // k for m, c in self.terms})
            # split off a constant term: (a*k + r) // k == a + r // k when the rest divides by k
            const = dict(self.terms).get((), 0)
            rest = self - const
            if const and rest.content() % k == 0:
                return Dim({m: c // k for m, c in rest.terms}) + const // k
        if facts is not None and facts.divides(other, self):
            q = _exact_quotient(self, other)
            if q is not None:
                return q
        return Dim({((Atom(("f", self, other)), 1),): 1})

    def __floordiv__(self, other: IntLike) -> "Dim":
        return self.floordiv(other)

    def __rfloordiv__(self, other: IntLike) -> "Dim":
        return Dim.of(other).floordiv(self)

    def mod(self, other: IntLike, facts: "Facts | None" = None) -> "Dim":
        other = Dim.of(other)
        if other.is_const:
            k = other.value
            if k == 0:
                raise ZeroDivisionError("modulo of a dim by zero")
            if self.is_const:
                return Dim.const(self.value % k)
            if self.content() % k == 0:
                return _ZERO
        if facts is not None and facts.divides(other, self):
            return _ZERO
        if self == other:
            return _ZERO
        return Dim({((Atom(("m", self, other)), 1),): 1})

    def __mod__(self, other: IntLike) -> "Dim":
        return self.mod(other)

    def __rmod__(self, other: IntLike) -> "Dim":
        return Dim.of(other).mod(self)

    # -- substitution ----------------------------------------------------------------------------
    def subs(self, mapping: dict[str, "Dim"], facts: "Facts | None" = None) -> "Dim":
        if not mapping or not (self.free_symbols() & mapping.keys()):
            return self
        total = _ZERO
        for mono, c in self.terms:
            term = Dim.const(c)
            for atom, p in mono:
                if atom[0] == "s":
                    base = mapping.get(atom[1], Dim.sym(atom[1]))
                elif atom[0] == "f":
                    base = atom[1].subs(mapping, facts).floordiv(atom[2].subs(mapping, facts), facts)
                else:
                    base = atom[1].subs(mapping, facts).mod(atom[2].subs(mapping, facts), facts)
                for _ in range(p):
                    term = term * base
            total = total + term
        return facts.simplify(total) if facts is not None else total

    # -- comparison, hashing, printing -----------------------------------------------------------
    def __eq__(self, other) -> bool:
        if isinstance(other, bool):
            return False
        if isinstance(other, int):
            return self.is_const and self.value == other
        return isinstance(other, Dim) and self.terms == other.terms

    def __hash__(self) -> int:
        return self._h

    def __repr__(self) -> str:
        return f"Dim({str(self)!r})"

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts: list[tuple[int, str]] = []
        for mono, c in self.terms:
            if mono == ():
                parts.append((c, str(abs(c))))
                continue
            factors = []
            alone = len(mono) == 1 and mono[0][1] == 1 and c == 1  # `-B // 2` would read as (-B) // 2
            for atom, p in mono:
                a = str(atom) if atom[0] == "s" or alone else f"({atom})"
                factors.extend([a] * p)
            body = "*".join(factors)
            if abs(c) != 1:
                body = f"{abs(c)}*{body}"
            parts.append((c, body))
        # symbolic terms first, constant last
        parts = [p for p in parts if not p[1].isdigit()] + [p for p in parts if p[1].isdigit()]
        out = ("-" if parts[0][0] < 0 else "") + parts[0][1]
        for c, body in parts[1:]:
            out += (" - " if c < 0 else " + ") + body
        if len(self.terms) == 1 and len(self.terms[0][0]) == 1 and self.terms[0][1] == 1:
            atom = self.terms[0][0][0][0]
            if atom[0] != "s" and self.terms[0][0][0][1] == 1:
                return str(atom)
        return out


def _mkey(mono) -> tuple:
    return (len(mono) == 0, tuple((a.key(), p) for a, p in mono))


def _mono_mul(m1, m2):
    d: dict = {}
    for a, p in m1 + m2:
        d[a] = d.get(a, 0) + p
    return tuple(sorted(d.items(), key=lambda t: t[0].key()))


def _exact_quotient(num: Dim, den: Dim) -> Dim | None:
    """num / den when den divides every term of num as a monomial with coefficient."""
    if den.is_const:
        k = den.value
        if num.content() % k == 0:
            return Dim({m: c // k for m, c in num.terms})
        return None
    if len(den.terms) != 1:
        return None
    dm, dc = den.terms[0]
    out: dict = {}
    for m, c in num.terms:
        md = dict(m)
        for a, p in dm:
            if md.get(a, 0) < p:
                return None
            md[a] -= p
        if c % dc:
            return None
        mono = tuple(sorted(((a, p) for a, p in md.items() if p), key=lambda t: t[0].key()))
        out[mono] = out.get(mono, 0) + c // dc
    return Dim(out)


_ZERO = Dim({})
_CONSTS: dict[int, Dim] = {}


class Facts:
    """Divisibility facts `den | num` collected from `ensure num % den == 0`."""

    def __init__(self) -> None:
        self.pairs: set[tuple[Dim, Dim]] = set()

    def add(self, num: Dim, den: Dim) -> None:
        self.pairs.add((num, den))

    def simplify(self, d: Dim) -> Dim:
        """Rewrite k*(X // k) to X where a fact says k divides X: `(E // 4) * 4` is `E` under
        `ensure E % 4 == 0`. Facts are passed to whoever needs them; no arithmetic reads them from a
        global."""
        if not self.pairs or d.is_const:
            return d
        out = _ZERO
        changed = False
        for mono, c in d.terms:
            term = Dim({mono: c})
            for atom, p in mono:
                if atom[0] == "f" and p == 1 and atom[2].is_const and c % atom[2].value == 0 \
                        and self.divides(atom[2], atom[1]):
                    rest = tuple(x for x in mono if x[0] != atom)
                    term = Dim({rest: c // atom[2].value}) * atom[1]
                    changed = True
                    break
            out = out + term
        return out if changed else d

    def divides(self, den: Dim, num: Dim) -> bool:
        if (num, den) in self.pairs:
            return True
        q = _exact_quotient(num, den)
        if q is not None and not any(a[0] != "s" for m, _ in q.terms for a, _p in m):
            return True
        # num = a*den' where (den' , den) is a fact
        for fnum, fden in self.pairs:
            if fden == den:
                q = _exact_quotient(num, fnum)
                if q is not None:
                    return True
        return False


# -- parsing back from text (used by the JSON round trip) ---------------------------------------
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*(?:@[A-Za-z0-9_.@]+)?)|(//|[-+*%()]))")


def parse_dim(text: str) -> Dim:
    toks: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read dim expression {text!r}")
        pos = m.end()
        if m.group(1):
            toks.append(("num", m.group(1)))
        elif m.group(2):
            toks.append(("name", m.group(2)))
        else:
            toks.append(("op", m.group(3)))
    toks.append(("end", ""))
    return _DimReader(toks, text).read()


class _DimReader:
    """Recursive descent over the tokens of a dim expression (methods, not nested closures: closures that
    call each other form reference cycles, and the front end runs with the cyclic GC off)."""

    def __init__(self, toks: list[tuple[str, str]], text: str):
        self.toks, self.i, self.text = toks, 0, text

    def read(self) -> Dim:
        d = self.expr()
        if self.peek()[0] != "end":
            raise ValueError(f"cannot read dim expression {self.text!r}")
        return d

    def peek(self):
        return self.toks[self.i]

    def take(self):
        self.i += 1
        return self.toks[self.i - 1]

    def expr(self) -> Dim:
        d = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            d = d + self.term() if op == "+" else d - self.term()
        return d

    def term(self) -> Dim:
        d = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "//", "%"):
            op = self.take()[1]
            r = self.unary()
            d = d * r if op == "*" else d.floordiv(r) if op == "//" else d.mod(r)
        return d

    def unary(self) -> Dim:
        if self.peek() == ("op", "-"):
            self.take()
            return -self.unary()
        kind, val = self.take()
        if kind == "num":
            return Dim.const(int(val))
        if kind == "name":
            return Dim.sym(val)
        if (kind, val) == ("op", "("):
            d = self.expr()
            if self.take() != ("op", ")"):
                raise ValueError(f"cannot read dim expression {self.text!r}")
            return d
        raise ValueError(f"cannot read dim expression {self.text!r}")
