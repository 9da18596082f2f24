"""Construct pydantic models on hot paths without re-validation."""
from __future__ import annotations

_DEFAULTS: dict[type, dict] = {}
_set = object.__setattr__


def make(cls, **values):
    """Build a model from values the parser already guarantees, without validation: what
    `model_construct` does, minus its per-call default resolution (the parser's hot path)."""
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {k: f.default for k, f in cls.model_fields.items() if not f.is_required()}
    obj = cls.__new__(cls)
    fields_set = set(values)
    # field order as declared, so dumps of constructed and validated models are identical
    values = {k: values[k] if k in values else defaults[k] for k in cls.model_fields}
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", fields_set)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
