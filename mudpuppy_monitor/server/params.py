"""The query parameters of the HTTP API, declared once for FastAPI, and the one error handler.

Each parameter is an `Annotated` type: FastAPI reads it from the query string and validates it
before the route runs, the OpenAPI schema knows it, and the route receives a typed value. The
validators keep the API's rules (docs/protocol.md): an empty value means the default, numbers
are parsed as Python parses them, `from`/`to` must be finite, `points` is clamped rather than
refused. A bad value is answered 400 with the body `{"error": "<name> must be ..."}` by the
app's one error handler, which also answers the `ApiError`s routes raise (an unknown run: 404).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

MAX_POINTS = 100_000
# the error types raised below: their message reads after the parameter's name
_OWN_ERRORS = frozenset({"mudpuppy_choice", "mudpuppy_number", "mudpuppy_integer"})


class ApiError(Exception):
    """An answer other than 200 that a route decides on (404 for an unknown run)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _choice(*options: str) -> BeforeValidator:
    def check(v: Any) -> Any:
        if v not in options:
            raise PydanticCustomError("mudpuppy_choice", "must be " + " or ".join(options))
        return v

    return BeforeValidator(check)


def _finite_or_none(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise PydanticCustomError("mudpuppy_number", "must be a number") from None
    if not math.isfinite(x):
        raise PydanticCustomError("mudpuppy_number", "must be finite")
    return x


def _clamped_int(default: int, lo: int, hi: int) -> BeforeValidator:
    def check(v: Any) -> int:
        if v is None or v == "":
            return default
        try:
            x = int(v)
        except (TypeError, ValueError):
            raise PydanticCustomError("mudpuppy_integer", "must be an integer") from None
        return max(lo, min(hi, x))

    return BeforeValidator(check)


XAxis = Annotated[Literal["step", "time"], _choice("step", "time")]
From = Annotated[float | None, BeforeValidator(_finite_or_none), Query(alias="from")]
To = Annotated[float | None, BeforeValidator(_finite_or_none)]
SeriesPoints = Annotated[int, _clamped_int(2000, 2, MAX_POINTS), Query(alias="points")]
LoraPoints = Annotated[int, _clamped_int(200, 2, MAX_POINTS), Query(alias="points")]
# comma-separated; absent: every series, present but empty: none
Names = Annotated[str | None, Query()]
ExportFormat = Annotated[Literal["csv", "jsonl"], _choice("csv", "jsonl"), Query(alias="format")]


def validation_message(exc: RequestValidationError) -> str:
    """The first bad parameter (in the order the route declares them), in one line."""
    errors = exc.errors()
    if not errors:
        return "bad request"
    first = errors[0]
    loc = first.get("loc") or ("request",)
    name = str(loc[-1])
    if first.get("type") in _OWN_ERRORS:
        return f"{name} {first.get('msg')}"
    return f"{name}: {first.get('msg')}"
