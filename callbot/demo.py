"""Synthetic calls for demos and for the stats dashboard: ``callbot demo seed``.

Why real events: the calls are typed ``callbot.events`` stamped with their historic time and
written through the real ``EventStore`` (stream, calls index, per-call keys, tickets), exactly as
live calls; the server's stats consumer then counts them like any other call, so the demo also
exercises the whole statistics chain. The texts come from the flow (intent examples, prompts),
the shape from a town hall's day: peaks 9-11 h and 14-16 h, Saturday morning only, Monday busiest.

``generate`` is pure and deterministic (same flow, seed and ``now`` -> same calls); ``seed``
writes them; a second run with the same seed is refused rather than doubling the calls.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from callbot import events as ev
from callbot.errors import CallbotError
from callbot.flows.checks import as_list
from callbot.flows.conditions import is_open
from callbot.flows.text import phone_words
from callbot.stats.facts import call_facts
from callbot.store import EventStore
from callbot.switchboard.callbacks import Callback

# weekday (0 = Monday) -> share of a normal day's calls; hour weights (local time)
DAY_FACTOR = (1.3, 1.0, 0.95, 1.0, 0.9, 0.35, 0.02)
WEEK_HOURS = (.1, .05, .05, .05, .05, .1, .3, 1, 4, 9, 10, 8, 3.5, 3.5, 8.5, 9, 7, 3, 1.2, .6, .4, .3, .2, .1)
SATURDAY_HOURS = (.1, .05, .05, .05, .05, .1, .2, .6, 4, 9, 9, 6, 1.5, .6, .5, .4, .4, .3, .2, .2, .2, .1, .1, .1)
OUTCOMES = {"resolved": 56, "agent": 20, "queue_abandon": 6, "bot_abandon": 8, "callback": 5, "emergency": 1,
            "rejected": 1.5, "unreached": 2, "error": 0.5}
NEEDS_AGENT = ("agent", "queue_abandon")  # only while the town hall is open
INTENTS = {"horaires": 18, "identite": 12, "etat_civil_naissance": 7, "etat_civil_mariage": 3, "etat_civil_deces": 3,
           "elections": 3, "recensement_citoyen": 2, "urbanisme": 6, "voirie": 4, "eclairage": 4,
           "proprete_dechets": 4, "encombrants": 4, "inscription_scolaire": 3, "periscolaire": 3, "petite_enfance": 2,
           "social": 3, "logement": 2, "cimetiere": 2, "location_salle": 2, "police_municipale": 2, "animaux": 1,
           "eau_assainissement": 1, "stationnement": 1, "travaux": 1, "evenements": 1, "culture": 1,
           "sport_loisirs": 1, "reclamation": 1, "hors_sujet": 2, "attestation_accueil": 1, "transports": 1,
           "objets_trouves": 1, "rendez_vous_elu": 1}
REPORTS = {"voirie": ("signal_voirie", "voirie"), "eclairage": ("signal_eclairage", "eclairage"),
           "proprete_dechets": ("signal_dechets", "proprete"), "animaux": ("signal_animaux", "animaux")}
NO_MATCH = ("je voudrais une place de crèche pour mon chien", "vous vendez des timbres fiscaux pour la pêche",
            "c'est pour réserver le maire pour mon anniversaire", "vous avez retrouvé mon dentier",
            "mon voisin a peint son portail en violet c'est autorisé", "c'est combien la piscine pour un chat",
            "je voudrais adopter un rond-point", "le wifi de la bibliothèque marche plus chez moi")
EMERGENCIES = (("15", "mon père a fait un malaise il ne répond plus"), ("18", "il y a de la fumée dans le garage"),
               ("17", "quelqu'un essaie de forcer ma porte"))
STREETS = ("rue Victor Hugo", "rue des Tilleuls", "rue de la République", "rue Jean Jaurès", "avenue de la Gare",
           "chemin des Vignes")
DETAILS = ("le lampadaire clignote toute la nuit", "un gros trou sur le trottoir", "des sacs poubelles déposés",
           "un chien tourne dans le quartier depuis ce matin", "la plaque d'égout est soulevée")
MOTIFS = ("mon dossier de mariage", "une question sur la cantine", "le permis de construire de mon garage",
          "une attestation pour la caisse de retraite", "le colis des aînés")
AGENTS = {"agent": "demo-agent", "police_municipale": "demo-police", "elus": "demo-police"}
# intent -> (service, transfer node, reason, node offering a person, its yes/no slot), as in the flow
SERVICE_OF = {"police_municipale": ("police_municipale", "police_transfert", "police municipale", "police_offre",
                                    "veut_police"),
              "rendez_vous_elu": ("elus", "elu_transfert", "rendez-vous avec un élu", "", "")}
TO_AGENT = ("agent", "agent_transfert", "demande d'un agent", "offre_agent", "veut_agent")
DEMO_USERS = (("demo-agent", "agent", ["agent"], "Agent d'accueil (démo)"),
              ("demo-police", "agent", ["police_municipale", "elus"], "Police municipale (démo)"),
              ("demo-ops", "ops", [], "Responsable (démo)"))
SEEDS_KEY = "callbot:demo:seeds"  # seeds already written here: a second run would double the history
EMIT_CHUNK = 20_000  # events queued at once (the store's buffer holds 200 000)


class DemoError(CallbotError):
    code = "demo_error"


@dataclass
class DemoCall:
    call_id: str
    started: float
    plan: str
    events: list[ev._Event] = field(default_factory=list)
    callback: Callback | None = None


@dataclass
class SeedReport:
    calls: int
    events: int
    tickets: int
    callbacks: int
    outcomes: dict[str, int]
    first_day: date
    last_day: date


class _Call:
    """One call's timeline: each step advances the clock and stamps its events."""

    def __init__(self, gen: "_Generator", call: DemoCall) -> None:
        self.g, self.call, self.t = gen, call, call.started
        self.latency: tuple[float, float] | None = None

    def emit(self, event: ev._Event, after: float = 0.0) -> None:
        self.t += after
        self.call.events.append(ev.stamp(event, self.call.call_id, round(self.t, 3)))

    def bot(self, node: str, text: str | None = None, *, kind: str = "", values: dict | None = None) -> None:
        """Enter ``node`` and say its prompt (or ``text``); the turn's latency once the audio starts."""
        if kind != "-":
            self.emit(ev.NodeEntered(node=node, kind=kind or getattr(self.g.flow.nodes.get(node), "type", "")))
        say = text if text is not None else next(iter(as_list(getattr(self.g.flow.nodes.get(node), "say", []))), "")
        prompt = self.g.flow.render(say, values)
        if not prompt.text:
            return
        self.emit(ev.BotSaid(text=prompt.text, node=node, cached=prompt.static))
        if self.latency:
            v2v, asr = self.latency
            tts = self.g.rng.uniform(0, 6) if prompt.static else self.g.rng.uniform(90, 320)
            self.emit(ev.TurnLatency(voice_to_voice_ms=round(v2v), asr_ms=round(asr), tts_ms=round(tts),
                                     flow_ms=round(self.g.rng.uniform(4, 35))))
            self.latency = None
        self.t += len(prompt.text) / 14.0  # ~14 characters per second of speech

    def hear(self, text: str, node: str, intent: str | None = "", conf: float = 0.0, after: float = 1.0) -> None:
        """A caller turn: speech, the recogniser's decode, the intent (``""`` = none asked, ``None`` = no match)."""
        rng = self.g.rng
        v2v = min(2500.0, max(900.0, rng.lognormvariate(math.log(1350), 0.25)))
        asr = v2v * rng.uniform(0.35, 0.5)
        speech = 0.8 + len(text) / 15.0
        self.emit(ev.Transcript(text=text, audio_s=round(speech, 2), asr_ms=round(asr), node=node),
                  after + speech + v2v / 1000)
        if intent is None or intent:
            self.emit(ev.IntentMatched(intent=intent, confidence=round(conf, 3), text=text, node=node))
        self.latency = (v2v, asr)

    def answer(self, text: str, node: str, slot: str, value: Any, confirmed: bool = False) -> None:
        self.hear(text, node)
        self.emit(ev.SlotFilled(slot=slot, value=value, confirmed=confirmed, node=node))

    def end(self, reason: str, detail: str = "", after: float = 0.5) -> None:
        self.t += after
        self.emit(ev.CallEnded(reason=reason, detail=detail, duration_s=round(self.t - self.call.started, 3)))


