"""The base of the project's declarative configurations (training, plan, request, model card).

A :class:`Settings` subclass is a pydantic model: values are validated and coerced when it is
made, unknown names are refused, and every problem is named in one error of the subclass's own
type (a :class:`~mm_deepz.errors.DeepZError`), so the command line and the panel show it as it is.
"""

from __future__ import annotations

import typing
from contextvars import ContextVar
from typing import Any, ClassVar

import annotated_types as at
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from typing_extensions import Self

from .errors import DeepZError

#: whether a :class:`Settings` is being validated in this context (a nested one is part of it)
_validating: ContextVar[bool] = ContextVar("_validating", default=False)
#: pydantic's bound errors, which :func:`problems` words from the field's declared bounds
_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _number(v: Any) -> str:
    """A bound as people write it: ``4096``, ``0.5``, ``10,000``, ``1,000,000``."""
    return f"{int(v):,}" if abs(v) >= 10_000 and v == int(v) else f"{v:g}"


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (``A | B``, ``Annotated[A, ...]``, ``tuple[A, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested_models(arg)]


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[FieldInfo | None, int | None]:
    """The field an error's location names (nested models and union tags followed), and the index of
    the item within it (None: the field as a whole)."""
    info, index, candidates = None, None, [model]
    for part in loc:
        if isinstance(part, int):
            index = part if index is None else index  # the item, not a coordinate within it
            continue
        found = next((c.model_fields[part] for c in candidates if part in c.model_fields), None)
        if found is not None:  # else a union's tag: the same candidates go on
            info, index, candidates = found, None, _nested_models(found.annotation)
    return info, index


def _range(info: FieldInfo, ctx: dict[str, Any], unit: str) -> str:
    """The declared bounds of a field in words: ``1 to 1,000 ms``, ``above 0 and at most 10``,
    ``positive``, ``0 or more`` (the bound broken, from the error's ``ctx``, where the field's type
    holds them deeper, as in ``tuple[Annotated[float, Field(ge=...)], ...]``)."""
    kinds = {"ge": at.Ge, "gt": at.Gt, "le": at.Le, "lt": at.Lt}
    bound = {type(m): getattr(m, k) for m in info.metadata for k, kind in kinds.items() if type(m) is kind}
    bound = bound or {kinds[k]: v for k, v in ctx.items() if k in kinds}
    lo = bound.get(at.Ge, bound.get(at.Gt))
    hi = bound.get(at.Le, bound.get(at.Lt))
    unit = f" {unit}" if unit else ""
    if lo is not None and hi is not None:
        if at.Gt in bound:
            return f"above {_number(lo)} and at most {_number(hi)}{unit}"
        return f"{_number(lo)} to {_number(hi)}{unit}"
    if lo is not None:
        if lo == 0 and at.Gt in bound:
            return "positive"
        return f"above {_number(lo)}{unit}" if at.Gt in bound else f"{_number(lo)}{unit} or more"
    return f"at most {_number(hi)}{unit}"


def _clause(model: type[BaseModel] | None, err: ErrorDetails) -> str:
    """One problem in a user's words: a field with a ``title`` is named by it (``json_schema_extra``:
    its ``unit``, and ``item`` for the items of a list) and its bounds are given in full."""
    plain = (f"{'.'.join(map(str, err['loc']))}: " if err["loc"] else "") + err["msg"].removeprefix(
        "Value error, "
    ).rstrip(".")
    info, index = _field_at(model, err["loc"]) if model is not None else (None, None)
    if info is None or info.title is None:
        return plain
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    unit, item = str(extra.get("unit", "")), extra.get("item")
    name = f"{item} {index + 1}" if item and index is not None else info.title
    if err["type"] == "finite_number":
        return f"{name} must be a finite number (got nan or inf)"
    if err["type"] in _BOUND_ERRORS:
        got = err["input"]
        shown = f"{got:g}" if isinstance(got, float) else str(got)
        bounds = _range(info, err.get("ctx", {}), unit)
        return f"{name} must be {bounds} (got {shown}{' ' + unit if unit else ''})"
    if err["msg"].startswith("Input should be"):
        return f"{name} must be{err['msg'].removeprefix('Input should be')}".rstrip(".")
    return plain


def problems(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The problems of a failed validation, one clause each: ``field: what is wrong``, or for a field of
    ``model`` with a title, ``time points must be 1 to 1,000,000 (got 0)``."""
    return "; ".join(_clause(model, err) for err in error.errors(include_url=False))


class Settings(BaseModel):
    """A frozen, validated configuration; invalid values raise :attr:`error` naming each problem."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the error type raised for invalid values, and what the message calls the settings
    error: ClassVar[type[DeepZError]] = DeepZError
    what: ClassVar[str] = "settings"

    def __init__(self, **data: Any) -> None:
        if _validating.get():  # inside another's validation: its problems join the outer ones, in one error
            super().__init__(**data)
            return
        token = _validating.set(True)
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise self.error(f"Invalid {self.what}: {problems(e, type(self))}.") from None
        finally:
            _validating.reset(token)

    def changed(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated like a new one."""
        return type(self)(**{**self.model_dump(), **changes})
