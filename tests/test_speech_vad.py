"""The batched Silero VAD decides exactly as pipecat's own analyzer, call by call."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams

from callbot.speech import vad as V

AUDIO = Path(__file__).parent / "fixtures" / "audio"
FRAME = 320 * 2  # 20 ms at 16 kHz, as the transports deliver it


def caller_audio(*names: str) -> bytes:
    """Fixtures at 16 kHz with a second of line silence between them."""
    out = []
    for name in names:
        with wave.open(str(AUDIO / name)) as w:
            a = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        out += [np.repeat(a, 2), np.zeros(16000, np.int16)]  # 8 -> 16 kHz, enough for the VAD
    return np.concatenate(out).tobytes()


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


async def states_of(analyzer, pcm: bytes) -> list:
    analyzer.set_sample_rate(16000)
    return [await analyzer.analyze_audio(f) for f in frames(pcm)]


async def test_batched_vad_matches_pipecat_for_concurrent_calls():
    params = VADParams(stop_secs=0.25)
    calls = [caller_audio("horaires.wav", "oui.wav"), caller_audio("lampadaire.wav"),
             caller_audio("adresse.wav", "non_merci.wav"), caller_audio("agent.wav")]
    reference = [await states_of(SileroVADAnalyzer(sample_rate=16000, params=params), pcm) for pcm in calls]
    shared = [V.SharedSileroVAD(sample_rate=16000, params=params) for _ in calls]
    for v in shared:
        v.set_sample_rate(16000)
        v.follow_bot(True)  # pipecat's own thresholds (while the bot is silent, they are lower: below)
    batched = await asyncio.gather(*(states_of(v, pcm) for v, pcm in zip(shared, calls)))
    for ref, got in zip(reference, batched):
        assert len(ref) == len(got)
        changes = sum(a != b for a, b in zip(ref, got))
        assert changes <= 2, f"{changes} frames decided differently from pipecat's analyzer"
        assert any(s.name == "SPEAKING" for s in got), "speech was never detected"
    b = V._batcher()
    assert b.requests > b.batches, "concurrent calls were not scored together"


async def test_a_lone_oui_or_non_starts_a_turn_while_the_bot_is_silent():
    """pipecat's defaults (0.2 s at volume 0.6) missed a lone "oui"/"non" at every frame offset: the
    caller's answer to "C'est bien ça ?" was lost and the bot reprompted after the no-input timeout."""
    import audioop  # noqa: F401  (G.711 round trip, as on the line)

    for name in ("oui.wav", "non.wav"):
        with wave.open(str(AUDIO / name)) as w:
            pcm = audioop.ulaw2lin(audioop.lin2ulaw(w.readframes(w.getnframes()), 2), 2)
        pcm = audioop.ratecv(pcm, 2, 1, 8000, 16000, None)[0]
        caught = {True: 0, False: 0}
        for talking in (False, True):
            for lead_ms in range(0, 32, 4):
                v = V.SharedSileroVAD(sample_rate=16000, params=VADParams(stop_secs=0.25))
                v.set_sample_rate(16000)
                v.follow_bot(talking)
                silence = bytes(2 * int(16000 * (0.5 + lead_ms / 1000)))
                got = await states_of(v, silence + pcm + bytes(32000))
                caught[talking] += any(s.name == "SPEAKING" for s in got)
        assert caught[False] >= 7, (name, caught)
        assert caught[True] <= caught[False]


async def test_speech_begun_before_a_prompt_is_not_held_to_the_barge_in_threshold():
    """The caller goes on ("d'accord, ... merci") just as the bot starts its next prompt: the start
    in progress keeps the listening threshold (bench-latency lost exactly that turn: 4 windows of
    "merci" counted toward 6 once the prompt began, and the turn never started)."""
    import audioop

    with wave.open(str(AUDIO / "oui.wav")) as w:
        pcm = audioop.ulaw2lin(audioop.lin2ulaw(w.readframes(w.getnframes()), 2), 2)
    pcm = audioop.ratecv(pcm, 2, 1, 8000, 16000, None)[0]
    caught = 0
    for lead_ms in range(0, 32, 4):
        v = V.SharedSileroVAD(sample_rate=16000, params=VADParams(stop_secs=0.25))
        v.set_sample_rate(16000)
        seen = []
        for f in frames(bytes(2 * int(16000 * (0.5 + lead_ms / 1000))) + pcm + bytes(32000)):
            state = await v.analyze_audio(f)
            if state.name == "STARTING" and not v._bot_talking:
                v.follow_bot(True)  # the prompt starts now
            seen.append(state.name)
        caught += "SPEAKING" in seen
        assert v._vad_start_frames == v._start_frames[1], "barge-in threshold restored after the start"
    assert caught >= 6, caught
