"""Values of the elaborator: tensors (graph references) next to plain numbers, strings, lists and Dims."""
from __future__ import annotations

from dataclasses import dataclass

from .dims import Dim


@dataclass(frozen=True)
class TensorVal:
    node: str
    port: int = 0


@dataclass(frozen=True)
class TupleVal:
    items: tuple[TensorVal, ...]


class SizedList(list):
    """A list value of the evaluator that knows its total size (elements, nested lists' elements and
    string characters), computed once from its items, so size limits cost O(items) per list built."""

    __slots__ = ("size",)

    def __init__(self, items=()):
        super().__init__(items)
        self.size = sum(value_size(x) for x in self)


def value_size(v) -> int:
    if isinstance(v, SizedList):
        return v.size
    if isinstance(v, list):
        return sum(value_size(x) for x in v)
    if isinstance(v, str):
        return max(1, len(v))
    return 1


def describe(v) -> str:
    if isinstance(v, TensorVal):
        return "a tensor"
    if isinstance(v, TupleVal):
        return f"a tuple of {len(v.items)} tensors"
    if isinstance(v, bool):
        return "a bool"
    if isinstance(v, int):
        return "an int"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, Dim):
        return "an int" if v.is_const else "a symbolic dim"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__


def encode(v):
    """JSON-able form (for IR serialisation)."""
    if isinstance(v, TensorVal):
        return {"$tensor": [v.node, v.port]}
    if isinstance(v, TupleVal):
        return {"$tuple": [encode(x) for x in v.items]}
    if isinstance(v, Dim):
        return {"$dim": str(v)}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    return v


def decode(v):
    from .dims import parse_dim

    if isinstance(v, dict):
        if "$tensor" in v:
            return TensorVal(v["$tensor"][0], v["$tensor"][1])
        if "$tuple" in v:
            return TupleVal(tuple(decode(x) for x in v["$tuple"]))
        if "$dim" in v:
            return parse_dim(v["$dim"])
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v
