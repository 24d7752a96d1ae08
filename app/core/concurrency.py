"""Optimistic concurrency: ``ETag: "<version>"`` out, ``If-Match`` in."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response

from app.core.errors import FieldError, InvalidInput, PreconditionFailed


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def check_if_match(if_match: str | None, version: int) -> None:
    """Raise ``PreconditionFailed`` unless ``if_match`` is absent, ``*`` or the version."""
    if if_match is None:
        return
    candidates = [part.strip() for part in if_match.split(",")]
    if "*" in candidates:
        return
    tags = []
    for candidate in candidates:
        if candidate.startswith("W/"):
            # RFC 9110 compares If-Match strongly: a weak tag never matches.
            continue
        tag = candidate.strip('"')
        if not (tag.isascii() and tag.isdigit()):
            raise InvalidInput(
                f'If-Match must be an ETag such as "3"; got {candidate!r}.',
                errors=[FieldError("header.If-Match", "invalid ETag", "invalid_etag")],
            )
        tags.append(tag)
    # Strong comparison is character by character, so "03" is not the ETag "3".
    if str(version) not in tags:
        raise PreconditionFailed(
            f"The object is at version {version}, not {if_match}. Fetch it again and "
            "retry with its current ETag.",
            current_version=version,
        )


IfMatch = Annotated[
    str | None,
    Header(
        max_length=200,
        pattern=r'^\s*(\*|(W/)?"[0-9]+"(\s*,\s*(W/)?"[0-9]+")*)\s*$',
        description='The current ETag, e.g. "3", or * for any version.',
    ),
]
