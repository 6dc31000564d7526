"""``callbot users add|list|remove|passwd|token``: manage switchboard accounts from the server's shell.

There is no default account: the first ops user is made here. The commands talk to
the Redis the server uses: ``redis_url`` when set; else the server's embedded Redis,
found through ``data_dir/redis.url`` (written by a running server); else, when no
server runs, the same embedded Redis is started on the same data directory just for
the command (its append-only file keeps what was written) and stopped after.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from callbot.config import Settings
from callbot.switchboard.accounts import Accounts, AccountError


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="switchboard accounts (logins and API tokens)")
    usub = users.add_subparsers(dest="users_command")
    users.set_defaults(func=lambda args: (users.print_help(), 2)[1])

    p = usub.add_parser("add", help="create a user (asks for the password twice, or reads --password-file)")
    p.add_argument("name", help="login name: 1-40 characters a-z 0-9 . _ -")
    p.add_argument("--role", choices=["agent", "ops"], required=True,
                   help="agent: answers calls of its services; ops: sees and manages everything")
    p.add_argument("--services", default="", help="comma-separated flow services (etat_civil,urbanisme,…; * = all)")
    p.add_argument("--phone", default="", help="SIP URI or E.164 number the switchboard rings")
    p.add_argument("--display-name", default="", help="name shown on the console")
    p.add_argument("--password-file", type=Path, help="read the password from the first line of this file")
    p.add_argument("--replace", action="store_true", help="overwrite an existing user of that name")
    p.set_defaults(func=cmd_add)

    p = usub.add_parser("list", help="list users")
    p.set_defaults(func=cmd_list)

    p = usub.add_parser("remove", help="delete a user; its sessions and API tokens stop working at once")
    p.add_argument("name")
    p.set_defaults(func=cmd_remove)

    p = usub.add_parser("passwd", help="set a user's password (ends its open sessions)")
    p.add_argument("name")
    p.add_argument("--password-file", type=Path, help="read the password from the first line of this file")
    p.set_defaults(func=cmd_passwd)

    p = usub.add_parser("token", help="make a new API token (Authorization: Bearer); printed once, as the last line")
    p.add_argument("name")
    p.set_defaults(func=cmd_token)


def read_password(path: Path | None) -> str:
    """First line of ``path``, or typed twice on a terminal; never a default."""
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise AccountError(f"cannot read the password file: {e}") from e
        return lines[0].strip() if lines else ""
    if not sys.stdin.isatty():
        raise AccountError("no terminal to type the password on: give --password-file FILE")
    first = getpass.getpass("Mot de passe : ")
    if getpass.getpass("Encore une fois : ") != first:
        raise AccountError("the two passwords differ")
    return first


def _pings(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _server_running(settings: Settings) -> bool:
    """Whether ``callbot serve`` runs on this data dir (its pid file, ``server.pid_file``; not imported: heavy)."""
    try:
        os.kill(int((settings.data_dir / "callbot.pid").read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def server_redis(settings: Settings) -> Iterator[str]:
    """The URL of the Redis the server uses (starting the embedded one for this command when no server runs)."""
    if settings.redis_url:
        yield settings.redis_url
        return
    url_file = settings.data_dir / "redis.url"
    if url_file.exists():
        url = url_file.read_text().strip()
        if _pings(url):
            yield url
            return
    if _server_running(settings):  # two redis-servers on one data dir would corrupt its append-only file
        raise AccountError(f"a callbot server runs on {settings.data_dir} but its Redis is not reachable through "
                           f"{url_file}: restart it, or set redis_url")
    from callbot.redis_server import RedisServer

    server = RedisServer(settings.data_dir / "redis").start()
    try:
        yield server.url
    finally:
        server.stop()


def _run(args: argparse.Namespace, action) -> int:
    """Open Accounts on the server's Redis, run ``action(accounts)`` (a coroutine function)."""
    import redis.asyncio as aioredis

    settings = Settings.load(args.config)

    async def go(url: str) -> int:
        client = aioredis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)
        try:
            return int(await action(Accounts(client)) or 0)
        finally:
            await client.aclose()

    with server_redis(settings) as url:
        return asyncio.run(go(url))


def cmd_add(args: argparse.Namespace) -> int:
    password = read_password(args.password_file)
    services = [s.strip() for s in args.services.split(",") if s.strip()]

    async def action(accounts: Accounts) -> int:
        user = await accounts.add(args.name, args.role, password, services, phone=args.phone,
                                  display_name=args.display_name, replace=args.replace)
        print(f"user {user.name} ({user.role}) saved; services: {', '.join(user.services) or '-'}")
        return 0

    return _run(args, action)


def cmd_list(args: argparse.Namespace) -> int:
    async def action(accounts: Accounts) -> int:
        users = await accounts.list()
        rows = [("NAME", "ROLE", "DISPLAY NAME", "SERVICES", "PHONE", "CREATED")]
        rows += [(u.name, u.role, u.display_name, ",".join(u.services), u.phone,
                  datetime.fromtimestamp(u.created).strftime("%Y-%m-%d %H:%M")) for u in users]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if not users:
            print("(no users yet: callbot users add NAME --role ops)")
        return 0

    return _run(args, action)


def cmd_remove(args: argparse.Namespace) -> int:
    async def action(accounts: Accounts) -> int:
        if not await accounts.remove(args.name):
            print(f"no user {args.name!r}", file=sys.stderr)
            return 1
        print(f"user {args.name} removed; its sessions and tokens are revoked")
        return 0

    return _run(args, action)


def cmd_passwd(args: argparse.Namespace) -> int:
    password = read_password(args.password_file)

    async def action(accounts: Accounts) -> int:
        await accounts.set_password(args.name, password)
        print(f"password of {args.name} changed; its open sessions are ended")
        return 0

    return _run(args, action)


def cmd_token(args: argparse.Namespace) -> int:
    async def action(accounts: Accounts) -> int:
        token = await accounts.new_token(args.name)
        print(f"new API token for {args.name} (shown once; send it as 'Authorization: Bearer TOKEN'):",
              file=sys.stderr)
        print(token)
        return 0

    return _run(args, action)
