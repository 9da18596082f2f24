"""Facets: typed records that passes attach to parameters, nodes and edges of the IR.

A facet is a pydantic model declared once, in its own module under nndsl/facets/, with the slot it fills
and where it may go:

    class Layout(Facet, slot="layout", on=("param",)):
        kind: Literal["dense", "masked", "structured"] = "dense"

The pass that computes it calls `attach(holder, Layout(...))`; any backend reads `holder.facets["layout"]`.
Holders are `ParamSpec`, `ir.Node` and `ir.EdgeAttr`, each with a `facets` dict; `attach` checks that the
facet is registered for that kind of holder, so a slot has one type everywhere. Adding a facet means one
module here plus the pass that fills it (docs/architecture.md walks through one).
"""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

FACETS: dict[str, type["Facet"]] = {}
HOLDERS = ("param", "node", "edge")


class Facet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    slot: ClassVar[str] = ""
    on: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, slot: str = "", on: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not slot:
            return
        if slot in FACETS:
            raise ValueError(f"facet slot {slot!r} is declared twice ({FACETS[slot].__name__}, {cls.__name__})")
        bad = set(on) - set(HOLDERS)
        if not on or bad:
            raise ValueError(f"facet {cls.__name__}: `on` must name some of {HOLDERS}, got {on}")
        cls.slot, cls.on = slot, tuple(on)
        FACETS[slot] = cls


def holder_kind(holder: Any) -> str:
    from ..ir import EdgeAttr, Node
    from ..recipe import ParamSpec

    if isinstance(holder, ParamSpec):
        return "param"
    if isinstance(holder, Node):
        return "node"
    if isinstance(holder, EdgeAttr):
        return "edge"
    raise TypeError(f"{type(holder).__name__} holds no facets")


def attach(holder: Any, facet: Facet) -> None:
    """Put `facet` in its slot on a parameter, node or edge (replacing what a pass put there before)."""
    cls = FACETS.get(type(facet).slot)
    if cls is None or not isinstance(facet, cls):
        raise TypeError(f"{type(facet).__name__} is not a registered facet")
    kind = holder_kind(holder)
    if kind not in cls.on:
        raise TypeError(f"facet `{cls.slot}` goes on {', '.join(cls.on)}, not on a {kind}")
    holder.facets[cls.slot] = facet


def dump(facets: dict) -> dict:
    """The facets of one holder as JSON-ready data (for `summary --json` and the IR's JSON)."""
    return {slot: f.model_dump(mode="json") for slot, f in facets.items()}


def load(data: dict) -> dict:
    """Facets back from `dump`'s data; slots this version does not know are dropped."""
    _load_all()
    return {slot: FACETS[slot].model_validate(v) for slot, v in data.items() if slot in FACETS}


def _load_all() -> None:
    from . import init, layout, scaling, signal, topology  # noqa: F401
