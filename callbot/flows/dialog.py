"""What the engine does with one caller action in a listening node.

Kept apart from ``engine.py`` (node walking) so each stays readable. Order of
checks for speech, and why:
1. emergency, in every node — a fire or a fall must never wait behind a menu;
2. a pending read-back (oui / non) or clarifying question;
   then, at an open question Whisper's best hypothesis is not understood, the first of the
   beam's other hypotheses that is (its emergency checked as in 1);
3. global intents (person, repeat, main menu, goodbye) unless the node turns them off;
4. the node's own handling (intent routing, menu option, slot parsing, survey score);
5. otherwise a counted no-match (see ``fail``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from callbot.events import (Emergency, IntentMatched, NoInput, SlotFilled, SurveyAnswered)
from callbot.flows import slots as slot_parsers
from callbot.flows.schema import AskNode, CollectNode, MenuNode, SurveyNode
from callbot.flows.text import fold, number_words, words_to_digits
from callbot.flows.types import Hangup, Prompt, Turn
from callbot.understanding.emergency import neutral_places

_ORDINALS = {"premier": "1", "premiere": "1", "deuxieme": "2", "second": "2", "seconde": "2",
             "troisieme": "3", "quatrieme": "4", "cinquieme": "5", "sixieme": "6"}
GLOBAL_MIN = 0.55  # a global intent must be this sure to interrupt a slot being collected
GLOBAL_WORDS = 0.1  # lexical score (keywords, example words) a conversation intent needs
CLARIFY_SECOND = 0.3  # below the threshold, the runner-up must have this share of the top to be offered
# An alternative hypothesis replaces Whisper's best only when routed at least this surely (0.4-0.7 gave the
# same spoken accuracy on tests/data/tune.tsv: 0.78 -> 0.83).
ALT_CONFIDENCE = 0.6


def _globals_on(session, node) -> set[str]:
    g = node.globals
    return _without_emergency(session, set(session.flow.globals) if g is True else set(g or []))


def _open_intents(session, node: AskNode) -> frozenset[str]:
    allowed = set(node.routes) | _globals_on(session, node)
    if node.any_intent:
        allowed |= session.flow.goto_intents
    return frozenset(_without_emergency(session, allowed))


def _without_emergency(session, intents: set[str]) -> set[str]:
    """While emergencies are listened for, the emergency layer is their one way in: it has weighed the
    recogniser's ``urgence`` vote against the caller's context ("l'incendie de l'an dernier"), so the
    intent routing must not send a turn it judged ordinary to the emergency node."""
    if _emergency_armed(session):
        intents.discard(session.flow.emergency_intent)
    return intents


def on_hear(session, text: str, alternatives: Sequence[str] = ()) -> Turn:
    flow, st = session.flow, session.s
    node = flow.nodes[st.node]
    events: list = []
    out: list[Prompt] = []

    # 1. emergency: its own detector, in every node (the recogniser's urgence score is one more vote)
    full = flow.recogniser.recognise(text)
    session.last_match = full
    urgent = _emergency(session, text, full, events, out)
    if urgent is not None:
        return urgent

    # 2. pending read-back / clarification
    if isinstance(node, CollectNode) and st.pending is not None:
        return _confirm(session, node, text, events, out)
    if st.clarify and isinstance(node, AskNode) and not (full.intent and full.intent not in st.clarify
                                                         and not full.ambiguous):
        m = flow.recogniser.recognise(text, allowed=frozenset(st.clarify))
        if m.intent is None and m.ranking and m.ranking[0][1] >= flow.settings.intent_threshold / 2:
            m = type(m)(m.ranking[0][0], m.ranking[0][1], m.ranking)
        if m.intent:
            events.append(IntentMatched(intent=m.intent, confidence=m.confidence, text=text, node=st.node))
            st.failures = 0
            return _route(session, node, m.intent, out, events)
    if alternatives and wants_alternatives(session, text, full):
        for alt in alternatives:
            alt_full = flow.recogniser.recognise(alt)
            urgent = _emergency(session, alt, alt_full, events, out)
            if urgent is not None:
                return urgent
            if _understood(session, node, alt, alt_full):
                text, full = alt, alt_full
                session.last_match = full
                break

    # 3. global intents (a bare "non merci" to a yes/no question is an answer, not a goodbye)
    active = _globals_on(session, node)
    if active and full.intent in active and not full.ambiguous and _sure_global(flow, full, text) \
            and not _bare_yes_no(text):
        slot_node = isinstance(node, (CollectNode, SurveyNode))
        if not slot_node or _not_a_slot_answer(node, text):
            events.append(IntentMatched(intent=full.intent, confidence=full.confidence, text=text, node=st.node))
            st.failures = 0
            return global_action(session, full.intent, out, events)

    # 4. the node itself
    if isinstance(node, AskNode):
        return _ask(session, node, text, full, events, out)
    if isinstance(node, MenuNode):
        key = _menu_key(session, node, text)
        if key:
            events.append(IntentMatched(intent=node.options[key].intent, confidence=1.0, text=text, node=st.node))
            st.failures = 0
            return session._goto(node.options[key].goto, out, events)
        return fail(session, "no_match", out, events, text=text)
    if isinstance(node, CollectNode):
        return _collect(session, node, text, events, out)
    if isinstance(node, SurveyNode):
        m = re.search(r"\b[1-5]\b", words_to_digits(fold(text)))
        if m:
            return _survey(session, node, int(m.group()), events, out)
        return fail(session, "no_match", out, events, text=text)
    return fail(session, "no_match", out, events, text=text)


def _emergency(session, text: str, full, events: list, out: list) -> Turn | None:
    """The emergency turn when ``text`` is one (and emergencies are listened for here), else None."""
    flow = session.flow
    if not _emergency_armed(session):
        return None
    plain = neutral_places(text)
    if plain != text:  # "rue du Gaz", "chemin du Feu": judged with a neutral name (the votes too)
        full = flow.recogniser.recognise(plain)
    p_intent = dict(full.ranking).get(flow.emergency_intent, 0.0)
    other = max((p for n, p in full.ranking if n != flow.emergency_intent), default=0.0)
    hit = flow.emergency.detect(plain, p_intent, other)
    return emergency(session, text, hit.score, events, out, reason=hit.reason) if hit is not None else None


def wants_alternatives(session, text: str, full=None) -> bool:
    """At an open question (no clarifying question pending), Whisper's best hypothesis is not understood."""
    node = session.flow.nodes[session.s.node]
    if not isinstance(node, AskNode) or session.s.clarify:
        return False
    return not _understood(session, node, text, full or session.flow.recogniser.recognise(text))


