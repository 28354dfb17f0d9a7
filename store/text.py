"""Strings from clients that SQL stores or queries by: PostgreSQL refuses NUL characters in
text (SQLite keeps them), so each such string is checked before it reaches a statement."""

from typing import Annotated

from pydantic import AfterValidator

NUL = "\x00"


def refuse_nul(value: str) -> str:
    if NUL in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


SqlText = Annotated[str, AfterValidator(refuse_nul)]
