"""callbot: a self-hosted, fully local voice switchboard for French town halls.

The data path of one call, in module order:

    telephony/ (Twilio websocket, SIP)  -> call.py (per-call pipecat pipeline)
    -> speech/asr.py (Whisper)  -> flows/ (pure flow engine)  -> speech/tts.py
    -> events.py (typed call events) -> store.py (Redis) -> web/ (API, dashboard)
"""

__version__ = "0.1.0"

import os as _os

# numpy's OpenBLAS threads keep spinning after a matrix product and fight the sentence encoder's
# and Whisper's own threads for the two cores (measured: encoder p95 26 ms -> 347 ms). Our matrix
# products are small; one BLAS thread is enough. Must be set before numpy is first imported.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
