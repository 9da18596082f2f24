"""Construct pydantic models on hot paths without re-validation."""
from __future__ import annotations

_FIELDS: dict[type, tuple[dict, tuple[str, ...]]] = {}
_set = object.__setattr__


def make(cls, **values):
    """Build a model from values the parser already guarantees, without validation: what
    `model_construct` does, minus its per-call default resolution (the parser's hot path)."""
    spec = _FIELDS.get(cls)
    if spec is None:
        fields = cls.model_fields
        # every field in declared order (so dumps of constructed and validated models are identical);
        # required ones hold a placeholder that `values` always replaces
        template = {k: None if f.is_required() else f.get_default(call_default_factory=True)
                    for k, f in fields.items()}
        # a mutable default is copied for each object, as pydantic does (facets dicts must not be shared)
        fresh = tuple(k for k, v in template.items() if isinstance(v, (list, dict, set)))
        spec = _FIELDS[cls] = (template, fresh)
    template, fresh = spec
    obj = cls.__new__(cls)
    d = template.copy()
    d.update(values)
    for k in fresh:
        if k not in values:
            d[k] = d[k].copy()
    _set(obj, "__dict__", d)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


_new = object.__new__


def from_fields(cls, fields: dict):
    """A model from a dict that holds every field, in declared order (the caller's literal guarantees
    both; tests compare the JSON of such objects with validated ones): the parser's commonest nodes, built
    without keyword packing or defaults."""
    obj = _new(cls)
    _set(obj, "__dict__", fields)
    _set(obj, "__pydantic_fields_set__", set(fields))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
