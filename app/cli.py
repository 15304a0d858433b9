"""``unlearnd <command>``: run the embedded service, the API alone, migrations, a reconcile pass,
bootstrap an API key, or check a deletion certificate or an exported audit chain offline."""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="unlearnd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("embedded", help="API + in-process worker on SQLite, with a demo model (the default setup)")
    api = sub.add_parser("api", help="the API alone (full stack: Postgres + Redis + separate workers)")
    api.add_argument("--host", default="0.0.0.0")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    sub.add_parser("migrate", help="apply the database migrations (alembic upgrade head)")
    sub.add_parser("reconcile", help="one reconciler pass: re-send stuck QUEUED jobs, take back lost ones")
    boot = sub.add_parser("bootstrap-admin", help="create a tenant's first admin API key and print it (once)")
    boot.add_argument("--tenant", default="default", help="the tenant the key belongs to (default: default)")
    boot.add_argument("--name", default="bootstrap-admin", help="a name to recognise the key by")
    boot.add_argument("--force", action="store_true", help="even if the tenant already has an active admin key")
    cert = sub.add_parser("verify-certificate", help="check a deletion certificate's signature, offline")
    cert.add_argument("certificate", help="the JSON answer of GET /v1/forget-requests/{id}/certificate")
    cert.add_argument("--public-key", required=True, help="a PEM file, or the base64url key from GET /v1/keys")
    chain = sub.add_parser("verify-audit-export", help="re-walk an exported audit chain and its signed heads, offline")
    chain.add_argument("export", help="GET /v1/audit-events/export?format=jsonl (no filters but from_seq/to_seq)")
    chain.add_argument("--public-key", required=True, help="a PEM file, or the base64url key from GET /v1/keys")
    chain.add_argument(
        "--head", action="append", default=[], help="a signed chain head saved earlier (JSON file); repeatable"
    )
    args = parser.parse_args(argv)

    if args.command == "embedded":
        from workers.embedded import run_embedded  # the composition root: API + worker in one process

        run_embedded()
    elif args.command == "api":
        import uvicorn

        uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, workers=args.workers)
    elif args.command == "migrate":
        from app.db.migrate import upgrade_to_head

        upgrade_to_head()
    elif args.command == "reconcile":
        from app.db import commit, session_scope
        from app.jobs.service import reconcile

        with session_scope() as db:
            report = reconcile(db)
            commit(db)
        print(json.dumps(report))
    elif args.command == "bootstrap-admin":
        _bootstrap_admin(args.tenant, args.name, args.force)
    elif args.command == "verify-certificate":
        from app.certificates.offline import verify_file

        result = verify_file(args.certificate, args.public_key)
        print(f"valid: {result.reason}" if result.ok else f"INVALID: {result.reason}")
        raise SystemExit(0 if result.ok else 1)
    elif args.command == "verify-audit-export":
        from app.audit.offline import verify_export_file

        report = verify_export_file(args.export, args.public_key, args.head)
        where = "" if report.first_broken_seq is None else f" at seq {report.first_broken_seq}"
        print(f"valid: {report.reason}" if report.ok else f"INVALID{where}: {report.reason}")
        raise SystemExit(0 if report.ok else 1)


def _bootstrap_admin(tenant: str, name: str, force: bool) -> None:
    """Prints only the secret on stdout (so a script can capture it); what it is goes to stderr."""
    import sys

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
