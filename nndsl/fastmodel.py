"""Construct pydantic models on hot paths without re-validation."""
from __future__ import annotations

_FIELDS: dict[type, tuple[tuple[str, ...], dict]] = {}
_set = object.__setattr__


def make(cls, **values):
    """Build a model from values the parser already guarantees, without validation: what
    `model_construct` does, minus its per-call default resolution (the parser's hot path)."""
    spec = _FIELDS.get(cls)
    if spec is None:
        fields = cls.model_fields
        spec = _FIELDS[cls] = (tuple(fields), {k: f.default for k, f in fields.items() if not f.is_required()})
    names, defaults = spec
    obj = cls.__new__(cls)
    # field order as declared, so dumps of constructed and validated models are identical
    d = {k: values[k] if k in values else defaults[k] for k in names}
    _set(obj, "__dict__", d)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
