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

# Loudness of synthesised prompts before G.711: full scale clips once resampled.
TTS_VOLUME = 0.9
