"""Settings: built once at start-up (``Settings.load``) and passed down.

Every value can come from the environment (``CALLBOT_<NAME>``, e.g.
``CALLBOT_HTTP_PORT=8081``) or from an optional YAML file given with
``callbot --config FILE`` or ``CALLBOT_CONFIG``. Environment wins over the file.
No other module reads ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callbot.errors import ConfigError
from callbot.paths import PROJECT_ROOT, default_flow, default_voices_dir

__all__ = ["PROJECT_ROOT", "Settings", "default_cache_dir"]


def _xdg(var: str, default: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / default) / "callbot"


def default_cache_dir() -> Path:
    """Where models, prompt audio and embeddings are cached when no setting says otherwise."""
    return Path(os.environ.get("CALLBOT_CACHE_DIR") or _xdg("XDG_CACHE_HOME", ".cache"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLBOT_", extra="forbid", validate_default=True)

    # --- web server (webhooks, media websocket, API, dashboard)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = Field(
        None, description="Public base URL Twilio reaches (https://bot.example.fr); default: from the request"
    )
    stream_url: str | None = Field(
        None, description="public ws(s) base of THIS worker for Twilio media streams when several workers sit "
        "behind one public URL, e.g. wss://mairie.example.fr/w1 (the proxy strips /w1): the stream reaches the "
        "worker that accepted the call; webhooks keep public_url. Default: public_url")
    session_cookie_secure: bool = Field(
        False, description="mark the login cookie Secure (browsers then send it over HTTPS only): true behind HTTPS")

    # --- storage
    redis_url: str | None = Field(None, description="redis://host:port/db; unset = embedded Redis server")
    data_dir: Path = Field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))
    call_log_max: int = Field(10_000, ge=10, description="calls kept in the recent-calls index")
    retention_days: int = Field(
        30, ge=1, le=3650, description="after N days a call's numbers and transcripts are blanked (its tickets and "
        "callbacks too) and its stream entries deleted; statistics are kept (callbot/privacy.py)")

    # --- speech
    asr_model: Path | None = Field(None, description="faster-whisper model folder; unset = bundled Whisper base")
    asr_threads: int = Field(
        2, ge=1, le=64, description="CPU threads per decode: 2 x 2 slots on 2 cores, one decode alone uses both")
    asr_beam_size: int = Field(5, ge=1, le=10, description="5: -9 WER points for ~+50 ms with the short window")
    asr_busy_beam_size: int = Field(
        1, ge=1, le=10, description="beam on the degrading ladder's greedy step: greedy costs less CPU per turn")
    asr_language: str = "fr"
    asr_window: Literal["short", "full"] = Field(
        "short", description="short = encode utterance + padding (fast); full = stock 30 s Whisper window"
    )
    asr_window_padding_s: float = Field(
        6.0, ge=1.0, le=29.0, description="silence encoded after the utterance (short window)")
    asr_window_min_s: float = Field(
        0.0, ge=0.0, le=30.0, description="shortest window encoded, padding included (short window; 0 = none)")
    asr_max_concurrent: int = Field(2, ge=1, le=8, description="Whisper decodes run at once; further calls queue")
    asr_batching: bool = Field(
        False, description="decode the turns of concurrent calls in one Whisper batch (speech/batcher.py; "
        "scripts/bench-asr-batch measures it)")
    asr_nice: int = Field(5, ge=0, le=19, description="nice of the Whisper threads: audio pacing first under load")
    max_asr_calls: int = Field(
        20, ge=0, description="calls with speech recognition at once; further calls get the keypad menu (0 = no limit)")
    max_asr_response_s: float = Field(
        2.5, ge=0.0, description="recent Whisper queue + decode time above which new calls get the keypad menu "
        "(0 = off)")
    asr_brief_response_s: float = Field(
        0.8, ge=0.0, description="recent Whisper queue + decode time above which nodes say their shorter 'brief' "
        "prompts (first step of degrading; 0 = never)")
    asr_greedy_response_s: float = Field(
        1.2, ge=0.0, description="... above which decoding is greedy (asr_busy_beam_size), as when decodes queue; "
        "0 = greedy whenever another decode runs (second step; the keypad menu, max_asr_response_s, is the last)")
    max_asr_queue: int = Field(
        6, ge=0, description="decodes waiting for a slot beyond which a call moves to the keypad menu (0 = no limit)")
    tts_voice: str = Field("auto", description="auto | piper:NAME_OR_PATH | pico | espeak")
    voices_dir: Path = Field(
        default_factory=default_voices_dir, description="Piper voices (.onnx) and optionally voices.yaml; "
        "default: the bundled voices/ (checkout) or its copy in the installed package (callbot/paths.py)")
    preload_models: bool = Field(True, description="load ASR/TTS before accepting calls")

    # --- faults inside a call: deadlines and the watchdog (callbot/faults.py, callbot/watchdog.py)
    asr_timeout_secs: float = Field(
        4.0, ge=0.0, le=120.0, description="Whisper deadline, + 0.5 s per second of audio, for the wait for a decode "
        "slot and again for the decode; past it the caller hears an apology and gets the keypad menu (0 = none)")
    tts_timeout_secs: float = Field(
        4.0, ge=0.0, le=120.0, description="synthesis deadline per sentence, + 0.02 s per character; past it (or "
        "on an error) a pre-rendered apology plays and the caller gets the keypad menu (0 = none)")
    max_call_secs: float = Field(
        3600.0, ge=0.0, description="the bot ends a conversation that lasts longer (goodbye, call_ended "
        "'watchdog'); the wait for an agent has its own limits (0 = off)")
    stuck_call_secs: float = Field(
        120.0, ge=0.0, description="the bot ends a call with no audio from the line and no progress for this "
        "long (0 = off)")
    fault_inject: str = Field(
        "", pattern=r"^((asr|tts)_(error|hang)(,(asr|tts)_(error|hang))*)?$",
        description="TESTS ONLY: make speech recognition or synthesis raise or hang (asr_error, asr_hang, "
        "tts_error, tts_hang; comma-separated) to exercise the fallbacks")

    # --- call behaviour
    flow: Path = Field(default_factory=default_flow, description="flow file; default: the bundled "
                       "flows/mairie.yaml (checkout) or its copy in the installed package (callbot/paths.py)")
    end_of_turn_secs: float = Field(
        0.5, ge=0.1, le=5.0,
        description="caller silence that ends a turn that sounds unfinished (nodes can ask for more); "
                    "a finished-sounding sentence ends sooner (flows/endpointing.py)")
    max_calls: int = Field(50, ge=1, description="concurrent calls per process")

    # --- this worker among several on one Redis (callbot/workers.py, callbot/drain.py)
    worker_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="names this process in the worker registry, the call log and /healthz (`callbot serve "
        "--worker-id`); unset = <hostname>-<pid>: unique while the process lives, new after a restart")
    drain_timeout_secs: float = Field(
        3600.0, ge=0, description="after SIGTERM the worker takes no new call and waits this long for the calls "
        "in progress (a call may last long); then it ends the rest (BYE, reason in the call log) and exits")

    # --- Twilio
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_base_url: str = "https://api.twilio.com"

    # --- SIP
    sip_host: str = "127.0.0.1"
    sip_port: int = Field(5060, ge=0, le=65535)
    sip_enabled: bool = True
    sip_allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="networks allowed to call (CIDR); others get 403. Add your PBX/trunk, e.g. 192.168.1.0/24",
    )
    sip_auth_user: str = Field("", description="if set, INVITEs must also carry digest credentials (401 challenge)")
    sip_auth_password: SecretStr | None = None
    sip_invites_per_source: int = Field(
        60, ge=0, description="INVITEs accepted per source address per 10 s; more get 503 (a flood from one "
        "address does not stop the others). A trunk or PBX brings every call from one address: keep it above "
        "its peak. 0 = no limit")
    sip_media_timeout: int = Field(10, ge=0, le=3600, description="seconds without RTP before hanging up; 0 = off")
    sip_rtp_port_min: int = Field(30000, ge=1024, le=65535)
    sip_rtp_port_max: int = Field(30999, ge=1024, le=65535)

    # --- switchboard: callers waiting for a person (callbot/switchboard)
    queue_announce_secs: float = Field(45.0, ge=5, description="position and estimated wait announced every N s")
    queue_max_wait_secs: float = Field(300.0, ge=10, description="then a callback is offered, then a polite end")
    agent_ring_secs: float = Field(20.0, ge=3, le=120, description="an offer rings this long before the next agent")
    agent_wrapup_secs: float = Field(30.0, ge=0, le=3600, description="after a call, before the agent gets the next")
    queue_callback_key: str = Field("1", pattern=r"^[0-9*#]?$", description="keypad key to leave a callback request")
    queue_priorities: dict[str, int] = Field(
        default_factory=lambda: {"urgence": 10},
        description="intent or service -> priority (higher waits less); e.g. {urgence: 10, etat_civil: 1}")
    # --- statistics (callbot/stats, docs/stats.md)
    stats_short_abandon_secs: float = Field(
        5.0, ge=0, le=60, description="hang-ups this soon after the start (or in the queue) are short abandons, "
        "counted as offered but not as abandons")
    stats_service_level_secs: float = Field(20.0, ge=1, le=600, description="service level: share of queued calls "
                                            "an agent accepted within this many seconds (80 % in 20 s)")
    clock: str | None = Field(
        None, description="pretend it is this local time (ISO 8601) for opening hours: demos and tests only")

    # --- integrations
    ticket_webhook_url: str | None = Field(None, description="POST each new ticket as JSON to this URL")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @field_validator("worker_id", mode="before")
    @classmethod
    def _blank_worker_id(cls, v: Any) -> Any:
        """``CALLBOT_WORKER_ID=`` (blank, as compose files pass an unset variable) = automatic id."""
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("stream_url")
    @classmethod
    def _websocket_base(cls, v: str | None) -> str | None:
        """Twilio connects to ``<stream_url>/twilio/media``: a ws(s) base it can append a path to."""
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError(f"stream_url must be ws://host/... or wss://host/..., got {v!r}")
        if "?" in v or "#" in v:
            raise ValueError(f"stream_url must be a base without ?query or #fragment, got {v!r}")
        return v.rstrip("/")

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> "Settings":
        """Build the settings: YAML file (optional) < environment < explicit overrides."""
        config_file = config_file or os.environ.get("CALLBOT_CONFIG")
        file_values: dict[str, Any] = {}
        if config_file:
            path = Path(config_file)
            try:
                file_values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ConfigError(f"cannot read config file {path}: {e}") from e
            if not isinstance(file_values, dict):
                raise ConfigError(f"{path}: expected a mapping of setting: value")
        env_names = {k[len("CALLBOT_"):].lower() for k in os.environ if k.startswith("CALLBOT_")}
        values = {k: v for k, v in file_values.items() if k not in env_names}
        values.update(overrides)
        try:
            return cls(**values)
        except Exception as e:  # pydantic.ValidationError: keep its field-by-field text
            raise ConfigError(f"invalid settings: {e}") from e

    @property
    def twilio_token(self) -> str | None:
        return self.twilio_auth_token.get_secret_value() if self.twilio_auth_token else None
