"""Tensor types: symbolic shape, dtype and optional axis names. Used on IR edges."""
from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

from .dims import Dim, parse_dim
from .fastmodel import make


def _to_dim(v: Any) -> Dim:
    if isinstance(v, Dim):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return Dim.const(v)
    if isinstance(v, str):
        return parse_dim(v)
    raise ValueError(f"not a dim: {v!r}")


def _dump_dim(d: Dim) -> int | str:
    return d.value if d.is_const else str(d)


DimField = Annotated[Dim, BeforeValidator(_to_dim), PlainSerializer(_dump_dim),
                     WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]})]

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")
DTYPES = FLOAT_DTYPES + INT_DTYPES
_INT_RANK = {"bool": 0, "uint8": 1, "int8": 1, "int16": 2, "int32": 3, "int64": 4}
_FLOAT_RANK = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}


def promote(a: str, b: str) -> str:
    """The dtype of an elementwise op of two tensors, by PyTorch's promotion (torch.promote_types): a
    float wins over an integer or bool, the wider of two of a kind wins; float16 with bfloat16 is float32,
    uint8 with int8 is int16."""
    if a == b:
        return a
    fa, fb = a in _FLOAT_RANK, b in _FLOAT_RANK
    if fa != fb:
        return a if fa else b
    rank = _FLOAT_RANK if fa else _INT_RANK
    if rank[a] == rank[b]:                     # float16/bfloat16, uint8/int8
        return "float32" if fa else "int16"
    return a if rank[a] > rank[b] else b
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
          "uint8": 1, "bool": 1}


def dtype_bytes(dtype: str) -> int:
    return _BYTES.get(dtype, 8)


class TensorType(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, arbitrary_types_allowed=True)

    shape: tuple[DimField, ...]
    dtype: str = "float32"
    axes: tuple[Optional[str], ...] = ()
    vmax: Optional[DimField] = None     # integer tensors: every value is below this (set by `positions`)
    vmin: Optional[DimField] = None     # ... and at least this (None with a vmax: 0)

    @staticmethod
    def make(shape, dtype: str = "float32", axes=None) -> "TensorType":
        shape = tuple(Dim.of(d) for d in shape)
        axes = tuple(axes) if axes is not None else (None,) * len(shape)
        if len(axes) != len(shape):
            axes = (None,) * len(shape)
        return make(TensorType, shape=shape, dtype=dtype, axes=axes, vmax=None, vmin=None)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def axis_names(self) -> tuple[Optional[str], ...]:
        return self.axes if len(self.axes) == len(self.shape) else (None,) * len(self.shape)

    def with_shape(self, shape, axes=None) -> "TensorType":
        return TensorType.make(shape, self.dtype, axes)

    def __str__(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"

    def describe(self) -> str:
        return f"{self}" if self.dtype == "float32" else f"{self} {self.dtype}"

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def numel(self) -> Dim:
        n = Dim.const(1)
        for d in self.shape:
            n = n * d
        return n
