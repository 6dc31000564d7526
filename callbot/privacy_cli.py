"""``callbot privacy forget NUMBER [--dry-run]`` and ``callbot privacy retention [--days N]``.

For the town's data-protection requests: forget a caller (right to erasure) and apply the
retention period now rather than at the server's next hourly pass. Both talk to the Redis the
server uses, found like ``callbot users`` does (``users_cli.server_redis``), and print what they
did as plain lines (French labels, counts, ids) that can be pasted into the reply to the caller.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime

from callbot.config import Settings
from callbot.errors import ConfigError
from callbot.privacy import Report, anonymise_older_than, compact
from callbot.privacy_forget import forget_number
from callbot.switchboard.users_cli import server_redis

FORGET_LABELS = (("calls", "appels supprimés"), ("calls_redacted", "autres appels où le numéro est effacé"),
                 ("events", "événements effacés"), ("stream_entries", "entrées du flux d'événements supprimées"),
                 ("tickets", "tickets supprimés"), ("callbacks", "demandes de rappel supprimées"),
                 ("keys", "autres clés supprimées"))
RETENTION_LABELS = (("calls", "appels anonymisés"), ("events", "événements effacés"),
                    ("stream_entries", "entrées du flux d'événements supprimées"),
                    ("tickets", "tickets anonymisés"), ("callbacks", "demandes de rappel anonymisées"))


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    privacy = sub.add_parser("privacy", help="personal data: forget a caller, apply the retention period now")
    psub = privacy.add_subparsers(dest="privacy_command")
    privacy.set_defaults(func=lambda args: (privacy.print_help(), 2)[1])

    p = psub.add_parser("forget", help="delete everything about a phone number (calls, tickets, callbacks…)",
                        description="Delete the calls from NUMBER, the tickets and callbacks holding it, and "
                        "blank it where other calls mention it. Any spelling works: +33612345678, "
                        "0612345678, '06 12 34 56 78', 33612345678. Statistics keep their counts.")
    p.add_argument("number", help="the phone number, e.g. +33612345678 or '06 12 34 56 78'")
    p.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    p.set_defaults(func=cmd_forget)

    p = psub.add_parser("retention", help="anonymise calls older than the retention period now",
                        description="Blank numbers and transcripts of calls older than N days (their tickets "
                        "and callbacks too) and delete old event-stream entries, as the server does hourly.")
    p.add_argument("--days", type=int, default=None,
                   help="retention period in days (default: retention_days, $CALLBOT_RETENTION_DAYS, 30)")
    p.set_defaults(func=cmd_retention)


def _run(args: argparse.Namespace, action) -> int:
    """Run ``action(redis)`` (a coroutine function) on the server's Redis."""
    import redis.asyncio as aioredis

    settings = Settings.load(args.config)

    async def go(url: str) -> int:
        client = aioredis.from_url(url, decode_responses=True, socket_timeout=30, socket_connect_timeout=2)
        try:
            return int(await action(client, settings) or 0)
        finally:
            await client.aclose()

    with server_redis(settings) as url:
        return asyncio.run(go(url))


def report_lines(rep: Report, labels: tuple[tuple[str, str], ...], *, with_ids: bool) -> list[str]:
    lines = []
    for kind, label in labels:
        count = len(rep.ids.get(kind, [])) if kind == "keys" else getattr(rep, kind)
        ids = rep.ids.get(kind, []) if with_ids else []
        lines.append(f"{label} : {count}" + (f" ({', '.join(ids)})" if ids else ""))
    return lines + [f"note : {n}" for n in rep.notes]


def cmd_forget(args: argparse.Namespace) -> int:
    async def action(redis, settings: Settings) -> int:
        rep = await forget_number(redis, args.number, dry_run=args.dry_run)
        print(f"numéro : {args.number}" + (" (simulation : rien n'a été supprimé)" if args.dry_run else ""))
        for line in report_lines(rep, FORGET_LABELS, with_ids=True):
            print(line)
        if not rep.touched:
            print("rien trouvé pour ce numéro")
        return 0

    return _run(args, action)


def cmd_retention(args: argparse.Namespace) -> int:
    if args.days is not None and args.days < 1:
        raise ConfigError("--days must be 1 or more")

    async def action(redis, settings: Settings) -> int:
        days = args.days or settings.retention_days
        cutoff = time.time() - days * 86400
        rep = await anonymise_older_than(redis, cutoff)
        print(f"rétention : {days} jours (appels commencés avant le {datetime.fromtimestamp(cutoff):%Y-%m-%d %H:%M})")
        for line in report_lines(rep, RETENTION_LABELS, with_ids=False):
            print(line)
        if rep.touched:
            print(f"note : {await compact(redis)}")
        return 0

    return _run(args, action)
