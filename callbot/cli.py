"""``callbot`` command line: serve, flows, chat, eval-intents, voices, models."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from callbot import __version__
from callbot.config import Settings
from callbot.errors import CallbotError


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    try:  # pipecat logs through loguru: keep its chatter at our level or above WARNING
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="DEBUG" if level == "DEBUG" else "WARNING")
    except ImportError:  # pragma: no cover
        pass


def _serve(args: argparse.Namespace) -> int:
    overrides = {"http_port": args.port} if args.port is not None else {}
    if args.worker_id:
        overrides["worker_id"] = args.worker_id
    settings = Settings.load(args.config, **overrides)
    setup_logging(settings.log_level)
    from callbot.server import serve

    serve(settings)
    return 0


def _flows_reload(args: argparse.Namespace) -> int:
    """Every worker on the server's Redis reloads (pub/sub); without one, the local server's pid file (SIGHUP)."""
    from callbot.server import pid_file

    settings = Settings.load(args.config)
    workers = _publish_reload(settings)
    if workers:
        print(f"asked {workers} callbot worker(s) to reload their flows")
        return 0
    path = pid_file(settings)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as e:
        print(f"no running callbot found ({path}: {e})", file=sys.stderr)
        return 1
    print(f"asked callbot (pid {pid}) to reload its flows")
    return 0


def _publish_reload(settings: Settings) -> int:
    """Workers that got the reload message (0: no Redis configured or found, or nobody listening)."""
    import json

    import redis

    url = settings.redis_url
    url_file = settings.data_dir / "redis.url"
    if not url and url_file.exists():
        url = url_file.read_text().strip()
    if not url:
        return 0
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        try:
            return int(client.publish("callbot:control", json.dumps({"action": "reload_flows"})))
        finally:
            client.close()
    except (redis.RedisError, OSError) as e:
        print(f"the server's Redis ({url}) is not reachable ({e}): trying the local pid file", file=sys.stderr)
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callbot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"callbot {__version__}")
    parser.add_argument("--config", help="YAML settings file (default: $CALLBOT_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the bot (HTTP, Twilio, SIP)")
    p.add_argument("--port", type=int, help="HTTP port (default: $CALLBOT_HTTP_PORT or 8080)")
    p.add_argument("--worker-id", help="this worker's name in the registry, the call log and /healthz (default: "
                   "$CALLBOT_WORKER_ID or <hostname>-<pid>); SIGTERM drains the worker, a second one stops it")
    p.set_defaults(func=_serve)

    from callbot.demo_cli import add_subcommands as add_demo_commands
    from callbot.flows.cli import add_subcommands as add_flow_commands
    from callbot.privacy_cli import add_subcommands as add_privacy_commands
    from callbot.speech.cli import add_subcommands as add_speech_commands
    from callbot.switchboard.users_cli import add_subcommands as add_user_commands

    add_flow_commands(sub)
    add_speech_commands(sub)
    add_user_commands(sub)
    add_privacy_commands(sub)
    add_demo_commands(sub)
    flows = sub.choices.get("flows")
    if flows is not None:  # `flows reload` talks to the running server
        for action in flows._actions:
            if isinstance(action, argparse._SubParsersAction) and "reload" not in action.choices:
                action.add_parser("reload", help="reload flows in every running worker (Redis; SIGHUP as a "
                                  "fallback)").set_defaults(
                    func=_flows_reload)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CallbotError as e:
        print(f"callbot: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
