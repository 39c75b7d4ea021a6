"""dataarch token create|list|revoke: API tokens issued to one client each.
The database keeps only each token's SHA-256 (procedures/085); the token
itself is printed once, when it is made."""

from __future__ import annotations

import argparse
import hashlib
import secrets

from dataarch import db
from dataarch.settings import SCOPES, Settings

SCOPE_NAMES = {**{s: s for s in SCOPES}, "viewer": "view"}  # `viewer` as the variable says


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", help="create, revoke: the token's name (its client)")
    p.add_argument(
        "--scope", choices=sorted(SCOPE_NAMES),
        help="create: what it opens: view (reports, KPIs) < read < ingest < admin",
    )  # fmt: skip
    p.add_argument("--name", dest="name_option", metavar="NAME", help="the same as NAME")


def run(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name_option or args.name
    if args.action != "list" and not name:
        raise ValueError(f"usage: dataarch token {args.action} NAME" +
                         (" --scope SCOPE" if args.action == "create" else ""))  # fmt: skip
    with db.connect(settings, autocommit=True) as conn:
        if args.action == "create":
            if not args.scope:
                raise ValueError(f"token create needs --scope ({', '.join(SCOPES)})")
            secret = secrets.token_urlsafe(32)
            made = conn.execute(
                "select api_token_issue(%s, %s, %s)",
                (name, SCOPE_NAMES[args.scope], hashlib.sha256(secret.encode()).hexdigest()),
            ).fetchone()[0]
            print(f"token {made['name']} ({made['scope']} scope); shown this once, keep it:")
            print(secret)
        elif args.action == "revoke":
            done = conn.execute("select api_token_revoke(%s)", (name,)).fetchone()[0]
            print(f"token {done['name']} revoked at {done['revoked_at']};"
                  f" {done['sessions']} sign-in session(s) ended")  # fmt: skip
        else:
            listed = conn.execute("select * from api_token_list()").fetchall()
            for token, scope, created, by, revoked in listed:
                state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "live"
                print(f"{token:<24} {scope:<7} {state:<24} made {created:%Y-%m-%d %H:%M} by {by}")
            if not listed:
                print("no token issued yet: `dataarch token create NAME --scope SCOPE`")
    return 0


COMMANDS = {"token": (add_arguments, run)}
