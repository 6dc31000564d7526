"""Where a call goes when speech cannot serve it: the flow's keypad menu, else a person.

Used when Whisper is over capacity (``admission.py``) and when a speech stage fails during
the call (``faults.py``). Everything said on the way is a flow message or a menu prompt:
static text, pre-rendered at start-up, so it plays even while synthesis is broken.
"""

from __future__ import annotations

from callbot.flows.schema import MenuNode
from callbot.flows.types import FlowSession, Turn


def has_keypad_menu(session: FlowSession) -> bool:
    """The flow's ``main_menu`` is a keypad menu (else the fallback is the agent node)."""
    flow = getattr(session, "flow", None)
    return flow is not None and isinstance(flow.nodes.get(flow.settings.main_menu), MenuNode)


def keypad_turn(session: FlowSession, *, first: bool = False, lead: str | None = None) -> Turn:
    """The flow's keypad menu, introduced by its "use your keypad" message (all pre-rendered).

    ``first``: the call starts here, so the AI disclosure comes first, as in ``start()``;
    ``lead``: the name of a flow message said before anything else (``asr_fault``).
    A flow whose ``main_menu`` is not a keypad menu sends the caller to its agent node
    (``messages.to_agent``) instead: a person rather than a menu nobody can use.
    """
    flow = getattr(session, "flow", None)
    goto = getattr(session, "_goto", None)
    if flow is None or goto is None:  # another FlowSession implementation: its own start
        return session.start()
    out: list = session.opening() if first else []
    messages = flow.spec.messages
    if lead:
        session.say(out, getattr(messages, lead))
    if has_keypad_menu(session):
        session.say(out, messages.offer_menu)
        return goto(flow.settings.main_menu, out, [])
    session.say(out, messages.to_agent)
    return goto(flow.settings.agent, out, [])
