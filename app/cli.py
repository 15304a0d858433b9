"""``unlearnd <command>``: run the embedded service, the API alone, migrations, a reconcile pass, or
check a deletion certificate offline."""

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
    cert = sub.add_parser("verify-certificate", help="check a deletion certificate's signature, offline")
    cert.add_argument("certificate", help="the JSON answer of GET /v1/forget-requests/{id}/certificate")
    cert.add_argument("--public-key", required=True, help="a PEM file, or the base64url key from GET /v1/keys")
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
    elif args.command == "verify-certificate":
        from app.certificates.offline import verify_file

        result = verify_file(args.certificate, args.public_key)
        print("valid" if result.ok else f"INVALID: {result.reason}")
        raise SystemExit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
