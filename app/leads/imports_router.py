"""CSV import and export of leads over HTTP."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core import ids
from app.core.auth import Principal, require
from app.core.errors import FieldError, InvalidInput, UnsupportedMediaType
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import LeadImportId, OutputModel, Timestamp, UserId
from app.leads.importer import neutralize
from app.leads.imports import ImportOptions, lead_import_service
from app.leads.schemas import LeadStatus
from app.leads.service import lead_service
from app.models import Lead
from app.models import LeadImport as LeadImportRow

router = APIRouter(route_class=UnitOfWorkRoute)

IMPORT_UPLOAD_ROUTE = ("POST", "/v1/lead-imports")
OPTION_FIELDS = ("mapping", "dedupe", "dry_run", "default_phone_region", "date_format")
EXPORT_COLUMNS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "source",
    "owner_id",
    "notes",
    "company_domain",
    "tags",
    "attributes",
)
EXPORT_PAGE = 1000
ERROR_COLUMNS = ("row", "column", "value", "message")


class LeadImportColumn(OutputModel):
    column: str = Field(description="The header of the CSV column.")
    target: str = Field(
        description="Where its values go: a lead field, `attributes.<key>` (with "
        "`:date` for a date), `attributes` (a JSON object) or `ignore`."
    )
    origin: Literal["mapping", "recognized", "unrecognized"] = Field(
        description="`mapping` when the request mapped it, `recognized` for a known "
        "header, `unrecognized` for a column kept in attributes under its header."
    )


class LeadImportFailure(OutputModel):
    code: str
    message: str


class LeadImport(OutputModel):
    """An import job and its progress."""

    object: Literal["lead_import"] = "lead_import"
    id: LeadImportId
    status: Literal["queued", "running", "completed", "failed"]
    filename: str | None
    size_bytes: int
    options: ImportOptions
    columns: list[LeadImportColumn]
    total: int | None = Field(
        description="Data rows of the file; null until a run has parsed it."
    )
    processed: int
    created: int
    updated: int
    skipped: int
    failed: int = Field(description="Rows with errors; see the errors report.")
    error: LeadImportFailure | None = Field(
        description="Why the whole import failed, when its status is failed."
    )
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: LeadImportRow) -> LeadImport:
        return cls(
            id=row.id,
            status=row.status,
            filename=row.filename,
            size_bytes=row.size_bytes,
            options=ImportOptions.model_validate(row.options),
            columns=[LeadImportColumn.model_validate(c) for c in row.columns],
            total=row.total,
            processed=row.next_row,
            created=row.created_count,
            updated=row.updated_count,
            skipped=row.skipped_count,
            failed=row.failed_count,
            error=(
                LeadImportFailure(code=row.error_code, message=row.error_message or "")
                if row.error_code
                else None
            ),
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            updated_at=row.updated_at,
        )


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The CSV file: UTF-8 (with or without "
                            "BOM) or UTF-16 with BOM; comma, semicolon or tab.",
                        },
                        "options": {
                            "type": "string",
                            "description": "All options as one JSON object "
                            "(the fields below), instead of separate fields.",
                        },
                        "mapping": {
                            "type": "string",
                            "description": 'A JSON object: {"CSV column": '
                            '"email" | "first_name" | … | "attributes.<key>" | '
                            '"attributes.<key>:date" | "ignore"}.',
                        },
                        "dedupe": {
                            "type": "string",
                            "enum": ["skip", "update", "create"],
                        },
                        "dry_run": {"type": "string", "enum": ["true", "false"]},
                        "default_phone_region": {"type": "string"},
                        "date_format": {
                            "type": "string",
                            "enum": [
                                "YYYY-MM-DD",
                                "DD/MM/YYYY",
                                "MM/DD/YYYY",
                                "DD.MM.YYYY",
                            ],
                        },
                    },
                }
            }
        },
    }
}


def _invalid(field: str, message: str, code: str = "invalid") -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(field, message, code)])


def _parse_options(fields: dict[str, str]) -> ImportOptions:
    raw: dict[str, Any]
    if "options" in fields:
        separate = [name for name in OPTION_FIELDS if name in fields]
        if separate:
            raise _invalid(
                separate[0],
                f"Send {separate[0]!r} inside the options JSON or as its own field, "
                "not both.",
            )
        try:
            raw = json.loads(fields["options"])
        except ValueError as error:
            raise _invalid(
                "options", f"options is not valid JSON: {error}.", "invalid_json"
            ) from error
        if not isinstance(raw, dict):
            raise _invalid("options", "options must be a JSON object.")
    else:
        raw = {name: fields[name] for name in OPTION_FIELDS if name in fields}
        if "mapping" in raw:
            try:
                raw["mapping"] = json.loads(raw["mapping"])
            except ValueError as error:
                raise _invalid(
                    "mapping", f"mapping is not valid JSON: {error}.", "invalid_json"
                ) from error
        if "dry_run" in raw:
            flag = raw["dry_run"].strip().lower()
            if flag not in ("true", "false", "1", "0"):
                raise _invalid("dry_run", "dry_run must be true or false.")
            raw["dry_run"] = flag in ("true", "1")
    try:
        return ImportOptions.model_validate(raw)
    except ValidationError as error:
        raise InvalidInput(
            "The import options are invalid: "
            + "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in error.errors()
            )
            + ".",
            errors=[
                FieldError(
                    ".".join(str(p) for p in e["loc"]) or "options", e["msg"], e["type"]
                )
                for e in error.errors()
            ],
        ) from error


async def _read_upload(request: Request) -> tuple[bytes, str | None, ImportOptions]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip()
    if media_type.lower() != "multipart/form-data":
        raise UnsupportedMediaType(
            f"The body must be multipart/form-data with a 'file' part, not "
            f"{media_type or 'missing'!r}."
        )
    try:
        form = await request.form(max_files=1, max_fields=20, max_part_size=1_048_576)
    except StarletteHTTPException as error:
        raise _invalid(
            "file", f"The multipart body is malformed: {error.detail}."
        ) from error
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid(
                "file",
                "The 'file' part is missing. Send the CSV as a file part named 'file'.",
                "missing",
            )
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if name == "file":
                continue
            if not isinstance(value, str) or name not in (*OPTION_FIELDS, "options"):
                raise _invalid(
                    name,
                    f"Unknown form field {name!r}. Send 'file', and 'options' or "
                    f"any of {', '.join(OPTION_FIELDS)}.",
                    "unknown_field",
                )
            fields[name] = value
        options = _parse_options(fields)
        content = await upload.read()
        return content, upload.filename, options
    finally:
        await form.close()


@router.post(
    "/lead-imports",
    tags=["lead imports"],
    operation_id="lead_imports_create",
    summary="Import leads from a CSV file",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadImport,
    responses=problem_responses(403, 409, 413, 415),
    openapi_extra=_UPLOAD_BODY,
)
async def create_import(
    request: Request,
    response: Response,
    principal: Principal = Depends(require("leads:write")),
) -> LeadImport:
    """Store a CSV file and queue its import; poll the returned job for progress."""
    content, filename, options = await _read_upload(request)
    lead_import = await lead_import_service.create(
        request.state.session,
        workspace_id=principal.workspace_id,
        actor=principal.actor,
        content=content,
        filename=filename,
        options=options,
    )
    response.headers["Location"] = (
        f"/v1/lead-imports/{ids.encode('lead_import', lead_import.id)}"
    )
    return LeadImport.of(lead_import)


@router.get(
    "/lead-imports",
    tags=["lead imports"],
    operation_id="lead_imports_list",
    summary="List lead imports",
    response_model=Page[LeadImport],
    responses=problem_responses(403),
)
async def list_imports(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[LeadImport]:
    """List lead imports, newest first."""
    rows, next_cursor, has_more = await lead_import_service.list(
        request.state.session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[LeadImport](
        data=[LeadImport.of(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/lead-imports/{import_id}",
    tags=["lead imports"],
    operation_id="lead_imports_get",
    summary="Get a lead import",
    response_model=LeadImport,
    responses=problem_responses(403, 404),
)
async def get_import(
    request: Request,
    import_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> LeadImport:
    """Fetch an import's status, progress and counts."""
    lead_import = await lead_import_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("lead_import", import_id, "lead import"),
    )
    return LeadImport.of(lead_import)


