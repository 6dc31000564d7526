"""The flow file format, as pydantic models (also exported as ``flows/schema.json``).

Why pydantic: field-level validation with a location path that the loader maps
back to ``file:line``, and a JSON Schema for editors for free. All models are
frozen so a loaded flow cannot change under a call in progress.

Scalars arrive from the loader as strings (the loader never guesses types, so a
keypad key ``012`` or the word ``non`` stay strings); pydantic's lax mode turns
``"7.5"`` into a float or ``"false"`` into a bool only where a field wants one.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

SLOT_TYPES = ("text", "yes_no", "phone", "date", "time", "number", "address", "name")
SlotType = Literal["text", "yes_no", "phone", "date", "time", "number", "address", "name"]
Prompts = Union[str, list[str]]  # one prompt, or variants used in turn on later visits


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- conditions ---------------------------------------------------------------------------------


class Condition(_Model):
    """All the tests given in one condition must hold (AND); use ``any`` for OR."""

    open: str | None = Field(None, description="name of an opening-hours table: true while open now")
    closed: str | None = Field(None, description="name of an opening-hours table: true while closed now")
    holiday: bool | None = Field(None, description="today is (true) / is not (false) a French public holiday")
    weekday: list[str] | None = Field(None, description="day names, e.g. [samedi, dimanche]")
    time: str | None = Field(None, description="time-of-day range HH:MM-HH:MM, e.g. 12:00-14:00")
    slot: str | None = Field(None, description="a collected slot; alone: true when it is filled")
    equals: str | None = Field(None, description="with slot: the slot value equals this")
    one_of: list[str] | None = Field(None, description="with slot: the slot value is one of these")
    service: str | None = Field(None, description="name of a service: true when it has a phone number")
    caller_prefix: str | None = Field(None, description="caller number starts with this (e.g. +336)")
    caller_hidden: bool | None = Field(None, description="the caller number is withheld")
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(None, alias="not")


class Branch(_Model):
    if_: Condition = Field(alias="if")
    goto: str


# --- nodes --------------------------------------------------------------------------------------


class _Node(_Model):
    say: Prompts = Field(default_factory=list, description="what to say; a list = variants by visit")
    brief: Prompts = Field(default_factory=list, description="a shorter 'say', spoken instead while the machine "
                           "is saturated (first step of degrading, before less precise recognition)")
    reprompt: Prompts = Field(default_factory=list, description="other wording after no input / no match")
    barge_in: bool = Field(True, description="caller speech may interrupt the prompt")
    end_of_turn_secs: float | None = Field(None, ge=0.2, le=5.0, description="endpointing hint")
    no_input_secs: float | None = Field(None, ge=1.0, le=60.0)
    globals: bool | list[str] = Field(True, description="global intents active here: true, false or a list")
    note: str = Field("", description="free comment for flow authors")


class SayNode(_Node):
    type: Literal["say"]
    next: str
    set: dict[str, str] = Field(default_factory=dict, description="slot -> value to remember (e.g. a report kind)")


class AskNode(_Node):
    """Open question: the answer is routed by intent (routes first, then each intent's goto)."""

    type: Literal["ask"]
    routes: dict[str, str] = Field(default_factory=dict, description="intent id -> node")
    any_intent: bool = Field(True, description="also accept every intent that has a goto")
    yes: str | None = Field(None, description="node for a short 'oui' answer")
    no: str | None = Field(None, description="node for a short 'non' answer")


class MenuOption(_Model):
    label: str = Field(description="spoken in the generated prompt: 'Pour {label}, tapez {key}.'")
    goto: str
    intent: str | None = Field(None, description="intent that also selects this option by speech")
    words: list[str] = Field(default_factory=list, description="extra words that select it by speech")


class MenuNode(_Node):
    """Keypad and speech menu; the keypad mapping is stated once, in ``options``."""

    type: Literal["menu"]
    options: dict[str, MenuOption] = Field(description="keypad key (string) -> option")


class CollectNode(_Node):
    type: Literal["collect"]
    slot: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    slot_type: SlotType
    invalid: Prompts = Field(default_factory=list, description="said when the answer does not parse")
    confirm: bool = Field(False, description="read the value back and ask oui / non")
    confirm_say: Prompts = Field(default_factory=list, description="read-back; {value} is the spoken value")
    next: str


class GotoNode(_Model):
    type: Literal["goto"]
    goto: str
    note: str = ""


class ConditionNode(_Model):
    type: Literal["condition"]
    branches: list[Branch]
    else_: str = Field(alias="else")
    note: str = ""


class TicketNode(_Node):
    type: Literal["ticket"]
    kind: str = Field(description="report kind, e.g. eclairage")
    fields: dict[str, str] = Field(default_factory=dict, description="field -> template, e.g. '{lieu}'")
    next: str


class TransferNode(_Node):
    type: Literal["transfer"]
    target: str = Field(description="'agent' or a service name from services")
    reason: str = ""
    mode: Literal["queue", "direct"] = Field(
        "queue", description="queue: wait for an agent of the service (hold music, position, callback offer); "
        "direct: cold transfer to the service's number (back to the queue if it fails)")


class SurveyNode(_Node):
    type: Literal["survey"]
    thanks: Prompts = Field(default_factory=list)
    next: str | None = Field(None, description="after the answer; default: hang up")


class HangupNode(_Node):
    type: Literal["hangup"]
    reason: str = "flow_end"


Node = Annotated[
    Union[SayNode, AskNode, MenuNode, CollectNode, GotoNode, ConditionNode, TicketNode, TransferNode,
          SurveyNode, HangupNode],
    Field(discriminator="type"),
]
NODE_TYPES = ("say", "ask", "menu", "collect", "goto", "condition", "ticket", "transfer", "survey", "hangup")
LISTENING = ("ask", "menu", "collect", "survey")


# --- top level ----------------------------------------------------------------------------------


class Intent(_Model):
    label: str = Field("", description="a few spoken words, used in clarifying questions")
    examples: list[str] = Field(default_factory=list, description="what callers say")
    keywords: list[str] = Field(default_factory=list, description="words that strongly signal it")
    goto: str | None = Field(None, description="node answering it from any open question")


class Service(_Model):
    label: str
    number: str | None = None


class EmergencyService(_Model):
    label: str = Field(description="spoken, e.g. 'les pompiers'")
    words: list[str] = Field(description="folded words or word stems that point to this number")


class Emergency(_Model):
    intent: str = "urgence"
    services: dict[str, EmergencyService] = Field(default_factory=dict, description="number -> service")
    default: str = "112"


class Messages(_Model):
    no_input: str = "Je ne vous entends pas."
    no_match: str = "Excusez-moi, je n'ai pas bien compris."
    offer_menu: str = "Je vais vous proposer des choix."
    to_agent: str = "Je vais plutôt vous passer un agent."
    clarify: str = "Pouvez-vous me dire en quelques mots l'objet de votre appel ?"
    clarify_choice: str = "Est-ce pour {a}, ou pour {b} ?"
    yes_no: str = "Répondez simplement par oui ou par non."
    confirm_retry: str = "D'accord, recommençons."
    repeat_nothing: str = "Je vous écoute."
    # said when speech recognition or synthesis fails during a call (pre-rendered, like every message), and
    # by the watchdog that ends a call gone wrong (callbot/faults.py, callbot/watchdog.py)
    asr_fault: str = "Excusez-moi, je n'ai pas pu vous entendre."
    tts_fault: str = "Excusez-moi, je ne peux pas vous répondre de vive voix pour le moment."
    forced_end: str = "Excusez-moi, je dois mettre fin à cet appel. Au revoir."


class Settings(_Model):
    start: str = Field(description="first node")
    main_menu: str = Field(description="keypad menu offered after repeated failures")
    agent: str = Field(description="node that hands the caller to a person")
    intent_threshold: float = Field(0.45, ge=0.0, le=1.0, description="below: clarify instead of guessing")
    max_failures: int = Field(3, ge=2, le=6, description="no-input/no-match in a row before the agent")
    no_input_secs: float = Field(7.0, ge=1.0, le=60.0)
    timezone: str = "Europe/Paris"
    holidays_subdiv: str | None = Field(None, description="e.g. 57 for Moselle (extra holidays)")
    asr_vocabulary: list[str] = Field(
        default_factory=list,
        description="words the speech recogniser should expect at open questions (services, places, rare words)")
    disclosure: str | None = Field(
        None, description="said first on every call, before the start node's prompt, so callers know a machine "
        "answers (e.g. \"Je suis l'assistant automatique de la mairie.\"); empty = nothing; only {town.*} and "
        "{hours.*} values")
    recording_notice: str | None = Field(
        None, description="said right after the disclosure when set (e.g. \"Cet appel peut être enregistré.\"); "
        "only {town.*} and {hours.*} values")


class FlowSpec(_Model):
    name: str
    description: str = ""
    town: dict[str, str] = Field(default_factory=dict, description="town facts, {town.key} in prompts")
    services: dict[str, Service] = Field(default_factory=dict)
    hours: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="table -> day name -> ranges HH:MM-HH:MM")
    closed_dates: list[str] = Field(default_factory=list, description="YYYY-MM-DD, besides public holidays")
    settings: Settings
    messages: Messages = Field(default_factory=Messages)
    globals: dict[str, str] = Field(default_factory=dict, description="intent -> node, or 'repeat' / 'back'")
    emergency: Emergency | None = Field(None, description="emergency numbers; needs an urgence intent")
    intents: dict[str, Intent]
    nodes: dict[str, Node]


def json_schema() -> dict:
    schema = FlowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "callbot flow"
    return schema
