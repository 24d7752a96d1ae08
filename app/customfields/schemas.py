from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from app.core.schemas import CustomFieldId, InputModel, OutputModel

ObjectType = Literal["lead", "customer", "contact", "opportunity"]
FieldType = Literal["text", "number", "date", "boolean", "choice"]

FieldKey = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="snake_case, 1 to 64 characters, starting with a letter.",
    ),
]
Label = Annotated[str, Field(min_length=1, max_length=200)]
Choice = Annotated[str, Field(min_length=1, max_length=200)]
Choices = Annotated[list[Choice], Field(min_length=1, max_length=200)]
MaxLength = Annotated[int, Field(ge=1, le=10_000)]


def _check_choices(choices: list[str] | None) -> None:
    if choices is not None and len(set(choices)) != len(choices):
        raise ValueError("choices must not repeat a value")


class CustomFieldCreate(InputModel):
    object_type: ObjectType = "lead"
    key: FieldKey
    label: Label
    type: FieldType
    choices: Choices | None = Field(
        default=None, description="The allowed values; required for type choice only."
    )
    required: bool = Field(
        default=False,
        description="Objects must carry a value; checked on create and whenever "
        "attributes are replaced.",
    )
    max_length: MaxLength | None = Field(
        default=None, description="Maximum characters of a text value."
    )

    @model_validator(mode="after")
    def _check_type_options(self) -> Self:
        if self.type == "choice" and not self.choices:
            raise ValueError("choices is required when type is choice")
        if self.type != "choice" and self.choices is not None:
            raise ValueError("choices is allowed only when type is choice")
        if self.type != "text" and self.max_length is not None:
            raise ValueError("max_length is allowed only when type is text")
        _check_choices(self.choices)
        return self


class CustomFieldUpdate(InputModel):
    label: Label | None = None
    type: FieldType | None = Field(
        default=None,
        description="Rejected with 409 while any object has a value for the key.",
    )
    choices: Choices | None = Field(
        default=None,
        description="Replaces the choices. Rejected with 409 while any object stores "
        "a choice that the list drops.",
    )
    required: bool | None = None
    max_length: MaxLength | None = Field(
        default=None,
        description="Rejected with 409 while any object stores a longer value.",
    )

    @model_validator(mode="after")
    def _check_choices(self) -> Self:
        _check_choices(self.choices)
        return self


class CustomField(OutputModel):
    object: Literal["custom_field"] = "custom_field"
    id: CustomFieldId
    object_type: ObjectType
    key: str
    label: str
    type: FieldType
    choices: list[str]
    required: bool
    max_length: int | None
    version: int
    created_at: datetime
    updated_at: datetime
