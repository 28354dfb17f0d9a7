"""Strings from clients that SQL stores or queries by: PostgreSQL refuses NUL characters in
text (SQLite keeps them), and a lone surrogate (JSON's "\\ud800") is no UTF-8 at all, so each
such string is checked before it reaches a statement or an answer."""

from typing import Annotated

from pydantic import AfterValidator

NUL = "\x00"


def storable(value: str) -> str:
    if NUL in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must be Unicode text (a lone surrogate is not)") from None
    return value


def is_storable(value: str) -> bool:
    try:
        storable(value)
    except ValueError:
        return False
    return True


SqlText = Annotated[str, AfterValidator(storable)]
