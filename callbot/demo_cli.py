"""``callbot demo seed``: fill the server's Redis with a realistic synthetic history (``callbot/demo.py``).

For demonstrations and for trying the statistics without waiting for real calls. The calls go to
the Redis the server uses (found like ``callbot users`` does); the server's stats consumer counts
them as soon as it runs. Never on a production town hall: the calls look real in every list.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets

import redis.asyncio as aioredis

from callbot.config import Settings
from callbot.demo import DEMO_USERS, DemoError, seed
from callbot.switchboard.users_cli import server_redis

SEED_HELP = """\
Writes DAYS days of synthetic calls (ending now) into the Redis the server uses, through the
real event store: a town hall's day (peaks 9-11 h and 14-16 h, Saturday morning only, Sunday
almost nothing, Monday busiest), the flow's intents, about 55 % answered by the bot, 20 %
passed to an agent, queue and bot abandons, callbacks, a few emergencies and overload refusals,
surveys, repeat callers, turn latencies and a few requests the flow does not know.
The same --seed gives the same calls (a second run with the same seed is refused: use another).
With --with-users, also creates demo-agent, demo-police (agents) and demo-ops (ops) with random
passwords printed once. Refused when ticket_webhook_url is set (demo tickets would be sent to
it) unless --allow-webhook.
"""


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="demonstration data (synthetic calls for the dashboards)")
    dsub = demo.add_subparsers(dest="demo_command")
    demo.set_defaults(func=lambda args: (demo.print_help(), 2)[1])

    p = dsub.add_parser("seed", help="write a synthetic week of calls into the server's Redis",
                        description=SEED_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=7, help="calendar days ending today (default 7)")
    p.add_argument("--calls-per-day", type=float, default=300,
                   help="calls on an ordinary weekday (Monday gets more, the weekend less; default 300)")
    p.add_argument("--seed", type=int, default=1, help="the same seed gives the same calls (default 1)")
    p.add_argument("--with-users", action="store_true",
                   help="also create the demo accounts (random passwords, printed once)")
    p.add_argument("--allow-webhook", action="store_true",
                   help="seed even though ticket_webhook_url is set (the demo tickets will be posted to it)")
    p.set_defaults(func=cmd_seed)


async def create_demo_users(redis_url: str) -> dict[str, str]:
    """The demo accounts, each with a fresh random password (returned to print once; never a default).
    An existing account is left as it is (absent from the result)."""
    from callbot.switchboard.accounts import Accounts

    redis = aioredis.from_url(redis_url, decode_responses=True)
    out: dict[str, str] = {}
    try:
        accounts = Accounts(redis)
        for name, role, services, display in DEMO_USERS:
            if await accounts.get(name) is None:
                password = secrets.token_urlsafe(12)
                await accounts.add(name, role, password, services, display_name=display)
                out[name] = password
    finally:
        await redis.aclose()
    return out


def cmd_seed(args: argparse.Namespace) -> int:
    from callbot.flows.loader import load_flow

    if args.days < 1 or args.calls_per_day < 0:
        raise DemoError("--days must be 1 or more and --calls-per-day 0 or more")
    settings = Settings.load(args.config)
    if settings.ticket_webhook_url and not args.allow_webhook:
        raise DemoError(f"ticket_webhook_url is set ({settings.ticket_webhook_url}): the demo tickets would be "
                        "sent there; unset it or pass --allow-webhook")
    flow = load_flow(settings.flow)
    with server_redis(settings) as url:
        report = asyncio.run(seed(url, flow, days=args.days, calls_per_day=args.calls_per_day, rng_seed=args.seed,
                                  max_calls=settings.call_log_max))
        accounts = asyncio.run(create_demo_users(url)) if args.with_users else {}
    print(f"demo seed {args.seed}: {report.calls} calls from {report.first_day} to {report.last_day}, "
          f"{report.events} events, {report.tickets} tickets, {report.callbacks} callback requests")
    for outcome, n in report.outcomes.items():
        print(f"  {outcome:<16} {n:>6}  {100 * n / max(1, report.calls):5.1f} %")
    print("the server's stats consumer counts them as soon as the server runs")
    if args.with_users:
        if accounts:
            print("demo accounts (passwords shown once):")
        for name, password in accounts.items():
            print(f"  {name:<12} {password}")
        for name in [u[0] for u in DEMO_USERS if u[0] not in accounts]:
            print(f"  {name:<12} already exists: left unchanged")
    return 0
