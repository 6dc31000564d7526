"""Composition root: builds the runtime once (Redis, store, flows, models, voice) and serves HTTP.

One aiohttp application serves the Twilio webhooks and media websocket, the
JSON API and (later) the dashboards. Models are loaded before the server
accepts calls; ``GET /healthz`` answers 200 once they are.

Each process is one worker among possibly several on one Redis (``callbot/workers.py``:
its id goes on every call, its record in the worker registry); SIGTERM drains it
(``callbot/drain.py``) instead of cutting calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from callbot.call import record_rejected, resume_call, run_call
from callbot.config import Settings
from callbot.drain import DRAIN, Drain
from callbot.heap import HeapFreezer
from callbot.orphans import OrphanSweeper
from callbot.osthreads import default_executor_workers, name_thread, prestart
from callbot.privacy import Retention
from callbot.redis_server import RedisServer
from callbot.runtime import FlowLibrary, Runtime
from callbot.store import EventStore
from callbot.stats.consumer import StatsConsumer
from callbot.stats.rollup import Rollups
from callbot.telephony import twilio
from callbot.web import api, console, dashboard, stats_api
from callbot.web.auth import accounts_on, redis_secret, setup_auth
from callbot.workers import DRAINING, WORKER, Worker, WorkerRegistry, default_worker_id
from callbot.workers import setup_routes as setup_worker_routes

log = logging.getLogger(__name__)


async def build_runtime(settings: Settings, store: EventStore) -> Runtime:
    """Load flows, Whisper, the voice and the prompt cache (blocking work in threads)."""
    from callbot.speech.asr import SharedWhisper
    from callbot.speech.prompt_cache import PromptCache
    from callbot.speech.voices import select_voice

    flows, asr, voice = await asyncio.gather(asyncio.to_thread(FlowLibrary, settings.flow),
                                             asyncio.to_thread(SharedWhisper, settings),
                                             asyncio.to_thread(select_voice, settings))
    prompts = PromptCache(voice, disk_dir=settings.cache_dir / "prompts")
    from callbot.switchboard.waiting import STATIC_PROMPTS

    texts = [*flows.current.static_prompts(), *STATIC_PROMPTS]
    warm_s, _ = await asyncio.gather(asyncio.to_thread(asr.warm_up_sync), asyncio.to_thread(prompts.warm, texts))
    await _prestart_pools(asr)
    log.info("ready: flow %s (%s) from %s, %d prompts cached, voice %s:%s, Whisper warmed up in %.2f s",
             flows.current.name, flows.current.version, flows.path, len(texts), voice.engine, voice.name, warm_s)
    from callbot.constants import PIPELINE_OUT_RATE
    from callbot.switchboard.service import build_switchboard

    switchboard = build_switchboard(settings, store.redis, flows, prompts.get_or_render, PIPELINE_OUT_RATE)
    return Runtime(settings=settings, store=store, flows=flows, asr=asr, voice=voice, prompts=prompts,
                   switchboard=switchboard, clock=switchboard.clock)


def create_app(settings: Settings) -> web.Application:
    if not settings.worker_id:  # every call names its worker: one id per process, set before anything uses it
        settings = settings.model_copy(update={"worker_id": default_worker_id()})
    app = web.Application(client_max_size=1 << 20)
    worker = app[WORKER] = Worker(settings.worker_id, http_port=settings.http_port)
    drain = app[DRAIN] = Drain(worker, settings.drain_timeout_secs)

    heap = HeapFreezer(lambda: worker.active_calls())

    async def on_call(transport, info, control) -> None:
        try:
            with drain.call():
                await run_call(app[api.RUNTIME], transport, info, control)
        finally:
            heap.call_ended()

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        redis_server = None
        redis_url = settings.redis_url
        redis_url_file = settings.data_dir / "redis.url"
        if not redis_url:
            redis_server = await asyncio.to_thread(RedisServer(settings.data_dir / "redis").start)
            redis_url = redis_server.url
            redis_url_file.write_text(redis_url + "\n")  # `callbot users ...` finds this Redis here
        store = EventStore(redis_url, max_calls=settings.call_log_max)
        await store.start()
        try:
            rt = await build_runtime(settings, store)
            app[api.RUNTIME] = rt
            store.observers.append(app[stats_api.METRICS].observe)
            rollups = app[stats_api.ROLLUPS] = Rollups(
                store.redis, short_abandon_s=settings.stats_short_abandon_secs,
                sl_threshold_s=settings.stats_service_level_secs, retention_days=settings.retention_days,
                tz=ZoneInfo(rt.flows.current.settings.timezone))
            consumer = StatsConsumer(store.redis, rollups)
            retention = Retention(store.redis, settings.retention_days)
            await consumer.start()
            await retention.start()
            sip = await _start_sip(settings, on_call, lambda info, status, why: record_rejected(rt, info, status, why))
            worker.sip_port = sip.port if sip is not None else None
            worker.active_calls = lambda: calls_in_progress(rt, sip)
            if sip is not None:
                worker.on_state(lambda state: sip.set_draining(state == DRAINING))

            def stopping(why: str) -> None:  # a call cut by the drain records why (call.py)
                rt.stopping = why

            drain.on_force.append(stopping)
            webhook = None
            if settings.ticket_webhook_url:
                from callbot.ticket_webhook import TicketWebhook

                webhook = TicketWebhook(store.redis, settings.ticket_webhook_url)
                await webhook.start()
            rt.ready = True
            registry = WorkerRegistry(store.redis, worker)
            await registry.start()
            orphans = OrphanSweeper(store, worker.id)  # calls left open by a worker that died
            await orphans.start()
            heap.freeze()  # after everything start-up builds for good: the cyclic GC walks calls only
            log.info("worker %s serving (pid %d, HTTP port %s, SIP port %s)", worker.id, worker.pid,
                     settings.http_port, worker.sip_port)
            control = _install_reload(rt, heap.freeze)
            try:
                yield
            finally:
                await orphans.stop()
                await registry.stop()
                control.cancel()
                await asyncio.gather(control, return_exceptions=True)
                await consumer.stop()
                await retention.stop()
                if webhook is not None:
                    await webhook.stop()
                if sip is not None:
                    await sip.stop()
        finally:
            await store.close()
            if redis_server:
                redis_url_file.unlink(missing_ok=True)
                await asyncio.to_thread(redis_server.stop)

    app.cleanup_ctx.append(runtime_ctx)
    api.setup_routes(app)
    setup_worker_routes(app)  # /api/workers
    console.setup_routes(app)  # /console, its /api/console/*, /api/queue, /api/callbacks, /static/
    dashboard.setup_routes(app)  # /dashboard, /dashboard/calls/{id}, /api/calls/search, /api/calls.csv, /api/stats.csv
    stats_api.setup_routes(app)  # /api/stats, /api/live, /metrics

    async def on_resume(transport, info, control) -> None:
        try:
            with drain.call():
                await resume_call(app[api.RUNTIME], transport, info, control)
        finally:
            heap.call_ended()

    async def on_dial_result(call_id: str, status: str, duration_s: float) -> None:
        from callbot.switchboard.handover import provider_dial_result

        rt = app[api.RUNTIME]
        await provider_dial_result(rt.store, rt.switchboard, call_id, status, duration_s)

    twilio.setup_routes(app, settings, on_call, on_resume=on_resume, on_dial_result=on_dial_result)
    # after every route: all but /healthz, /login, /static/ and /twilio/ need a login or a token
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis), secret_getter=redis_secret,
               cookie_secure=settings.session_cookie_secure)
    return app


async def _prestart_pools(asr) -> None:
    """The thread pools calls use, their threads started now rather than on the event loop during a call
    (``osthreads.prestart``): the loop's default executor (``asyncio.to_thread``), Whisper's, synthesis', the VAD's."""
    from callbot.speech import tts, vad

    pools = [(None, default_executor_workers()), (tts._synth_pool(), tts.SYNTH_THREADS), (vad._shared()[1], 1)]
    executor = getattr(asr, "_executor", None)
    if executor is not None:
        pools.append((executor, asr.max_concurrent))
    await asyncio.gather(*(prestart(pool, n) for pool, n in pools))


def calls_in_progress(rt: Runtime, sip) -> int:
    """Calls this worker is on: those in the pipeline (``rt.active_calls``) plus SIP calls still being
    answered or hung up (``sip.active_calls``), each counted once."""
    if sip is None:
        return len(rt.active_calls)
    in_pipeline = {i.provider_call_id for i in rt.active_calls.values() if i.channel == "sip"}
    return len(rt.active_calls) + sum(1 for c in sip.active_calls if c.meta.sip_call_id not in in_pipeline)


async def _start_sip(settings: Settings, on_call, on_rejected=None):
    """The SIP listener, when enabled; a port already in use is reported, and HTTP keeps serving."""
    if not settings.sip_enabled:
        return None
    from callbot.telephony.sip.server import SipServer

    sip = SipServer.from_settings(settings, on_call, on_rejected=on_rejected)
    try:
        await sip.start()
    except Exception as e:
        log.error("SIP listener on %s:%s could not start (%s): SIP calls are OFF, Twilio still works",
                  settings.sip_host, settings.sip_port, e)
        return None
    if settings.sip_host in ("0.0.0.0", "::"):  # baresip binds each interface address present now, not loopback
        log.info("SIP listening on port %s (UDP and TCP) of every interface address but loopback", settings.sip_port)
    else:
        log.info("SIP listening on %s:%s (UDP and TCP)", settings.sip_host, settings.sip_port)
    return sip


CONTROL = "callbot:control"  # pub/sub: {"action": "reload_flows"} reaches every worker on this Redis


def _install_reload(rt: Runtime, on_reloaded: Callable[[], object] = lambda: None) -> asyncio.Task:
    """``callbot flows reload`` (a message on ``CONTROL``: every worker, wherever it runs) or SIGHUP reload
    the flow file; calls in progress finish on the version they started with. Returns the listener task.
    ``on_reloaded``: after a successful reload (the new flow's objects frozen out of the GC, ``heap.py``)."""

    async def reload() -> None:
        try:
            flow = await asyncio.to_thread(rt.flows.reload)
            await asyncio.to_thread(rt.prompts.warm, flow.static_prompts())
        except Exception as e:
            log.error("flow reload failed, still running version %s: %s", rt.flows.current.version, e)
            return
        on_reloaded()

    async def listen() -> None:
        while True:
            pubsub = rt.store.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CONTROL)
                async for message in pubsub.listen():
                    try:
                        action = json.loads(message["data"]).get("action")
                    except (ValueError, AttributeError, TypeError):
                        log.warning("ignored a malformed control message: %.100r", message.get("data"))
                        continue
                    if action == "reload_flows":
                        log.warning("flow reload asked through Redis")
                        await reload()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis restarting: listen again
                log.warning("control channel lost (%s); listening again", e)
                await asyncio.sleep(2)
            finally:
                await pubsub.aclose()

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))
    except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
        pass
    return asyncio.create_task(listen(), name="control-listener")


