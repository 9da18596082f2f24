"""The one door between spec text and emitted Python source.

Every value, name or piece of text that comes from a spec (or its file name) and ends up in generated
source passes through one of these functions, so that nothing a user writes can leave a string literal
or a comment, or produce an invalid or colliding identifier:

- `lit(v)`: a Python literal for a value (numbers incl. non-finite floats, strings, bools, None, lists);
- `ident(name, taken)`: a valid local/class identifier that shadows nothing the generated code uses;
- `getattr_expr(base, name)` / `setattr_stmt(base, name, expr)`: attribute access that keeps the spec's
  name even when it is a Python keyword or would be mangled;
- `comment(text)`: text safe inside a `#` comment (one line, printable).

This module never imports torch: the front end uses the reserved-name tables at check time.
"""
from __future__ import annotations

import builtins
import keyword
import math

# Attributes of a torch.nn.Module instance (dir(torch.nn.Module()) for torch 2.x, plus names older or
# newer releases add). A submodule or parameter cannot take one of these names: PyTorch refuses it, or
# accepts it and breaks the module (`training`, `forward`, `to`). tests/test_trust.py checks that this
# set covers the installed torch.
MODULE_ATTRS = frozenset("""
T_destination __annotations__ __call__ __class__ __delattr__ __dict__ __dir__ __doc__ __eq__ __format__
__ge__ __getattr__ __getattribute__ __getstate__ __gt__ __hash__ __init__ __init_subclass__ __le__ __lt__
__module__ __ne__ __new__ __reduce__ __reduce_ex__ __repr__ __setattr__ __setstate__ __sizeof__ __str__
__subclasshook__ __weakref__ _apply _backward_hooks _backward_pre_hooks _buffers _call_impl
_compiled_call_impl _forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs
_forward_pre_hooks _forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_name
_is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
_maybe_warn_non_full_backward_hook _modules _named_members _non_persistent_buffers_set _parameters
_register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
_save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version _wrapped_call_impl
add_module apply bfloat16 buffers call_super_init children compile cpu cuda double dump_patches eval
extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu load_state_dict
modules mtia named_buffers named_children named_modules named_parameters parameters
register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to
to_empty train training type xpu zero_grad
""".split())

# Names the generated module itself defines or uses at module level.
GENERATED_NAMES = frozenset({"torch", "nn", "F", "math", "build", "annotations", "self"})

# Identifiers generated code must never rebind: keywords, builtins and the module's own names.
RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins)) | GENERATED_NAMES


def reserved_by_torch(name: str) -> bool:
    """A name that PyTorch cannot accept for a submodule or parameter of a module."""
    return name in MODULE_ATTRS or "." in name or name == ""


def lit(v) -> str:
    """A Python literal for a compile-time value. Raises TypeError for anything else (a bug)."""
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return 'float("inf")' if v > 0 else '-float("inf")'
        return repr(float(v))
    if isinstance(v, str):
        return repr(str(v))  # repr escapes quotes, backslashes, newlines and every non-printable character
    if isinstance(v, list):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(lit(x) for x in v) + (",)" if len(v) == 1 else ")")
    raise TypeError(f"no Python literal for {type(v).__name__}")


def _plain(name: str) -> bool:
    """Usable after a dot or as a bare name: an identifier, no keyword, and not mangled in a class."""
    return name.isidentifier() and name.isascii() and not keyword.iskeyword(name) and not name.startswith("__")


def ident(hint: str, taken: set[str] | frozenset = frozenset()) -> str:
    """A fresh identifier from `hint`: invalid characters become `_`, reserved names get a trailing `_`,
    and a numeric suffix avoids `taken`. The result is always a valid, non-reserved identifier."""
    s = "".join(c if (c.isascii() and (c.isalnum() or c == "_")) else "_" for c in hint)[:64]
    if not s or s[0].isdigit():
        s = "_" + s
    if s.startswith("__"):
        s = "v" + s
    while s in RESERVED:
        s += "_"
    base, k = s, 1
    while s in taken or s in RESERVED:
        k += 1
        s = f"{base}_{k}"
    return s


def getattr_expr(base: str, name: str) -> str:
    return f"{base}.{name}" if _plain(name) else f"getattr({base}, {lit(name)})"


def module_ref(base: str, path: str) -> str:
    """The expression for a submodule at a dotted local path: an attribute, then ModuleDict keys."""
    segs = path.split(".")
    out = getattr_expr(base, segs[0])
    for s in segs[1:]:
        out += f"[{lit(s)}]"
    return out


def setattr_stmt(base: str, name: str, expr: str) -> str:
    return f"{base}.{name} = {expr}" if _plain(name) else f"setattr({base}, {lit(name)}, {expr})"


def comment(text: str) -> str:
    """Text for a `#` comment: every character that is not printable (newlines, carriage returns, form
    feeds, NUL, line and paragraph separators) is shown as an escape, so the comment stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