def _understood(session, node: AskNode, text: str, full) -> bool:
    """Would this open question route ``text`` surely (an intent, not ambiguous, ``ALT_CONFIDENCE``), or take
    it as the node's oui / non? Decides whether Whisper's other hypotheses are worth a look."""
    flow = session.flow
    if (node.yes or node.no) and slot_parsers.parse_yes_no(text) is not None:
        return True
    if full.intent and full.intent in _globals_on(session, node) and _sure_global(flow, full, text):
        return True
    m = flow.recogniser.recognise(text, allowed=_open_intents(session, node))
    if m.intent and m.intent in flow.globals and m.intent not in node.routes and not _sure_global(flow, m, text):
        return False
    return bool(m.intent) and not m.ambiguous and m.confidence >= ALT_CONFIDENCE


def _emergency_armed(session) -> bool:
    """Every node listens for emergencies, except the emergency nodes themselves."""
    flow = session.flow
    target = flow.globals.get(flow.emergency_intent) if flow.emergency_intent else None
    if target is None or target not in flow.nodes:
        return False
    return not session.s.node.startswith(target)


def _sure_global(flow, m, text: str) -> bool:
    """A conversation intent ("répétez", "au revoir", "le menu", "un agent") must be sure and said in
    words of its own: noise and hesitations ("euh ben voilà quoi") look like them to the encoders."""
    if m.confidence < GLOBAL_MIN:
        return False
    return m.intent == flow.emergency_intent or flow.recogniser.lexical.scores(text).get(m.intent, 0.0) >= GLOBAL_WORDS


