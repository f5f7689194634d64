"""``textdesk import FILE``: the import service driven from a terminal, with a progress bar on
stderr (plain text: no extra dependency, and it degrades to one line per batch when stderr is
not a terminal).

Exit codes: 0 the import is done; 1 it ran but did not finish (failed, cancelled, taken over);
2 nothing was imported because the input is wrong (a file that cannot be imported, an unknown
organization, a bad ``--map`` or ``--policy``): the error names the problem and, where there is
one, the line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import sqlalchemy as sa
import typer

from textdesk.domain.roles import Role
from textdesk.services import accounts, imports
from textdesk.services.auth import Principal
from textdesk.services.errors import ServiceError
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import organizations

#: Exit code for input the import refuses (nothing was imported).
USAGE_ERROR = 2


class CliPrincipal(Principal):
    """The operator at the terminal: the owner's rights, recorded as ``cli`` in the audit log."""

    @property
    def actor(self) -> str:
        return "cli"


def _organization(db: Database, org: str | None) -> accounts.Organization:
    with db.read() as conn:
        if org is not None:
            return accounts.find_organization(conn, org)
        ids = conn.execute(sa.select(organizations.c.id).limit(2)).scalars().all()
        if len(ids) != 1:
            raise ServiceError("say which organization with --org SLUG", field="org")
        return accounts.get_organization(conn, ids[0])


def _parse_map(pairs: list[str], columns: list[str], current: dict[str, str]) -> dict[str, str]:
    mapping = dict(current)
    for pair in pairs:
        header, sep, attr = pair.partition("=")
        if not sep:
            raise ServiceError(f"--map {pair!r}: write header=attribute", field="map")
        header = header.strip()
        if header not in columns:
            raise ServiceError(
                f"--map {pair!r}: no column {header!r}; columns are " + ", ".join(columns),
                field="map",
            )
        mapping.pop(header, None)
        attr = attr.strip()
        if attr:
            # One column per attribute: the explicit choice replaces the proposed one.
            mapping = {c: a for c, a in mapping.items() if a != attr}
            mapping[header] = attr
    return mapping


def _bar(view: imports.ImportView, started: float) -> str:
    width = 30
    done = width * view.percent // 100
    rate = view.processed_rows / max(time.monotonic() - started, 1e-6)
    return (
        f"\r[{'#' * done}{'.' * (width - done)}] {view.percent:3d}% "
        f"{view.processed_rows:,}/{view.total_rows or 0:,} rows  {rate:,.0f} rows/s  "
        f"new {view.inserted:,} updated {view.updated:,} rejected {view.rejected:,}"
    )


def run_cli_import(
    db: Database,
    settings: Settings,
    file: Path,
    *,
    org: str | None,
    mapping: list[str],
    policy: str,
    tags: list[str],
    all_opted_in: bool,
) -> None:
    uploaded: imports.ImportView | None = None
    try:
        organization = _organization(db, org)
        who = CliPrincipal(org_id=organization.id, role=Role.OWNER, name="cli")
        with file.open("rb") as stream:
            view = uploaded = imports.upload(db, settings, who, filename=file.name, stream=stream)
        typer.echo(
            f"{file.name}: {view.encoding}, delimiter {view.delimiter!r}, "
            f"about {view.total_rows or 0:,} rows",
            err=True,
        )
        chosen = _parse_map(mapping, view.columns, view.mapping)
        for column in view.columns:
            typer.echo(f"  {column:<30} -> {chosen.get(column, '(ignored)')}", err=True)
        imports.start_import(
            db,
            who,
            view.id,
            mapping=chosen,
            policy=policy,
            tags=tags,
            all_opted_in=all_opted_in,
        )
    except ServiceError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        if uploaded is not None:
            # The file was accepted but the options were not: drop its copy (the import row
            # stays, cancelled, as the audit trail of what was tried).
            imports.cancel_import(db, who, uploaded.id)
        raise typer.Exit(USAGE_ERROR) from exc
    worker = imports.worker_name()
    if imports.claim(db, worker, import_id=view.id) is None:
        typer.secho("error: another process took this import", fg="red", err=True)
        raise typer.Exit(1)
    started = time.monotonic()
    tty = sys.stderr.isatty()

    def progress(v: imports.ImportView) -> None:
        line = _bar(v, started)
        sys.stderr.write(line if tty else line.lstrip("\r") + "\n")
        sys.stderr.flush()

    final = imports.run_import(db, view.id, worker, on_progress=progress)
    sys.stderr.write("\n" if tty else "")
    seconds = time.monotonic() - started
    typer.echo(
        f"import {final.id} {final.status} in {seconds:.1f}s: {final.inserted:,} new, "
        f"{final.updated:,} updated, {final.skipped:,} unchanged or skipped, "
        f"{final.rejected:,} rejected"
    )
    if final.error:
        typer.secho(f"error: {final.error}", fg="red", err=True)
    if final.rejected:
        typer.echo(f"rejected rows: GET /api/v1/imports/{final.id}/rejects.csv")
    if final.status != imports.Status.DONE:
        raise typer.Exit(1)
