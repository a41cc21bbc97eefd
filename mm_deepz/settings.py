"""The base of the project's declarative configurations (training, plan, request, model card).

A :class:`Settings` subclass is a pydantic model: values are validated and coerced when it is
made, unknown names are refused, and every problem is named in one error of the subclass's own
type (a :class:`~mm_deepz.errors.DeepZError`), so the command line and the panel show it as it is.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import Self

from .errors import DeepZError


def problems(error: ValidationError) -> str:
    """The problems of a failed validation, one clause each: ``field: what is wrong``."""
    return "; ".join(
        (f"{'.'.join(map(str, err['loc']))}: " if err["loc"] else "")
        + err["msg"].removeprefix("Value error, ").rstrip(".")
        for err in error.errors(include_url=False)
    )


class Settings(BaseModel):
    """A frozen, validated configuration; invalid values raise :attr:`error` naming each problem."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the error type raised for invalid values, and what the message calls the settings
    error: ClassVar[type[DeepZError]] = DeepZError
    what: ClassVar[str] = "settings"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise self.error(f"Invalid {self.what}: {problems(e)}.") from None

    def changed(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated like a new one."""
        return type(self)(**{**self.model_dump(), **changes})