def _keypad_emergency(session, option, digits: str, events: list, out: list) -> Turn | None:
    """The menu's emergency option (key 9) goes through ``emergency`` like a spoken one."""
    if option.intent and option.intent == session.flow.emergency_intent and _emergency_armed(session):
        return emergency(session, f"#{digits}", 1.0, events, out, reason="keypad")
    return None


def _bare_yes_no(text: str) -> bool:
    """Up to three words that say yes or no ("non merci", "oui oui"): an answer, never a goodbye."""
    return len(fold(text).split()) <= 3 and slot_parsers.parse_yes_no(text) is not None


def _not_a_slot_answer(node, text: str) -> bool:
    if isinstance(node, CollectNode) and node.slot_type not in ("text", "address", "name"):
        return slot_parsers.parse(node.slot_type, text) is None
    return True


def on_press(session, digits: str) -> Turn:
    flow, st = session.flow, session.s
    node = flow.nodes[st.node]
    events: list = []
    out: list[Prompt] = []
    if isinstance(node, CollectNode) and st.pending is not None:
        return _confirm(session, node, {"1": "oui", "2": "non"}.get(digits[:1], digits), events, out)
    if isinstance(node, MenuNode):
        if digits in node.options:
            st.failures = 0
            urgent = _keypad_emergency(session, node.options[digits], digits, events, out)
            if urgent is not None:
                return urgent
            events.append(IntentMatched(intent=node.options[digits].intent, confidence=1.0, text=f"#{digits}",
                                        node=st.node))
            return session._goto(node.options[digits].goto, out, events)
        return fail(session, "no_match", out, events)
    if isinstance(node, CollectNode):
        return _collect(session, node, digits, events, out)
    if isinstance(node, SurveyNode):
        if digits[:1] in "12345":
            return _survey(session, node, int(digits[:1]), events, out)
        return fail(session, "no_match", out, events)
    # keypad in an open question: behave as the main menu does
    menu = flow.nodes[flow.settings.main_menu]
    if isinstance(menu, MenuNode) and digits in menu.options:
        st.failures = 0
        urgent = _keypad_emergency(session, menu.options[digits], digits, events, out)
        if urgent is not None:
            return urgent
        return session._goto(menu.options[digits].goto, out, events)
    return fail(session, "no_match", out, events)


def emergency(session, text: str, confidence: float, events: list, out: list, reason: str = "") -> Turn:
    flow = session.flow
    number, label = flow.emergency_number(text)
    session.s.values.update(urgence_numero=number, urgence_service=label)
    session.s.spoken.update(urgence_numero=number_words(int(number)), urgence_service=label)
    events.append(IntentMatched(intent=flow.emergency_intent, confidence=round(confidence, 3), text=text,
                                node=session.s.node))
    events.append(Emergency(number=number, text=text, node=session.s.node, reason=reason))
    session.s.failures = 0
    return session._goto(flow.globals[flow.emergency_intent], out, events)


def global_action(session, intent: str, out: list, events: list) -> Turn:
    st, flow = session.s, session.flow
    target = flow.globals[intent]
    if target == "repeat":
        node = flow.nodes[st.node]
        return Turn(node=st.node, say=list(st.last_say), listen=session.listen_for(node), events=events)
    if target == "back":
        if len(st.history) >= 2:
            st.history.pop()
            target = st.history.pop()
        else:
            target = flow.settings.main_menu
    return session._goto(target, out, events)


