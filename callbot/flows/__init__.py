"""Call flows: YAML format, strict loader, pure engine, intent recogniser.

The contract with the audio pipeline (``callbot/flow_bridge.py``) is small
and lives in ``callbot/flows/types.py``: a ``FlowSession`` is fed what the
caller did (``start``, ``hear(text)``, ``press(digits)``, ``silence()``) and
returns a ``Turn`` saying what to play, how to listen next, and whether the
call ends or is transferred, plus the typed events (``callbot.events``) of
what happened. No audio, no I/O, no clock except the one passed in.
"""
