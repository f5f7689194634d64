"""Types for what the API takes in, so bad input is a 422 naming the field, never a 500 from
the database.

- Integers: SQLite's INTEGER and PostgreSQL's BIGINT hold 64 bits. A larger id (or cursor, or
  count) must not reach a query: the driver raises OverflowError or DataError there. Ids are
  also positive, so 0 and -1 are invalid rather than "not found".
- Text: PostgreSQL cannot store a NUL character in text or JSON. Every request body model
  derives from :class:`Input`, which refuses NUL in any string it holds, however deep; path and
  query strings use :data:`Text`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError
from starlette.convertors import Convertor, register_url_convertor

MAX_INT = 2**63 - 1
MIN_INT = -(2**63)


def _nul_at(value: Any, where: str = "") -> str | None:
    """Where in ``value`` a string holds NUL: "" for the value itself, ".key" or "[3]" inside."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = where + "." + str(key).replace("\x00", "\\x00")
            found = _nul_at(key, name) or _nul_at(item, name)
            if found is not None:
                return found
    elif isinstance(value, list | tuple | set):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def no_nul(value: Any) -> Any:
    where = _nul_at(value)
    if where is not None:
        inside = f" (at {where.lstrip('.')})" if where else ""
        raise PydanticCustomError(
            "nul_character", "must not contain a NUL character (\\x00){inside}", {"inside": inside}
        )
    return value


class Input(BaseModel):
    """A request body: no string in it holds NUL."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return no_nul(value)


#: A path or query string.
Text = Annotated[str, AfterValidator(no_nul)]
#: A JSON object taken as it is (organization settings).
JsonObject = Annotated[dict[str, Any], AfterValidator(no_nul)]

#: An id in the path: ``/contacts/{contact_id}``.
PathId = Annotated[int, Path(ge=1, le=MAX_INT)]
#: An optional id in the query string: ``?segment_id=``.
QueryId = Annotated[int | None, Query(ge=1, le=MAX_INT)]
#: A keyset cursor in the query string: the last id of the previous page, 0 for the first.
After = Annotated[int, Query(ge=0, le=MAX_INT, description="pass next_after for the next page")]


class _IdConvertor(Convertor[int]):
    """``{segment_id:id}``: a path segment that is an id and nothing else, for a path whose
    siblings are words (``/segments/preview`` is no segment id: GET there is a 405)."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", _IdConvertor())

#: An id in a request body.
BodyId = Annotated[int, Field(ge=1, le=MAX_INT)]
#: Any other integer in a request body.
BodyInt = Annotated[int, Field(ge=MIN_INT, le=MAX_INT)]
