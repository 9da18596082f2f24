"""Construct pydantic models on hot paths without re-validation."""
from __future__ import annotations

_FIELDS: dict[type, tuple[dict, tuple[str, ...]]] = {}
_set = object.__setattr__


def make(cls, **values):
    """Build a model from values the caller already guarantees, without validation: what
    `model_construct` does, minus its per-call default resolution. Every field is in the object's dict
    (defaults filled in), so it shares the class's fields-set (see from_fields)."""
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
    _set(obj, "__pydantic_fields_set__", _all_fields(cls))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


_new = object.__new__
_ALL: dict[type, set] = {}


def _all_fields(cls) -> set:
    """The fields-set every object of `cls` made here shares: all its fields, as they are all in its dict."""
    fs = _ALL.get(cls)
    if fs is None:
        fs = _ALL[cls] = set(cls.model_fields)
    return fs


def from_fields(cls, fields: dict):
    """A model from a dict that holds every field, in declared order (the caller's literal guarantees
    both; tests compare the JSON of such objects with validated ones): the commonest records, built
    without keyword packing or defaults. Every field is set, so all objects of a class share one
    fields-set: pydantic only ever adds a field's name to it, which it holds already (one set per object
    was a quarter of a large check's memory)."""
    obj = _new(cls)
    _set(obj, "__dict__", fields)
    _set(obj, "__pydantic_fields_set__", _ALL.get(cls) or _all_fields(cls))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