class _Generator:
    def __init__(self, flow: Any, rng: random.Random, rng_seed: int) -> None:
        self.flow, self.rng, self.rng_seed = flow, rng, rng_seed
        self.tz = ZoneInfo(flow.settings.timezone)
        self.intents = {k: w for k, w in INTENTS.items() if k in flow.intents and flow.intents[k].examples}
        self.recent: deque[tuple[float, str]] = deque()
        self.n = 0

    def pick(self, weights: dict[str, float]) -> str:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def is_open(self, t: datetime) -> bool:
        spec = self.flow.spec
        table = spec.hours.get("mairie") or next(iter(spec.hours.values()), {})
        return not spec.hours or is_open(table, t, tuple(spec.closed_dates), self.flow.settings.holidays_subdiv)

    def caller(self, ts: float) -> str:
        while self.recent and ts - self.recent[0][0] > 86400:
            self.recent.popleft()
        if self.recent and self.rng.random() < 0.08:  # calls back within 24 h
            return self.rng.choice(self.recent)[1]
        if self.rng.random() < 0.04:
            return "anonymous"
        number = "+33" + self.rng.choice("66667779") + f"{self.rng.randrange(10 ** 8):08d}"
        self.recent.append((ts, number))
        return number

    def day(self, day: date, calls_per_day: float, now: datetime) -> list[DemoCall]:
        rng = self.rng
        hours = SATURDAY_HOURS if day.weekday() == 5 else WEEK_HOURS
        count = max(0, round(calls_per_day * DAY_FACTOR[day.weekday()] * rng.uniform(0.92, 1.08)))
        slots = []
        for _ in range(count):
            plan = self.pick(OUTCOMES)
            at = datetime.combine(day, time(rng.choices(range(24), weights=hours)[0], rng.randrange(60),
                                            rng.randrange(60)), self.tz)
            want_open = plan in NEEDS_AGENT  # a person answers while open; "nobody here" while closed
            if (want_open or plan == "unreached") and self.is_open(at) != want_open:
                for _ in range(40):
                    if self.is_open(at := at.replace(hour=rng.choice((7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)),
                                                     minute=rng.randrange(60))) == want_open:
                        break
                else:
                    plan = "callback" if want_open else plan
            slots.append((at, plan))
        out = []
        for at, plan in sorted(slots):
            self.n += 1
            call = DemoCall(f"{rng.getrandbits(64):016x}", at.timestamp() + rng.random(), plan)
            self.script(_Call(self, call), at)
            if call.events[-1].ts <= now.timestamp():  # over by now
                out.append(call)
        return out

    # ---- one call
    def script(self, c: _Call, at: datetime) -> None:
        rng, plan = self.rng, c.call.plan
        caller = self.caller(c.t)
        channel = rng.choice(("sip", "sip", "sip", "twilio"))
        c.emit(ev.CallStarted(channel=channel, caller=caller, called="+33240000000", flow=self.flow.name,
                              flow_version=self.flow.version, provider_call_id=f"demo-{self.rng_seed}-{self.n}"))
        if plan == "rejected":
            c.emit(ev.Overload(what="sip_busy", detail="max_calls reached"), 0.01)
            return c.end("rejected", "486 Busy Here", 0.01)
        start = self.flow.settings.start
        c.emit(ev.NodeEntered(node=start, kind="ask"), 0.2)
        for text in self.flow.opening:  # the AI disclosure first, as Session.start() says it
            c.emit(ev.BotSaid(text=text, node=start, cached=True))
        c.emit(ev.CallAnswered(greeting_latency_ms=round(rng.uniform(250, 800))), 0.3)
        if plan == "bot_abandon" and rng.random() < 0.4:  # hangs up during the greeting
            return c.end("caller_hangup", "", rng.uniform(1.0, 4.0))
        c.t += sum(len(t) for t in self.flow.opening) / 14.0
        c.bot(start, kind="-")
        if plan == "bot_abandon":
            self.no_match(c, start)
            if rng.random() < 0.5:
                c.emit(ev.NoInput(kind="no_input", node=start, count=1), 7.0)
                c.bot(start, self.flow.spec.messages.no_input, kind="-")
                return c.end("timeout", "no input", 7.0)
            return c.end("caller_hangup", "", rng.uniform(2, 8))
        if plan == "emergency":
            number, text = rng.choice(EMERGENCIES)
            c.hear(text, start, "urgence", rng.uniform(0.7, 0.95))
            c.emit(ev.Emergency(number=number, text=text, node=start, reason="words"))
            c.bot("urgence", "", kind="condition")
            c.bot("urgence_message", values={"urgence_numero": number, "urgence_service": "les secours"})
            return c.end("caller_hangup", "", rng.uniform(1, 4))
        if rng.random() < 0.1:
            self.no_match(c, start)
        intent = "parler_agent" if plan in ("unreached", "callback") or (plan in NEEDS_AGENT and rng.random() < 0.4) \
            else self.pick(self.intents)
        example = rng.choice(self.flow.intents[intent].examples)
        c.hear(example, start, intent, rng.uniform(0.5, 0.98))
        if plan == "error":
            c.emit(ev.ErrorEvent(code="call_failed", message="media stream lost", stage="call"), 1.0)
            return c.end("error", "ConnectionError: media stream lost")
        if plan == "unreached" or plan == "callback" and not (self.is_open(at) and caller.startswith("+")):
            return self.closed(c, plan == "callback", caller)  # closed, or no number to call back
        if intent != "parler_agent":
            self.answer(c, intent)
        if plan == "resolved":
            return self.goodbye(c)
        service, node, reason, offer, slot = SERVICE_OF.get(intent, TO_AGENT)
        if intent != "parler_agent" and offer:
            c.bot(offer)
            c.answer("oui", offer, slot, True)
        c.emit(ev.NodeEntered(node=node, kind="transfer"))
        c.emit(ev.TransferRequested(target=service, reason=reason, node=node))
        c.bot(node, kind="-")
        self.queue(c, service, plan, caller)

    def no_match(self, c: _Call, node: str) -> None:
        c.hear(self.rng.choice(NO_MATCH), node, None, self.rng.uniform(0.1, 0.35))
        c.emit(ev.NoInput(kind="no_match", node=node, count=1))
        c.bot(node, self.flow.spec.messages.no_match, kind="-")

    def answer(self, c: _Call, intent: str) -> None:
        """The flow's answer; reports collect a place and a description and make a ticket."""
        rng, node = self.rng, self.flow.intents[intent].goto or "autre_chose"
        c.bot(node)
        if intent not in REPORTS and intent != "encombrants":
            return
        where = f"{rng.randint(1, 80)} {rng.choice(STREETS)}"
        say_node, kind = REPORTS.get(intent, ("encombrants", "encombrants"))
        if intent in REPORTS:
            c.bot(say_node)
            c.bot("signal_lieu")
            c.answer(where, "signal_lieu", "lieu", where, confirmed=True)
            c.bot("signal_details")
            what = rng.choice(DETAILS)
            c.answer(what, "signal_details", "details", what)
            fields = {"lieu": where, "description": what, "service": "services_techniques"}
            node = "signal_ticket"
        else:
            c.bot("encombrants_demande")
            c.answer(where, "encombrants_demande", "adresse", where, confirmed=True)
            c.bot("encombrants_objets")
            c.answer("une armoire et un vieux matelas", "encombrants_objets", "objets", "une armoire et un matelas")
            fields = {"adresse": where, "objets": "une armoire et un matelas", "service": "services_techniques"}
            node = "encombrants_ticket"
        c.emit(ev.TicketCreated(ticket_id=self.ticket_id(c.t), kind=kind, fields=fields, node=node))
        c.bot(node, kind="-")

    def goodbye(self, c: _Call) -> None:
        rng = self.rng
        if rng.random() < 0.2:  # satisfied, hangs up without waiting for the end
            return c.end("caller_hangup", "", rng.uniform(2, 6))
        c.bot("autre_chose")
        c.hear("non merci", "autre_chose", "non", 0.97)
        c.bot("enquete")
        if rng.random() < 0.35:
            score = rng.choices((5, 4, 3, 2, 1), weights=(45, 30, 12, 6, 7))[0]
            c.emit(ev.DigitsPressed(digits=str(score), node="enquete"), rng.uniform(1, 4))
            c.emit(ev.SurveyAnswered(score=score, node="enquete"))
            c.bot("enquete", self.flow.nodes["enquete"].thanks, kind="-")
        c.bot("au_revoir")
        c.end("bot_hangup", "au_revoir")

    def queue(self, c: _Call, service: str, plan: str, caller: str) -> None:
        rng = self.rng
        c.emit(ev.Queued(service=service, position=rng.choice((1, 1, 1, 2, 2, 3, 4))), 0.5)
        if plan == "queue_abandon":
            wait = rng.uniform(1, 4.5) if rng.random() < 0.3 else rng.uniform(10, 180)
            c.emit(ev.Abandoned(service=service, wait_s=round(wait, 1), position=1), wait)
            return c.end("caller_hangup")
        if plan == "callback":
            wait = rng.uniform(30, 300)
            c.emit(ev.QueueLeft(service=service, wait_s=round(wait, 1), cause="callback_key"), wait)
            self.callback(c, service, caller, "callback_key", rng.choice(("matin", "apres_midi", "indifferent")))
            c.bot("rappel_ticket", "C'est noté, un agent vous rappellera dès que possible.", kind="-")
            return c.end("bot_hangup", "callback")
        agent = AGENTS.get(service, "demo-agent")
        wait = min(120.0, max(5.0, rng.lognormvariate(math.log(18), 0.75)))
        c.emit(ev.AgentOffered(agent=agent, service=service), wait * 0.8)
        if rng.random() < 0.1:
            c.emit(ev.AgentDeclined(agent=agent, cause="timeout", ring_s=20.0), 20.0)
            c.emit(ev.AgentOffered(agent=agent, service=service), 1.0)
        ring = rng.uniform(2, 8)
        c.emit(ev.AgentAnswered(agent=agent, service=service, wait_s=round(wait, 1), ring_s=round(ring, 1)),
               wait * 0.2 + ring)
        talk = rng.uniform(40, 420)
        c.emit(ev.AgentConnected(agent=agent, service=service, talk_s=round(talk, 1), mode="bridge"), 1.0 + talk)
        c.end("transferred", f"talked with {agent}")

    def closed(self, c: _Call, wants: bool, caller: str) -> None:
        """Out of hours (or a hidden number): the flow offers a callback and collects a number."""
        c.bot("agent", "", kind="condition")
        c.bot("agent_ferme")
        c.answer("oui" if wants else "non merci", "agent_ferme", "rappel_souhaite", wants)
        if not wants:
            c.bot("au_revoir")
            return c.end("bot_hangup", "au_revoir")
        number = caller if caller.startswith("+33") else "+33" + "6" + f"{self.rng.randrange(10 ** 8):08d}"
        national = "0" + number[3:]
        c.bot("rappel_numero")
        c.hear(phone_words(national), "rappel_numero")
        c.bot("rappel_numero", as_list(self.flow.nodes["rappel_numero"].confirm_say)[0], kind="-",
              values={"value": phone_words(national)})
        c.answer("oui", "rappel_numero", "telephone", national, confirmed=True)
        motif = self.rng.choice(MOTIFS)
        c.bot("rappel_motif")
        c.answer(motif, "rappel_motif", "motif", motif)
        c.bot("rappel_creneau")
        slot = self.rng.choice(("matin", "apres_midi"))
        said = "plutôt le matin" if slot == "matin" else "l'après-midi"
        c.answer(said, "rappel_creneau", "creneau", said)
        fields = {"telephone": national, "motif": motif, "creneau": said, "service": "agent"}
        c.emit(ev.TicketCreated(ticket_id=self.ticket_id(c.t), kind="rappel", fields=fields, node="rappel_ticket"))
        c.bot("rappel_ticket")
        c.bot("au_revoir")
        self.callback(c, "agent", national, "flow", slot, motif)
        c.end("bot_hangup", "au_revoir")

    def callback(self, c: _Call, service: str, number: str, reason: str, slot: str, summary: str = "") -> None:
        cb_id = f"R{datetime.fromtimestamp(c.t, self.tz):%y%m%d}-{self.rng.getrandbits(24):06X}"
        c.emit(ev.CallbackRequested(callback_id=cb_id, service=service, number=number, slot=slot, reason=reason))
        c.call.callback = Callback(id=cb_id, service=service, number=number, call_id=c.call.call_id, slot=slot,
                                   reason=reason, summary=summary or "rappel demandé depuis la file d'attente",
                                   created=c.t, updated=c.t)

    def ticket_id(self, ts: float) -> str:
        return f"T{datetime.fromtimestamp(ts, self.tz):%y%m%d}-{self.rng.getrandbits(24):06X}"

    def close_callback(self, call: DemoCall, now: float) -> None:
        """Agents work through yesterday's callbacks; today's stay open on the console."""
        cb = call.callback
        done_at = cb.created + self.rng.uniform(1800, 20 * 3600)
        if done_at > now or self.rng.random() < 0.1:
            return
        outcome = "no_answer" if self.rng.random() < 0.15 else "done"
        agent = AGENTS.get(cb.service, "demo-agent")
        note = "Rappelé, renseignements donnés." if outcome == "done" else "Pas de réponse, message laissé."
        call.events.append(ev.stamp(ev.CallbackDone(callback_id=cb.id, outcome=outcome, agent=agent, note=note),
                                    call.call_id, round(done_at, 3)))
        cb.attempts, cb.agent, cb.note, cb.updated = 1, agent, note, done_at
        cb.status = "done" if outcome == "done" else "open"


