"""callbot: a self-hosted, fully local voice switchboard for French town halls.

The data path of one call, in module order:

    telephony/ (Twilio websocket, SIP)  -> call.py (per-call pipecat pipeline)
    -> speech/asr.py (Whisper)  -> flows/ (pure flow engine)  -> speech/tts.py
    -> events.py (typed call events) -> store.py (Redis) -> web/ (API, dashboard)
"""

__version__ = "0.1.0"