def _csv_line(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(
        [neutralize(cell) for cell in cells]
    )
    return buffer.getvalue()


_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A CSV file, UTF-8, with a header row.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/lead-imports/{import_id}/errors",
    tags=["lead imports"],
    operation_id="lead_imports_errors",
    summary="Download the row errors of an import",
    response_class=Response,
    responses={**_CSV_RESPONSE, **problem_responses(403, 404)},
)
async def import_errors(
    request: Request,
    import_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> Response:
    """Download every row error as CSV: row number, column, value and message."""
    parsed_id = parse_path_id("lead_import", import_id, "lead import")
    errors = await lead_import_service.errors(
        request.state.session, principal.workspace_id, parsed_id
    )
    body = _csv_line(ERROR_COLUMNS) + "".join(
        _csv_line([str(row), column or "", value or "", message])
        for row, column, value, message in errors
    )
    return Response(
        body.encode(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{import_id}-errors.csv"'
        },
    )


def _export_cells(lead: Lead) -> list[str]:
    return [
        ids.encode("lead", lead.id),
        lead.email,
        lead.first_name or "",
        lead.last_name or "",
        lead.company or "",
        lead.title or "",
        # E.164 where the number has one, so the file imports without a region.
        lead.phone_normalized or lead.phone or "",
        lead.timezone or "",
        lead.source,
        ids.encode("user", lead.owner_id) if lead.owner_id is not None else "",
        lead.notes or "",
        lead.company_domain or "",
        ",".join(lead.tags),
        json.dumps(lead.attributes, ensure_ascii=False) if lead.attributes else "",
    ]


@router.get(
    "/lead-exports",
    tags=["leads"],
    operation_id="lead_exports_download",
    summary="Export leads as CSV",
    response_class=StreamingResponse,
    responses={**_CSV_RESPONSE, **problem_responses(403)},
)
async def export_leads(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    status: Annotated[LeadStatus | None, Query(description="Only this status.")] = None,
    owner_id: Annotated[UserId | None, Query(description="Only this owner.")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Substring of email, name or company."),
    ] = None,
    created_after: Annotated[Timestamp | None, Query()] = None,
    created_before: Annotated[Timestamp | None, Query()] = None,
) -> StreamingResponse:
    """Stream the leads that GET /v1/leads would list, newest first, as CSV."""
    database = request.app.state.db
    workspace_id = principal.workspace_id

    async def lines() -> AsyncIterator[bytes]:
        yield _csv_line(EXPORT_COLUMNS).encode()
        cursor: str | None = None
        while True:
            # Each page reads in a session of its own, because the request's session
            # commits and closes before the body is streamed.
            async with database.session() as session:
                rows, cursor, has_more = await lead_service.list(
                    session,
                    workspace_id,
                    limit=EXPORT_PAGE,
                    cursor=cursor,
                    status=[status] if status is not None else None,
                    owner_id=owner_id,
                    query=q,
                    created_after=created_after,
                    created_before=created_before,
                )
            yield "".join(_csv_line(_export_cells(lead)) for lead in rows).encode()
            if not has_more:
                return

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="leads.csv"'},
    )
