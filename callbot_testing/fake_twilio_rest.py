"""A fake Twilio REST API: just enough of ``/2010-04-01/Accounts/{sid}/Calls/{call}.json``
for tests to see the bot hang up (``Status=completed``) or redirect a call (``Twiml=``/``Url=``),
and to make an update fail (``fail_next_update``) like an outage or a rejected TwiML would.

    async with FakeTwilioRest(account_sid, auth_token) as rest:
        # configure the bot with twilio_api_base_url=rest.base_url
        report = await place_call(bot_url, audio=[...], rest=rest)
        await rest.wait_hangup(report.call_sid, timeout=2)

Binds 127.0.0.1 on a free port (or ``port=``). Basic auth is checked when an
auth token is configured (401 with Twilio's error 20003 otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

from aiohttp import web

CallListener = Callable[[dict[str, str]], None]


@dataclass
class RestRequest:
    method: str
    path: str
    account_sid: str
    call_sid: str
    form: dict[str, str]
    auth_ok: bool
    at: float = field(default_factory=time.monotonic)
    status: int = 200  # what the fake answered


class FakeTwilioRest:
    def __init__(self, account_sid: str | None = None, auth_token: str | None = None, *, port: int = 0):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.port = port
        self.requests: list[RestRequest] = []
        self.calls: dict[str, dict[str, str]] = {}  # call sid -> last status/params
        self._hung_up: dict[str, asyncio.Event] = {}
        self._listeners: dict[str, list[CallListener]] = {}
        self._failures: list[tuple[str | None, int]] = []  # (call sid or None = any, HTTP status)
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        path = "/2010-04-01/Accounts/{account}/Calls/{call}.json"
        self.app.router.add_post(path, self._update)
        self.app.router.add_get(path, self._fetch)

    # ------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeTwilioRest:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTwilioRest:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --------------------------------------------------------------- queries
    def hung_up(self, call_sid: str) -> asyncio.Event:
        """Set once the call was updated with ``Status=completed``."""
        return self._hung_up.setdefault(call_sid, asyncio.Event())

    async def wait_hangup(self, call_sid: str, timeout: float = 5.0) -> bool:
        try:
            await asyncio.wait_for(self.hung_up(call_sid).wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def requests_for(self, call_sid: str) -> list[RestRequest]:
        return [r for r in self.requests if r.call_sid == call_sid]

    def last_twiml(self, call_sid: str) -> str | None:
        """The ``Twiml`` of the last accepted update of ``call_sid`` (None: never redirected)."""
        for r in reversed(self.requests_for(call_sid)):
            if r.method == "POST" and r.status < 300 and "Twiml" in r.form:
                return r.form["Twiml"]
        return None

    def fail_next_update(self, status: int = 500, *, call_sid: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` updates (of ``call_sid``, or any call) with HTTP ``status``.

        A failed update changes nothing and notifies no listener, like Twilio's.
        """
        self._failures.extend([(call_sid, status)] * times)

    def subscribe(self, call_sid: str, listener: CallListener) -> Callable[[], None]:
        """Call ``listener(form)`` on each authorised update of ``call_sid``; returns an unsubscribe."""
        listeners = self._listeners.setdefault(call_sid, [])
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    # --------------------------------------------------------------- handlers
    def _auth_ok(self, request: web.Request, account: str) -> bool:
        if self.account_sid and account != self.account_sid:
            return False
        if self.auth_token is None:
            return True
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == account and password == self.auth_token

    def _resource(self, account: str, call: str) -> dict[str, object]:
        state = self.calls.get(call, {})
        return {
            "sid": call,
            "account_sid": account,
            "status": state.get("Status", "in-progress"),
            "direction": "inbound",
            "api_version": "2010-04-01",
            "date_updated": formatdate(usegmt=True),
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{call}.json",
        }

    async def _update(self, request: web.Request) -> web.Response:
        account, call = request.match_info["account"], request.match_info["call"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        ok = self._auth_ok(request, account)
        self.requests.append(RestRequest("POST", request.path, account, call, form, ok, status=200 if ok else 401))
        if not ok:
            return web.json_response(
                {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401},
                status=401,
            )
        failure = next((f for f in self._failures if f[0] in (None, call)), None)
        if failure is not None:
            self._failures.remove(failure)
            self.requests[-1].status = failure[1]
            return web.json_response({"code": 20500, "message": "Internal Server Error (injected by the test)",
                                      "more_info": "https://www.twilio.com/docs/errors/20500",
                                      "status": failure[1]}, status=failure[1])
        self.calls.setdefault(call, {}).update(form)
        if form.get("Status") == "completed":
            self.hung_up(call).set()
        for listener in list(self._listeners.get(call, [])):
            listener(form)
        return web.json_response(self._resource(account, call))

    async def _fetch(self, request: web.Request) -> web.Response:
        account, call = request.match_info["account"], request.match_info["call"]
        ok = self._auth_ok(request, account)
        self.requests.append(RestRequest("GET", request.path, account, call, {}, ok))
        if not ok:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        return web.json_response(self._resource(account, call))


async def start_fake_rest(account_sid: str | None = None, auth_token: str | None = None, port: int = 0) -> FakeTwilioRest:
    return await FakeTwilioRest(account_sid, auth_token, port=port).start()