def _ask(session, node: AskNode, text: str, full, events: list, out: list) -> Turn:
    flow, st = session.flow, session.s
    if not (node.yes or node.no) and _bare_yes_no(text):  # "oui oui" to an open question
        events.append(IntentMatched(intent=None, confidence=0.0, text=text, node=st.node))
        return fail(session, "no_match", out, events, text=text)
    if node.yes or node.no:
        yn = slot_parsers.parse_yes_no(text)
        short = len(fold(text).split()) <= 5
        sure_other = full.intent is not None and full.confidence >= 0.6
        if yn is not None and (len(fold(text).split()) <= 3 or short and not sure_other):
            target = node.yes if yn.value else node.no
            if target:
                events.append(IntentMatched(intent="oui" if yn.value else "non", confidence=1.0, text=text,
                                            node=st.node))
                st.failures = 0
                return session._goto(target, out, events)
    m = flow.recogniser.recognise(text, allowed=_open_intents(session, node))
    if m.intent and m.intent in flow.globals and m.intent not in node.routes and not _sure_global(flow, m, text):
        m = type(m)(None, m.confidence, m.ranking)  # "répétez", "au revoir": only when sure (noise looks like them)
    if m.intent and not m.ambiguous:
        events.append(IntentMatched(intent=m.intent, confidence=m.confidence, text=text, node=st.node))
        st.failures = 0
        if m.intent in flow.globals and m.intent not in node.routes:
            return global_action(session, m.intent, out, events)
        return _route(session, node, m.intent, out, events)
    # unsure: when two candidates share the probability, ask which (once); else ask again
    events.append(IntentMatched(intent=None, confidence=m.confidence, text=text, node=st.node))
    if not st.clarify and should_clarify(m, flow.settings.intent_threshold) and _clarify(session, m, out):
        return session.stay(out, events)
    return fail(session, "no_match", out, events, text=text)


def should_clarify(m, threshold: float) -> bool:
    """Ask "X, or Y?" when the two best intents together pass the threshold and neither alone is sure."""
    if len(m.ranking) < 2:
        return False
    (_, p1), (_, p2) = m.ranking[0], m.ranking[1]
    return m.ambiguous or (m.intent is None and p1 + p2 >= threshold and p2 >= CLARIFY_SECOND * p1)


def _clarify(session, m, out: list) -> bool:
    """Ask "X, or Y?" between the two best intents, when both are real requests with a spoken label."""
    flow = session.flow
    a, b = m.ranking[0][0], m.ranking[1][0]
    if a in flow.globals or b in flow.globals:
        return False
    la, lb = flow.intents[a].label, flow.intents[b].label
    if not (la and lb):
        return False
    session.s.clarify = (a, b)
    session.say(out, flow.spec.messages.clarify_choice, {"a": la, "b": lb})
    return True


def _route(session, node: AskNode, intent: str, out: list, events: list) -> Turn:
    flow = session.flow
    target = node.routes.get(intent) or flow.intents[intent].goto
    if target is None and intent in flow.globals:
        return global_action(session, intent, out, events)
    if target is None:
        return fail(session, "no_match", out, events)
    return session._goto(target, out, events)


def _menu_key(session, node: MenuNode, text: str) -> str | None:
    folded = words_to_digits(fold(text))
    for word, digit in _ORDINALS.items():
        folded = re.sub(rf"\b{word}\b", digit, folded)
    keys = [k for k in node.options if re.search(rf"(?:^| ){re.escape(k)}(?: |$)", folded)]
    if len(keys) == 1:
        return keys[0]
    for key, option in node.options.items():
        if any(re.search(rf"\b{re.escape(fold(w))}", folded) for w in option.words):
            return key
    by_intent = {o.intent: k for k, o in node.options.items() if o.intent}
    if by_intent:
        m = session.flow.recogniser.recognise(text, allowed=frozenset(by_intent))
        if m.intent:
            return by_intent[m.intent]
    return None


