"""What the process shares between calls: settings, store, models, voice, flows.

Built once by ``server.py`` (models load once per process, never per call)
and passed to every call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callbot.config import Settings
from callbot.store import EventStore

if TYPE_CHECKING:
    from callbot.speech.asr import SharedWhisper
    from callbot.speech.prompt_cache import PromptCache
    from callbot.speech.voices import Voice
    from callbot.switchboard.service import Switchboard
    from callbot.telephony.base import CallInfo

log = logging.getLogger(__name__)


class FlowLibrary:
    """The current flow. ``reload`` swaps it atomically; calls in progress keep theirs.

    Loading trains the flow's recogniser and emergency detector (seconds; blocking):
    build and reload it from a worker thread.
    """

    def __init__(self, path: Path) -> None:
        from callbot.flows.loader import load_flow

        self._load = load_flow
        self.path = Path(path)
        self.current: Any = _warm(load_flow(self.path))
        self.loaded_versions = [self.current.version]

    def reload(self) -> Any:
        """Load the file again; on error keep the running version and re-raise (FlowError)."""
        new = _warm(self._load(self.path))
        if new.version != self.current.version:
            self.current = new
            self.loaded_versions.append(new.version)
            log.warning("flow %s reloaded: version %s", new.name, new.version)
        return new


def _warm(flow: Any) -> Any:
    """Train the flow's models, and load what its conditions need: the first ``open:``/``holiday:`` test
    imports the ``holidays`` country module and builds the year's calendar (60-90 ms of CPU), which would
    otherwise happen on the event loop in the middle of the first call that asks for an agent."""
    from zoneinfo import ZoneInfo

    from callbot.flows.conditions import holiday_name

    flow.warm()
    holiday_name(datetime.now(ZoneInfo(flow.settings.timezone)).date(), flow.settings.holidays_subdiv)
    return flow


@dataclass
class Runtime:
    settings: Settings
    store: EventStore
    flows: FlowLibrary
    asr: "SharedWhisper"
    voice: "Voice"
    prompts: "PromptCache"
    switchboard: "Switchboard | None" = None  # None: transfers are blind (bare pipeline tests)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())  # local time (settings.clock)
    active_calls: dict[str, "CallInfo"] = field(default_factory=dict)
    ready: bool = False
    stopping: str = ""  # why the worker is ending the calls in progress now (callbot/drain.py); "" while it is not
