"""``callbot chat``: talk to a flow in the terminal, seeing what the engine decides.

Each bot turn prints the node, the recognised intent with its confidence, the
slots and what would happen on the line (transfer, ticket, hang-up). Lines
starting with ``#`` or ``/press`` are keypad digits, ``/silence`` is a caller
who says nothing, ``/quit`` leaves; with ``--digits`` every line is keypad input.
"""

from __future__ import annotations

from datetime import datetime

from callbot.events import (Emergency, IntentMatched, NoInput, SlotFilled, SurveyAnswered, TicketCreated,
                            TransferRequested)
from callbot.flows.loader import FlowLoadError, load_flow
from callbot.flows.types import CallContext, Turn

HELP = "/press 1 ou #1 : clavier   /silence : ne rien dire   /slots   /quit"


def describe(turn: Turn, session) -> list[str]:
    lines = []
    for e in turn.events:
        if isinstance(e, IntentMatched):
            lines.append(f"  [intent {e.intent or '-'} {e.confidence:.2f}]")
        elif isinstance(e, NoInput):
            lines.append(f"  [{e.kind} #{e.count}]")
        elif isinstance(e, SlotFilled):
            lines.append(f"  [slot {e.slot} = {e.value!r}{' (confirmé)' if e.confirmed else ''}]")
        elif isinstance(e, TicketCreated):
            lines.append(f"  [ticket {e.kind} {e.fields}]")
        elif isinstance(e, TransferRequested):
            lines.append(f"  [transfert -> {e.target} ({e.reason})]")
        elif isinstance(e, SurveyAnswered):
            lines.append(f"  [enquête : {e.score}/5]")
        elif isinstance(e, Emergency):
            lines.append(f"  [URGENCE -> {e.number}]")
    for p in turn.say:
        lines.append(f"bot> {p.text}")
    if turn.listen:
        l = turn.listen
        lines.append(f"  [{turn.node} · barge_in={l.barge_in} eot={l.end_of_turn_secs} "
                     f"no_input={l.no_input_secs}s digits≤{l.max_digits}]")
    if turn.transfer:
        lines.append(f"  [fin : transfert vers {turn.transfer.target} {turn.transfer.number or ''}]")
    if turn.hangup:
        lines.append(f"  [fin : raccroche ({turn.hangup.reason})]")
    return lines


def run_chat(args, input_fn=input, print_fn=print) -> int:
    try:
        flow = load_flow(args.flow)
    except FlowLoadError as e:
        print_fn("\n".join(e.problems))
        return 1
    now = datetime.fromisoformat(args.now) if getattr(args, "now", None) else None
    session = flow.new_session(CallContext(caller=args.caller, channel="test", now=now))
    print_fn(f"{flow.name} (version {flow.version}) — {HELP}")
    turn = session.start()
    for line in describe(turn, session):
        print_fn(line)
    while not turn.ends_call:
        try:
            text = input_fn("vous> ").strip()
        except (EOFError, KeyboardInterrupt):
            print_fn("")
            return 0
        if text in ("/quit", "/q"):
            return 0
        if text == "/slots":
            print_fn(f"  {session.slots}")
            continue
        if text == "/silence" or (not text and not args.digits):
            turn = session.silence()
        elif args.digits or text.startswith("#"):
            turn = session.press(text.lstrip("#").strip())
        elif text.startswith("/press"):
            turn = session.press(text[len("/press"):].strip())
        else:
            turn = session.hear(text)
        for line in describe(turn, session):
            print_fn(line)
    return 0
