"""Prometheus metrics (``GET /metrics``), fed by the call events this worker emits.

Counters and histograms are per process: Prometheus sums the workers of a city. The
shared state (queue length, agents by state) is read from Redis at scrape time, so every
worker reports the same value: aggregate those gauges with ``max``, not ``sum``.
Each app builds its own ``CollectorRegistry`` (tests build many apps in one process).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from callbot import events as ev

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
FAST_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
WAIT_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.calls = Counter("callbot_calls", "Calls ended, by channel and end reason", ["channel", "reason"],
                             registry=r)
        self.in_progress = Gauge("callbot_calls_in_progress", "Calls being handled by this worker", registry=r)
        self.v2v = Histogram("callbot_voice_to_voice_seconds", "Caller's end of turn -> first bot audio (server side)",
                             ["trigger"], buckets=LATENCY_BUCKETS, registry=r)
        self.greeting = Histogram("callbot_greeting_latency_seconds", "Call start -> first greeting audio",
                                  buckets=FAST_BUCKETS, registry=r)
        self.asr = Histogram("callbot_asr_seconds", "Whisper decode time per caller turn", buckets=FAST_BUCKETS,
                             registry=r)
        self.tts = Histogram("callbot_tts_seconds", "Flow decision -> first bot audio (speech synthesis)",
                             buckets=FAST_BUCKETS, registry=r)
        self.overload = Counter("callbot_overload", "Capacity limits hit (refused or degraded calls)", ["what"],
                                registry=r)
        self.keypad = Counter("callbot_keypad_fallbacks", "Calls moved to the keypad menu", ["reason"], registry=r)
        self.degraded = Counter("callbot_degraded_calls", "Calls served a step down the degrading ladder "
                                "(brief prompts, greedy decoding)", ["step"], registry=r)
        self.queue_events = Counter("callbot_queue_events", "Switchboard events (queued, agent_answered, "
                                    "abandoned, callback_requested, ...)", ["event"], registry=r)
        self.queue_wait = Histogram("callbot_queue_wait_seconds", "Queue entry -> agent accepted",
                                    buckets=WAIT_BUCKETS, registry=r)
        self.emergencies = Counter("callbot_emergencies", "Emergencies detected", ["number"], registry=r)
        self.queue_length = Gauge("callbot_queue_length", "Calls waiting for an agent (shared: use max)",
                                  ["service"], registry=r)
        self.agents = Gauge("callbot_agents", "Agents by state (shared: use max)", ["state"], registry=r)
        self._started: dict[str, str] = {}  # call id -> channel, for the calls this worker is handling

    def observe(self, e: ev._Event) -> None:
        """Called for every event this worker emits (``EventStore`` observer)."""
        if isinstance(e, ev.CallStarted):
            self._started[e.call_id] = e.channel
            self.in_progress.set(len(self._started))
        elif isinstance(e, ev.CallEnded):
            channel = self._started.pop(e.call_id, "")
            self.in_progress.set(len(self._started))
            self.calls.labels(channel, e.reason).inc()
        elif isinstance(e, ev.TurnLatency):
            if e.voice_to_voice_ms is not None:
                self.v2v.labels(e.trigger).observe(e.voice_to_voice_ms / 1000)
            if e.tts_ms is not None:
                self.tts.observe(e.tts_ms / 1000)
        elif isinstance(e, ev.Transcript) and e.asr_ms is not None:
            self.asr.observe(e.asr_ms / 1000)
        elif isinstance(e, ev.CallAnswered) and e.greeting_latency_ms is not None:
            self.greeting.observe(e.greeting_latency_ms / 1000)
        elif isinstance(e, ev.Overload):
            self.overload.labels(e.what).inc()
        elif isinstance(e, ev.KeypadFallback):
            self.keypad.labels(e.reason).inc()
        elif isinstance(e, ev.Degraded):
            self.degraded.labels(e.step).inc()
        elif isinstance(e, ev.Emergency):
            self.emergencies.labels(e.number).inc()
        elif isinstance(e, (ev.Queued, ev.AgentOffered, ev.AgentAnswered, ev.AgentDeclined, ev.AgentConnected,
                            ev.QueueLeft, ev.Abandoned, ev.CallbackRequested, ev.CallbackDone)):
            self.queue_events.labels(e.type).inc()
            if isinstance(e, ev.AgentAnswered):
                self.queue_wait.observe(e.wait_s)

    def set_shared(self, queue: dict[str, int], agents: dict[str, int]) -> None:
        self.queue_length.clear()
        for service, n in queue.items():
            self.queue_length.labels(service).set(n)
        for state, n in agents.items():
            self.agents.labels(state).set(n)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
