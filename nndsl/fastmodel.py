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
        defaults = {k: f.get_default(call_default_factory=True) for k, f in fields.items() if not f.is_required()}
        # a mutable default is copied for each object, as pydantic does (facets dicts must not be shared)
        fresh = tuple(k for k, v in defaults.items() if isinstance(v, (list, dict, set)))
        spec = _FIELDS[cls] = (tuple(fields), defaults, fresh)
    names, defaults, fresh = spec
    obj = cls.__new__(cls)
    # field order as declared, so dumps of constructed and validated models are identical
    d = {k: values[k] if k in values else defaults[k] for k in names}
    for k in fresh:
        if k not in values:
            d[k] = d[k].copy()
    _set(obj, "__dict__", d)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
