"""Merge fields in email subjects and bodies: ``{{ first_name }}``, ``{{ company | you }}``.

A template is literal text with merge tags. A tag names one of a fixed set of fields,
optionally followed by ``|`` and a fallback used when the field is empty. A
namespaced name such as ``lead.first_name`` contains one dot. Rendering
substitutes values from a plain dictionary built from known lead fields, so a template
can never reach any other attribute or run code. Values are inserted as they are: text
bodies are not HTML and nothing is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OPEN = "{{"
CLOSE = "}}"
MAX_FALLBACK_LENGTH = 200

LEAD_FIELDS: dict[str, str] = {
    "first_name": "The lead's first name.",
    "last_name": "The lead's last name.",
    "full_name": "First and last name, separated by a space.",
    "email": "The lead's email address.",
    "company": "The lead's company.",
    "title": "The lead's job title.",
    "phone": "The lead's phone number.",
}
# Fields that only make sense in the body of an email.
BODY_FIELDS: dict[str, str] = {
    **LEAD_FIELDS,
    "unsubscribe_url": "The signed link that unsubscribes the lead. Without it, the "
    "link is appended to the body.",
}

_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")


@dataclass(frozen=True)
class MergeTag:
    """One ``{{ name | fallback }}`` tag of a template."""

    name: str
    fallback: str


@dataclass(frozen=True)
class TemplateProblem:
    """One reason a template cannot be saved, with a stable ``code``."""

    message: str
    code: str


class TemplateSyntaxError(ValueError):
    """A template that ``parse`` cannot split into text and merge tags."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse(template: str) -> list[str | MergeTag]:
    """Split ``template`` into literal text and merge tags, raising on bad syntax."""
    parts: list[str | MergeTag] = []
    index = 0
    while index < len(template):
        start = template.find(OPEN, index)
        stray_close = template.find(CLOSE, index, start if start != -1 else None)
        if stray_close != -1:
            raise TemplateSyntaxError(
                f"'}}}}' at character {stray_close + 1} closes no '{{{{'. Remove it, "
                "or write the merge field as {{ first_name }}."
            )
        if start == -1:
            parts.append(template[index:])
            break
        if start > index:
            parts.append(template[index:start])
        end = template.find(CLOSE, start + len(OPEN))
        if end == -1:
            raise TemplateSyntaxError(
                f"The merge field opened at character {start + 1} is never closed. "
                "Close it with '}}'."
            )
        inner = template[start + len(OPEN) : end]
        if OPEN in inner or "{" in inner or "}" in inner:
            raise TemplateSyntaxError(
                f"The merge field at character {start + 1} contains a brace. Merge "
                "fields cannot be nested."
            )
        parts.append(_parse_tag(inner, start))
        index = end + len(CLOSE)
    return parts


def _parse_tag(inner: str, start: int) -> MergeTag:
    name, separator, fallback = inner.partition("|")
    name = name.strip()
    fallback = fallback.strip()
    if not _NAME.fullmatch(name):
        tag_text = f"{{{{{inner}}}}}"
        raise TemplateSyntaxError(
            f"The merge field {tag_text!r} at character {start + 1} has no valid name. "
            "Write it as {{ first_name }} or {{ first_name | fallback }}."
        )
    if separator and not fallback:
        raise TemplateSyntaxError(
            f"The merge field {name!r} at character {start + 1} has an empty fallback "
            "after '|'. Add a fallback text or remove the '|'."
        )
    if len(fallback) > MAX_FALLBACK_LENGTH:
        raise TemplateSyntaxError(
            f"The fallback of the merge field {name!r} at character {start + 1} is "
            f"longer than {MAX_FALLBACK_LENGTH} characters."
        )
    return MergeTag(name=name, fallback=fallback)


def check(
    template: str, allowed: Mapping[str, str], listed: Iterable[str] | None = None
) -> list[TemplateProblem]:
    """List what stops ``template`` from rendering with the ``allowed`` fields.

    The message of an unknown field names the ``listed`` fields, by default all.
    """
    suggestions = ", ".join(sorted(allowed if listed is None else listed))
    try:
        parts = parse(template)
    except TemplateSyntaxError as error:
        return [TemplateProblem(message=error.message, code="invalid_merge_field")]
    problems = []
    seen: set[str] = set()
    for part in parts:
        if not isinstance(part, MergeTag) or part.name in allowed:
            continue
        if part.name in seen:
            continue
        seen.add(part.name)
        problems.append(
            TemplateProblem(
                message=f"Unknown merge field {part.name!r}. Use one of: "
                f"{suggestions}.",
                code="unknown_merge_field",
            )
        )
    return problems


def render(template: str, values: Mapping[str, str | None]) -> str:
    """Substitute every merge tag of ``template`` with its value or fallback.

    Raises ``KeyError`` for a field missing from ``values``. Templates are checked
    against the same fields when they are saved, so that means a programming error.
    """
    output = []
    for part in parse(template):
        if isinstance(part, MergeTag):
            value = values[part.name]
            output.append(value if value else part.fallback)
        else:
            output.append(part)
    return "".join(output)
