"""Admission control for speech recognition: who gets Whisper, and when to stop queueing.

Every call is answered (signalling capacity is the SIP/HTTP listeners' business, and
the greeting comes from the prompt cache, so answering costs almost nothing). Whisper
is the scarce resource on a small machine: past ``max_calls`` concurrent speech calls
a new call runs in keypad mode (pre-rendered menu prompts, no ASR), and when more than
``max_queue`` decodes already wait for a slot, a new segment is not queued — the call
switches to the keypad menu instead of leaving the caller in silence while a backlog
drains. 0 disables either limit. Pure bookkeeping, no clock: unit-tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AsrAdmission:
    max_calls: int = 0  # speech calls at once; 0 = no limit
    max_queue: int = 0  # decodes waiting for a slot before new ones are refused; 0 = no limit
    speech_calls: int = 0
    keypad_calls: int = 0
    refused_decodes: int = 0

    def admit_call(self) -> bool:
        """True: the call gets speech recognition (call ``release_call(True)`` at its end)."""
        if self.max_calls and self.speech_calls >= self.max_calls:
            self.keypad_calls += 1
            return False
        self.speech_calls += 1
        return True

    def release_call(self, speech: bool) -> None:
        if speech:
            self.speech_calls = max(0, self.speech_calls - 1)
        else:
            self.keypad_calls = max(0, self.keypad_calls - 1)

    def degrade_call(self) -> None:
        """A speech call went to keypad mode mid-call (its decodes were refused)."""
        self.speech_calls = max(0, self.speech_calls - 1)
        self.keypad_calls += 1

    def admit_decode(self, waiting: int) -> bool:
        """May a new segment be queued when ``waiting`` decodes wait for a slot?"""
        if self.max_queue and waiting >= self.max_queue:
            self.refused_decodes += 1
            return False
        return True

    def snapshot(self) -> dict[str, int]:
        return {"speech_calls": self.speech_calls, "keypad_calls": self.keypad_calls,
                "refused_decodes": self.refused_decodes, "max_calls": self.max_calls, "max_queue": self.max_queue}