def pid_file(settings: Settings) -> Path:
    return settings.data_dir / "callbot.pid"


def serve(settings: Settings) -> None:
    """Run until stopped: SIGTERM or SIGINT drains (``callbot/drain.py``), a second one stops at once."""
    name_thread("callbot")  # the event loop's thread; threads started from it inherit the name
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pid_path = pid_file(settings)
    pid_path.write_text(str(os.getpid()))
    try:
        asyncio.run(_serve(settings))
    finally:
        pid_path.unlink(missing_ok=True)


async def _serve(settings: Settings) -> None:
    app = create_app(settings)
    drain = app[DRAIN]
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    main = asyncio.current_task()
    serving = False

    def on_signal(name: str) -> None:
        if serving:
            drain.request(name)
        elif main is not None and not main.cancelling():
            log.warning("%s during start-up: stopping", name)
            main.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await runner.setup()  # the runtime: Redis, models, SIP (cleanup_ctx)
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        log.info("listening on http://%s:%s", settings.http_host, settings.http_port)
        serving = True
        await drain.wait()
    except asyncio.CancelledError:
        log.warning("stopped before serving")
    finally:
        await runner.cleanup()  # SIP stack down, events flushed to Redis, registry record removed
        log.warning("worker %s stopped", app[WORKER].id)
