"""Speech layer: Whisper ASR, TTS voices, prompt cache, and pipecat services.

Everything here runs locally. Models come from registry packages (pip) or from
files the operator drops in; nothing is downloaded at run time. Heavy imports
(faster-whisper, piper, pipecat) live in the submodules so that importing
``callbot.speech`` stays cheap.
"""
