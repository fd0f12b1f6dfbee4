"""The base of every config section: unknown keys are errors, defaults are validated too, numbers are numbers."""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _numbers(annotation: Any) -> frozenset[type]:
    """The number types a field holds when it holds numbers only (int, float, lists of them, unions with None); else empty."""
    if annotation in (int, float):
        return frozenset({annotation})
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return _numbers(args[0]) if args else frozenset()
    if origin in (typing.Union, types.UnionType):
        parts = [_numbers(a) for a in args if a is not type(None)]
        return frozenset().union(*parts) if parts and all(parts) else frozenset()
    return frozenset()


def _not_a_number(value: Any) -> bool:
    if isinstance(value, list):
        return any(_not_a_number(v) for v in value)
    return isinstance(value, bool | str | bytes)


def _too_large(value: Any) -> bool:
    """Integers of 2^40 and more (no size or count is that large), numbers beyond 1e30 (past float32's working range)."""
    if isinstance(value, list):
        return any(_too_large(v) for v in value)
    if isinstance(value, int):
        return abs(value) >= 2**40
    return isinstance(value, float) and math.isfinite(value) and abs(value) > 1e30  # NaN and infinity: "a finite number"


class StrictModel(BaseModel):
    """Base model: unknown keys are errors, defaults are validated too; NaN and infinity are refused everywhere, and
    a numeric field refuses true/false and text (pydantic would read ``true`` as 1 and ``'1_000'`` as 1000)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        kinds = _numbers(cls.model_fields[info.field_name].annotation) if info.field_name else set()
        if kinds and _not_a_number(value):
            raise ValueError(f"expected {'an integer' if kinds == {int} else 'a number'}, got {value!r}")
        if kinds and _too_large(value):
            raise ValueError(f"{value!r} is far too large (integers here stay below 2^40, other numbers below 1e30)")
        return value
