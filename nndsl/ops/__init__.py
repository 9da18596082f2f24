"""Operations: one declaration per op (see registry.py)."""
from .registry import (OPS, Attr, Lowered, LowerCtx, OpDef, OpError, ParamSpec, all_names, attr_span, draw_kind, get,
                       register, suggest)

__all__ = ["OPS", "Attr", "Lowered", "LowerCtx", "OpDef", "OpError", "ParamSpec", "all_names", "attr_span", "draw_kind",
           "get", "register", "suggest"]