def _collect(session, node: CollectNode, text: str, events: list, out: list) -> Turn:
    st = session.s
    parsed = slot_parsers.parse(node.slot_type, text, session.now)
    if parsed is None:
        return fail(session, "no_match", out, events, text=text, invalid=node.invalid)
    st.failures = 0
    if node.confirm:
        confirm = session.variant(node.confirm_say, 0) or "J'ai noté : {value}. C'est bien ça ?"
        session.say(out, confirm, {"value": parsed.spoken})
        st.pending = parsed
        return session.stay(out, events)
    return _store(session, node, parsed, False, events, out)


def _store(session, node: CollectNode, parsed, confirmed: bool, events: list, out: list) -> Turn:
    st = session.s
    st.values[node.slot] = parsed.value
    st.spoken[node.slot] = parsed.spoken
    events.append(SlotFilled(slot=node.slot, value=parsed.value, confirmed=confirmed, node=st.node))
    return session._goto(node.next, out, events)


def _confirm(session, node: CollectNode, text: str, events: list, out: list) -> Turn:
    st, msgs = session.s, session.flow.spec.messages
    yn = slot_parsers.parse_yes_no(text)
    if yn is None:
        # a corrected value instead of oui/non ("non, 06 12 …") is taken as the new answer
        parsed = slot_parsers.parse(node.slot_type, text, session.now)
        if parsed is not None and node.slot_type not in ("text", "yes_no"):
            st.pending = None
            return _collect(session, node, text, events, out)
        st.failures += 1
        events.append(NoInput(kind="no_match", node=st.node, count=st.failures))
        if st.failures >= session.flow.settings.max_failures:
            session.say(out, msgs.to_agent)
            return session._goto(session.flow.settings.agent, out, events)
        session.say(out, msgs.yes_no)
        return session.stay(out, events)
    parsed, st.pending = st.pending, None
    st.failures = 0
    if yn.value:
        return _store(session, node, parsed, True, events, out)
    session.say(out, msgs.confirm_retry)
    session.say(out, session.variant(node.reprompt, 0) or session.variant(node.say, 0))
    return session.stay(out, events)


def _survey(session, node: SurveyNode, score: int, events: list, out: list) -> Turn:
    events.append(SurveyAnswered(score=score, node=session.s.node))
    session.say(out, session.variant(node.thanks, 0))
    if node.next:
        return session._goto(node.next, out, events)
    session.s.ended = True
    return Turn(node=session.s.node, say=out, listen=None, events=events, hangup=Hangup("survey_done"))


def fail(session, kind: str, out: list, events: list, text: str = "", invalid=None) -> Turn:
    """Count a no-input / no-match and escalate: reprompt, then main menu, then a person."""
    flow, st = session.flow, session.s
    msgs, settings = flow.spec.messages, flow.settings
    node = flow.nodes[st.node]
    st.failures += 1
    n = st.failures
    events.append(NoInput(kind=kind, node=st.node, count=n))
    if isinstance(node, SurveyNode):  # never push a caller who is leaving: thank and hang up
        session.say(out, session.variant(node.thanks, 0))
        if node.next:
            return session._goto(node.next, out, events)
        st.ended = True
        return Turn(node=st.node, say=out, listen=None, events=events, hangup=Hangup("survey_skipped"))
    if n >= settings.max_failures:
        session.say(out, msgs.to_agent)
        return session._goto(settings.agent, out, events)
    lead = msgs.no_input if kind == "no_input" else msgs.no_match
    if invalid and kind == "no_match":
        lead = session.variant(invalid, n - 1) or lead
    if n == settings.max_failures - 1 and isinstance(node, AskNode) and st.node != settings.main_menu:
        session.say(out, msgs.offer_menu)
        return session._goto(settings.main_menu, out, events)
    session.say(out, lead)
    reprompt = session.variant(node.reprompt, n - 1)
    if isinstance(node, MenuNode) and not reprompt:
        reprompt = flow.menu_prompt(node)[0]
    session.say(out, reprompt or session.variant(node.say, 0))
    st.clarify = ()
    return session.stay(out, events)
