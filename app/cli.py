"""``unlearnd <command>``: run the embedded service, the API alone, migrations, a reconcile pass,
bootstrap an API key, or check a deletion certificate or an exported audit chain offline; and, as
a client of a running service (UNLEARND_URL, UNLEARND_KEY), register data and models, forget,
download, and read the audit trail and certificates.

The server commands import what they run only when they run, so the client commands (and --help)
load no database, web framework or torch."""

from __future__ import annotations

import json
import sys

import click

from unlearnd_client.cli import add_client_commands
from unlearnd_client.cli.exit_codes import HELP as CLIENT_EXIT_CODES

PUBLIC_KEY_HELP = "a PEM file, or the base64url key from GET /v1/keys"


GROUP_HELP = """Server commands run the service (embedded, api, migrate, reconcile, bootstrap-admin) or check its
documents offline (verify-certificate, verify-audit-export). Client commands talk to a running service at
UNLEARND_URL with the API key in UNLEARND_KEY (--url and --key override): datasets, models, forget, requests,
download, audit, certificate. `unlearnd COMMAND --help` says more."""


@click.group(
    help=GROUP_HELP + "\n\n" + CLIENT_EXIT_CODES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def cli() -> None:
    pass


@cli.command(help="API + in-process worker on SQLite, with a demo model (the default setup)")
def embedded() -> None:
    from workers.embedded import run_embedded  # the composition root: API + worker in one process

    run_embedded()


@cli.command(help="the API alone (full stack: Postgres + Redis + separate workers)")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
def api(host: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)


@cli.command(help="apply the database migrations (alembic upgrade head)")
def migrate() -> None:
    from app.db.migrate import upgrade_to_head

    upgrade_to_head()


@cli.command(help="one reconciler pass: re-send stuck QUEUED jobs, take back lost ones")
def reconcile() -> None:
    from app.db import commit, session_scope
    from app.jobs.service import reconcile as reconcile_pass

    with session_scope() as db:
        report = reconcile_pass(db)
        commit(db)
    click.echo(json.dumps(report))


@cli.command("bootstrap-admin", help="create a tenant's first admin API key and print it (once)")
@click.option("--tenant", default="default", help="the tenant the key belongs to (default: default)")
@click.option("--name", default="bootstrap-admin", help="a name to recognise the key by")
@click.option("--force", is_flag=True, help="even if the tenant already has an active admin key")
def bootstrap_admin(tenant: str, name: str, force: bool) -> None:
    _bootstrap_admin(tenant, name, force)


@cli.command("verify-certificate", help="check a deletion certificate's signature, offline")
@click.argument("certificate")  # the JSON answer of GET /v1/forget-requests/{id}/certificate
@click.option("--public-key", required=True, help=PUBLIC_KEY_HELP)
def verify_certificate(certificate: str, public_key: str) -> None:
    from app.certificates.offline import verify_file

    result = verify_file(certificate, public_key)
    click.echo(f"valid: {result.reason}" if result.ok else f"INVALID: {result.reason}")
    raise SystemExit(0 if result.ok else 1)


@cli.command("verify-audit-export", help="re-walk an exported audit chain and its signed heads, offline")
@click.argument("export")  # GET /v1/audit-events/export?format=jsonl (no filters but from_seq/to_seq)
@click.option("--public-key", required=True, help=PUBLIC_KEY_HELP)
@click.option("--head", multiple=True, help="a signed chain head saved earlier (JSON file); repeatable")
def verify_audit_export(export: str, public_key: str, head: tuple[str, ...]) -> None:
    from app.audit.offline import verify_export_file

    report = verify_export_file(export, public_key, list(head))
    where = "" if report.first_broken_seq is None else f" at seq {report.first_broken_seq}"
    click.echo(f"valid: {report.reason}" if report.ok else f"INVALID{where}: {report.reason}")
    raise SystemExit(0 if report.ok else 1)


add_client_commands(cli)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="unlearnd")


def _bootstrap_admin(tenant: str, name: str, force: bool) -> None:
    """Prints only the secret on stdout (so a script can capture it); what it is goes to stderr."""
    from pydantic import TypeAdapter, ValidationError

    from app.auth import service as auth
    from app.auth.schemas import TenantId
    from app.db import commit, session_scope

    try:
        TypeAdapter(TenantId).validate_python(tenant)
    except ValidationError:
        raise SystemExit(f"invalid tenant {tenant!r}: lowercase letters, digits, - and _, at most 64") from None
    with session_scope() as db:
        try:
            key, secret = auth.bootstrap_admin(db, tenant_id=tenant, name=name, force=force)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        commit(db)
    print(f"admin API key {key.id} for tenant {tenant!r} (shown once; store it now):", file=sys.stderr)
    print(secret)


if __name__ == "__main__":
    main()
