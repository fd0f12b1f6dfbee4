"""The base of every config section: unknown keys are errors, defaults are validated too, numbers are numbers."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _numbers(annotation: Any) -> set[type]:
    """The number types a field holds when it holds numbers only (int, float, lists of them, unions with None); else empty."""
    if annotation in (int, float):
        return {annotation}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return _numbers(args[0]) if args else set()
    if origin in (typing.Union, types.UnionType):
        parts = [_numbers(a) for a in args if a is not type(None)]
        return set().union(*parts) if parts and all(parts) else set()
    return set()


def _not_a_number(value: Any) -> bool:
    if isinstance(value, list):
        return any(_not_a_number(v) for v in value)
    return isinstance(value, bool | str | bytes)


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
        return value
