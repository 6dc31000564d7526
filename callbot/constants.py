"""Audio and protocol constants, in one place.

Audio is normalised once, at the transport edge: whatever the wire carries
(G.711 at 8 kHz), the pipeline receives 16 kHz signed 16-bit mono PCM (what
Whisper expects; pipecat's WhisperSTTService does not resample) and produces
8 kHz PCM that the transport encodes for the wire.
"""

PIPELINE_IN_RATE = 16_000
PIPELINE_OUT_RATE = 8_000
TELEPHONY_RATE = 8_000
SAMPLE_WIDTH = 2  # bytes, signed 16-bit little endian
FRAME_MS = 20  # one telephony packet
TELEPHONY_FRAME_BYTES_ULAW = TELEPHONY_RATE * FRAME_MS // 1000  # 160 bytes of µ-law
# Caller audio enters the pipeline in chunks of this length, not per 20 ms packet: every
# frame costs each pipecat stage a queue hop and a task wake-up on the one event loop, and
# at 20 calls that loop was ~97 % busy (py-spy). The VAD and Whisper work on their own
# windows, so the only cost is up to one packet more before a pause is seen.
INPUT_CHUNK_MS = 40
# Bot audio leaves in chunks of this length (pipecat's ``audio_out_10ms_chunks`` × 10 ms);
# the websocket transport keeps a 0.3 s lead at the peer, so bigger chunks cost no gap, and
# Twilio's ``clear`` still cuts the bot off at once on barge-in.
OUTPUT_CHUNK_MS = 100

# Loudness of synthesised prompts before G.711: full scale clips once resampled.
TTS_VOLUME = 0.9
