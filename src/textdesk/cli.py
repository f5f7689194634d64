"""The ``textdesk`` command: serve, worker, migrate, demo, user create."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from textdesk import __version__
from textdesk.domain.roles import Role
from textdesk.logs import configure_logging
from textdesk.services import accounts, demo
from textdesk.services.errors import ServiceError
from textdesk.settings import Settings, get_settings
from textdesk.store import migrate as migrations
from textdesk.store.db import Database

app = typer.Typer(help="textdesk: peer-to-peer SMS with consent built in.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
app.add_typer(user_app, name="user")
log = logging.getLogger("textdesk")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"textdesk {__version__}")
        raise typer.Exit


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """textdesk: peer-to-peer SMS with consent built in."""


def _setup() -> tuple[Settings, Database]:
    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings)
    return settings, Database.from_settings(settings)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the latest version."""
    _settings, db = _setup()
    migrations.upgrade(db.engine)
    typer.echo(f"database at revision {migrations.current_revision(db.engine)}")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `textdesk serve` hands uvicorn besides the app.

    ``proxy_headers`` is off: uvicorn would take X-Forwarded-For from any loopback peer (its
    ``FORWARDED_ALLOW_IPS`` default), so anything on the host could pick the address the
    lockout counts. The app honours the header from ``TEXTDESK_TRUSTED_PROXIES`` only."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "proxy_headers": False,
    }


def _serve(settings: Settings, db: Database) -> None:
    import uvicorn

    from textdesk.web.app import create_app

    if settings.web_workers > 1:
        # Each process builds its own app (and engine) from the environment.
        db.dispose()
        uvicorn.run(
            "textdesk.web.app:app_from_environment",
            factory=True,
            workers=settings.web_workers,
            **uvicorn_options(settings),
        )
        return
    uvicorn.run(create_app(settings, db), **uvicorn_options(settings))


@app.command()
def serve() -> None:
    """Serve the web UI, the REST API and provider webhooks."""
    settings, db = _setup()
    migrations.upgrade(db.engine)
    _serve(settings, db)


@app.command()
def worker() -> None:
    """Run the delivery worker (dispatches queued messages to providers)."""
    from textdesk.delivery.worker import run_worker
    from textdesk.services.imports import ImportRunner

    settings, db = _setup()
    imports_runner = ImportRunner(db)  # CSV imports, and resuming any whose process died
    imports_runner.start()
    run_worker(settings, db)
    imports_runner.stop()


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="The CSV file.", exists=True, dir_okay=False)],
    org: Annotated[
        str | None, typer.Option(help="Organization slug or id (needed if there are several).")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="header=attribute, e.g. 'Cell=phone' or 'Notes=' to ignore (repeat)."
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option(help="Existing contacts: fill (empty fields), overwrite or skip.")
    ] = "fill",
    tag: Annotated[
        list[str] | None, typer.Option(help="Tag every imported contact (repeat).")
    ] = None,
    all_opted_in: Annotated[
        bool, typer.Option(help="Record an opt-in for every row (collected with consent).")
    ] = False,
) -> None:
    """Import contacts from a CSV file, with a progress bar (the same import as the UI's)."""
    from textdesk.cli_import import run_cli_import

    _settings, db = _setup()
    migrations.upgrade(db.engine)
    run_cli_import(
        db,
        _settings,
        file,
        org=org,
        mapping=map_ or [],
        policy=policy,
        tags=tag or [],
        all_opted_in=all_opted_in,
    )


@app.command("demo")
def demo_command(
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after seeding.")
    ] = True,
) -> None:
    """Migrate, seed the demo organization (printing its logins) and serve it."""
    import os

    # Simulated customers answer some of what they get, so the demo shows replies arriving.
    os.environ.setdefault("TEXTDESK_SIMULATOR_REPLY_RATE", "0.3")
    settings, db = _setup()
    migrations.upgrade(db.engine)
    result = demo.seed(db)
    typer.echo("")
    typer.secho(
        "Demo organization " + ("created" if result.created else "already there"), bold=True
    )
    for login in result.logins:
        typer.echo(f"  {login.role.value:<6} {login.email:<28} password: {login.password}")
    typer.echo(f"\nOpen {settings.base_url}/login\n")
    if serve_after:
        _serve(settings, db)


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Login e-mail.")],
    org: Annotated[str, typer.Option(help="Organization slug or id; created if --new-org.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    role: Annotated[Role, typer.Option(help="owner, admin or agent.")] = Role.AGENT,
    new_org: Annotated[bool, typer.Option(help="Create the organization named --org.")] = False,
    password: Annotated[
        str | None,
        typer.Option(help="Password; prompted when omitted (or read from TEXTDESK_PASSWORD)."),
    ] = None,
) -> None:
    """Create a user (and optionally its organization)."""
    import os

    _settings, db = _setup()
    migrations.upgrade(db.engine)
    password = password or os.environ.get("TEXTDESK_PASSWORD") or getpass.getpass("Password: ")
    try:
        if new_org:
            organization = accounts.create_organization(db, org, actor="cli")
        else:
            with db.read() as conn:
                organization = accounts.find_organization(conn, org)
        user = accounts.create_user(
            db,
            org_id=organization.id,
            email=email,
            name=name or email.split("@")[0],
            role=role,
            password=password,
            actor="cli",
            actor_role=None,
        )
    except ServiceError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"created {user.role.value} {user.email} in {organization.name} ({organization.slug})"
    )


def main() -> None:
    app()