def generate(flow: Any, *, days: int = 7, calls_per_day: float = 300, rng_seed: int = 1,
             now: datetime | None = None) -> list[DemoCall]:
    """The calls of the ``days`` calendar days ending today (up to ``now``), oldest first. Pure."""
    if days < 1 or calls_per_day < 0:
        raise DemoError("days must be 1 or more and calls per day 0 or more")
    gen = _Generator(flow, random.Random(rng_seed), rng_seed)
    now = (now or datetime.now(gen.tz)).astimezone(gen.tz)
    calls: list[DemoCall] = []
    for back in range(days - 1, -1, -1):
        calls += gen.day(now.date() - timedelta(days=back), calls_per_day, now)
    for call in calls:
        if call.callback:
            gen.close_callback(call, now.timestamp())
    return calls


async def seed(redis_url: str, flow: Any, *, days: int = 7, calls_per_day: float = 300, rng_seed: int = 1,
               now: datetime | None = None, max_calls: int = 10_000) -> SeedReport:
    """Write ``generate``'s calls through the event store, and their callback requests for the console."""
    calls = generate(flow, days=days, calls_per_day=calls_per_day, rng_seed=rng_seed, now=now)
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.sismember(SEEDS_KEY, str(rng_seed))
        for call in calls:
            pipe.exists(f"callbot:call:{call.call_id}")
        if any(await pipe.execute()):
            raise DemoError(f"the demo calls of seed {rng_seed} are already in this Redis; use another --seed")
        await redis.sadd(SEEDS_KEY, str(rng_seed))
        store = EventStore(redis_url, max_calls=max_calls)
        await store.start()
        try:
            events = sorted((e for call in calls for e in call.events), key=lambda e: e.ts)
            for i in range(0, len(events), EMIT_CHUNK):
                for e in events[i:i + EMIT_CHUNK]:
                    store.emit(e)
                if not await store.flush(300):
                    raise DemoError("Redis did not take the demo events within 5 minutes")
        finally:
            await store.close()
        pipe = redis.pipeline(transaction=False)
        for cb in (call.callback for call in calls if call.callback):
            pipe.set(f"callbot:sb:callback:{cb.id}", cb.model_dump_json())
            pipe.zadd(f"callbot:sb:callbacks:{cb.service}", {cb.id: cb.created})
            pipe.sadd("callbot:sb:callback_services", cb.service)
        await pipe.execute()
    finally:
        await redis.aclose()
    tz = ZoneInfo(flow.settings.timezone)
    days_seen = sorted({datetime.fromtimestamp(c.started, tz).date() for c in calls}) or [date.today()]
    return SeedReport(calls=len(calls), events=sum(len(c.events) for c in calls),
                      tickets=sum(isinstance(e, ev.TicketCreated) for c in calls for e in c.events),
                      callbacks=sum(1 for c in calls if c.callback), outcomes=outcomes(calls),
                      first_day=days_seen[0], last_day=days_seen[-1])


def outcomes(calls: list[DemoCall]) -> dict[str, int]:
    """Calls per outcome, as the statistics classify them (``callbot.stats.call_facts``)."""
    return dict(Counter(call_facts(c.events).outcome for c in calls).most_common())
