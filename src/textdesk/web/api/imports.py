"""CSV imports: upload (checked, previewed, mapping proposed), start, follow, cancel, rejects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from textdesk.services import imports
from textdesk.web.api.inputs import Input, PathId
from textdesk.web.deps import ApiCaller, Config, Db, Origin
from textdesk.web.openapi import errors

router = APIRouter(tags=["imports"])


class ImportOut(BaseModel):
    id: int
    filename: str
    size_bytes: int
    status: str
    encoding: str | None
    delimiter: str | None
    header: list[str]
    columns: list[str] = Field(description="how the mapping names each column")
    preview: list[list[str]]
    mapping: dict[str, str]
    policy: str
    tags: list[str]
    total_rows: int | None
    processed_rows: int
    percent: int
    inserted: int
    updated: int
    skipped: int
    rejected: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class StartIn(Input):
    mapping: dict[str, str] | None = Field(
        default=None,
        description="{column: attribute}; attributes: phone, first_name, last_name, full_name, "
        "email, zip, state, time_zone, external_id, opted_in, consent_source, "
        "consent_timestamp, fields.<key>; omitted = the proposed mapping",
    )
    policy: str = Field(default="fill", description="fill, overwrite or skip")
    tags: list[str] = Field(default_factory=list, max_length=20)
    all_opted_in: bool = Field(default=False, description="record an opt-in for every row")
    consent_source: str = Field(default="", max_length=200)


def _out(view: imports.ImportView) -> dict[str, Any]:
    data = {name: getattr(view, name) for name in ImportOut.model_fields}
    return data


@router.post(
    "/imports",
    response_model=ImportOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 413),
)
def upload(
    file: UploadFile, request: Request, caller: ApiCaller, db: Db, config: Config, origin: Origin
) -> Any:
    """Upload a CSV file (multipart field ``file``). It is checked from end to end (encoding,
    delimiter, line lengths) and described; nothing is imported until it is started."""
    view = imports.upload(
        db, config, caller, filename=file.filename or "", stream=file.file, request=origin
    )
    return _out(view)


@router.get("/imports", response_model=list[ImportOut])
def list_imports(caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return [_out(v) for v in imports.list_imports(conn, caller.org_id)]


@router.get("/imports/{import_id}", response_model=ImportOut)
def get_import(import_id: PathId, caller: ApiCaller, db: Db) -> Any:
    with db.read() as conn:
        return _out(imports.get_import(conn, caller.org_id, import_id))


@router.post("/imports/{import_id}/start", response_model=ImportOut, responses=errors(403, 409))
def start(
    import_id: PathId, body: StartIn, request: Request, caller: ApiCaller, db: Db, origin: Origin
) -> Any:
    view = imports.start_import(
        db,
        caller,
        import_id,
        mapping=body.mapping,
        policy=body.policy,
        tags=body.tags,
        all_opted_in=body.all_opted_in,
        consent_source=body.consent_source,
        request=origin,
    )
    runner: imports.ImportRunner | None = getattr(request.app.state, "import_runner", None)
    if runner is not None:
        runner.wake()
    return _out(view)


@router.post("/imports/{import_id}/cancel", response_model=ImportOut, responses=errors(403, 409))
def cancel(import_id: PathId, caller: ApiCaller, db: Db, origin: Origin) -> Any:
    return _out(imports.cancel_import(db, caller, import_id, request=origin))


@router.get("/imports/{import_id}/rejects.csv", response_class=StreamingResponse)
def rejects(import_id: PathId, caller: ApiCaller, db: Db) -> StreamingResponse:
    """The rejected rows: spreadsheet line, reason, and the row as it was."""
    return StreamingResponse(
        imports.rejects_csv(db, caller, import_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{import_id}-rejects.csv"'},
    )
