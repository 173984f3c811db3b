"""Wires the pieces together and owns start-up and shutdown.

Only this module knows every part: it builds the world, the encoder and its
outputs, the compositor and soundtrack, the director and the chat adapters,
hands each its dependencies, and runs the show until it is stopped or its
duration is up. Everything else receives what it needs.

The `Show` is also the show's one control surface (`surface.ShowSurface`):
the console and the terminal's chat reach the show only through it. Its
loop steps the story and publishes the show's state (`Show.states`); the
overlay and the console's pages are pushed each change.

The state is built (the voting round's snapshot read) only when it may have
changed: a control or an on-air change publishes at once; the audience
counts its events (`Audience.changes`), which the loop publishes on its next
step; and time alone moves only the round's countdown, which the overlay
shows in whole seconds (the console's page counts down between states), so
the loop publishes again when the next whole second is due, never on a
faster timer of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import checks, embeddings
from .audience.events import Audience, Reply
from .audience.local import LocalChat
from .audience.platforms import ChatContext
from .broadcast.audio_feed import Silence, SoundtrackProcess
from .broadcast.compositor import Compositor
from .broadcast.outputs import check_reachable
from .broadcast.overlay_layout import layout_json, layout_name, load_layout
from .broadcast.overlay_state import OverlayState, build_overlay_state
from .broadcast.pipeline import Broadcast, Connecting, Health, connect, open_broadcast
from .broadcast.sound import SoundtrackSettings
from .checks import ChatPlatform, Checked, world_entry
from .config import Settings, music_of, resolve_world
from .director import Director
from .onair import Latest, OnAir, ShowState, TimelineEntry, WorldInfo
from .pooling import lemma
from .registry import WORLDS, MissingPackage
from .secrets import mask_url, redact
from .store import Store, resolve_path
from .world.base import World, WorldError
from .world.budget import GpuBudget
from .world.resilient import ResilientWorld
from .worldspec import WorldSpec

if TYPE_CHECKING:
    from .audience.voice import VoiceService
    from .console.server import ConsoleServer, PreparedConsole
    from .voting import Mode, Winner

log = logging.getLogger(__name__)


def bound_native_heap(mmap_threshold: int = 1 << 20) -> bool:
    """Keep the process's C heap from creeping up over a long broadcast.

    Every tick allocates and frees a few large buffers (the world's RGB frame,
    the YUV frame, encoder and preview buffers) from several threads. glibc
    raises its mmap threshold each time such a buffer is freed, after which
    they come from the per-thread heaps instead, which fragment: resident
    memory grew by about 0.8 MB a minute. A fixed threshold (which also stops
    the adjustment) keeps every buffer of a megabyte or more in its own
    mapping, handed back to the system when freed. False where this is not glibc."""
    import ctypes

    M_MMAP_THRESHOLD = -3
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    except (OSError, AttributeError):
        return False


def build_world(settings: Settings) -> World:
    """The world backend named in the settings, from `streambot.registry.WORLDS`
    (heavy imports only when chosen)."""
    entry = world_entry(settings)
    try:
        create: Callable[[dict[str, Any]], World] = WORLDS.load(entry.name)
    except MissingPackage as e:
        raise WorldError(str(e)) from None
    return create(getattr(settings.world, entry.name, None) or {})


def gpu_budget(world: World, settings: Settings) -> GpuBudget:
    """The GPU world's time on air, counted and limited by [budget]; it counts nothing
    for a world that uses no GPU (the sketch world)."""
    b = settings.budget
    return GpuBudget(
        active=world.gpu,
        world=world.name,
        daily_gpu_hours=b.daily_gpu_hours,
        idle_after_s=b.idle_after_s,
        timezone=b.timezone,
    )


def resilient(world: World, settings: Settings, budget: GpuBudget | None = None) -> ResilientWorld:
    """The world as the broadcast sees it: a failing backend is held, retried, and
    covered by the sketch world, which also covers while the `budget` keeps a GPU
    world off air (streambot/world/resilient.py)."""
    if isinstance(world, ResilientWorld):
        return world

    def fallback() -> World:
        from .world.sketch import SketchWorld

        return SketchWorld(**settings.world.table("sketch"), wait_for_model=False)

    w = settings.world
    return ResilientWorld(world, fallback, fallback_after=w.fallback_after, retry_max_s=w.retry_max_s, budget=budget)


class ChatAdapter(Protocol):
    """A chat platform's connection (Twitch, Discord): a loop of its own, closed at the end;
    its `state`, when it has one, is shown in the console."""

    async def run(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class ShowOptions:
    outputs: list[str]
    duration_s: float | None = None
    chat_source: str | None = "-"  # "-" stdin, a file path, or None
    secrets: dict[str, str] = field(default_factory=dict)
    console: str | None = None  # "HOST:PORT" for the web console (streambot/console); None: no console
    watch: tuple[str, str] | None = None  # (folder, stream name): the local server's HLS, for the watch page
    adapters: tuple[ChatAdapter, ...] = ()  # more chat adapters, built by the caller


def check_inputs(settings: Settings, spec: WorldSpec, options: ShowOptions) -> Checked:
    """Start-up's first phase on the show's options (streambot/checks.py, which
    `streambot check` runs too): the first problem stops the start."""
    return checks.check_inputs(
        settings, spec, options.outputs, options.secrets, chat_source=options.chat_source, console=options.console
    )


def _warm_word_tools() -> None:
    """Load, before the first tick, what the first prompt and the first preview
    would otherwise load on air: the lemmatizer's dictionary (voting's pooling
    and the safety layers: a trie read from the cache folder, built on the
    first start, when it holds the GIL for a second or more: on air, a visible
    stall of every frame) and the image codecs the preview's JPEGs use."""
    from PIL import Image

    Image.preinit()
    lemma("warming")


class Show:
    """One broadcast: everything built, started and stopped in order."""

    def __init__(self, settings: Settings, spec: WorldSpec, world: World, options: ShowOptions) -> None:
        self.settings = settings
        self.spec = spec
        self.world = resilient(world, settings, gpu_budget(world, settings))
        self.budget = self.world.budget  # the GPU world's hours on air; Twitch tells it the viewers
        self.options = options
        self.broadcast: Broadcast | None = None
        self.compositor: Compositor | None = None  # the broadcast's, made before it opens
        self.director: Director | None = None
        self.audience: Audience | None = None
        self.store: Store | None = None
        self.chat: list[LocalChat] = []  # local chat readers
        self.adapters: list[tuple[ChatAdapter, asyncio.Task[None]]] = []  # Twitch, Discord: each a task of its own
        self.voice: VoiceService | None = None  # spoken commands, when [voice] is on
        self._console: PreparedConsole | None = None  # made in `open`, started in `run`
        self._stopping = asyncio.Event()
        self._settling: set[asyncio.Task[None]] = set()  # terminal replies waiting for the safety screen
        self._chats: list[tuple[str, ChatPlatform]] = []  # the chat platforms turned on, once checked
        self._states: Latest[ShowState] = Latest()
        self._no_timeline: Latest[int] = Latest()  # before the timeline is open
        self._seen_changes = -1  # the audience's `changes` when the state was last built
        self._refresh_at = 0.0  # the audience clock's time when the countdown shows its next second
        self._layout_version = 0

    def open(self, checked: Checked | None = None) -> None:
        """Start-up, in two phases. First every input is checked and nothing is
        opened (`check_inputs`; `checked` when the caller has done it already),
        so a mistake stops the start before any server sees a connection. Then
        the show connects; when that fails, everything opened so far is closed.

        The first frame must be on air within a few seconds, so nothing heavy
        is waited for: the sentence model (torch, transformers) loads in the
        background while the world starts on keywords; the processes the first
        frame needs (the overlay's drawing, each output) start before the world
        loads, so they come up while it does; and what the first frame does not
        need starts once the show is on air: the soundtrack's process (the
        weather plays until its music comes), the speech model's and the
        console's server (`run`)."""
        s = self.settings.stream
        size = s.dimensions
        bound_native_heap()
        warm = threading.Thread(target=_warm_word_tools, name="warm-up", daemon=True)
        warm.start()  # beside the processes starting below, which leave the GIL free
        audio: SoundtrackProcess | Silence | None = None
        connecting: Connecting | None = None
        try:
            # 1. every input, checked: nothing is opened yet (the world handed in is closed on a mistake)
            checked = checked or check_inputs(self.settings, self.spec, self.options)
            self.spec = checked.spec
            self._chats = checked.chats
            resume = checked.resume
            # 2. every ingest answers before anything starts
            for t in checked.targets:
                if t.startswith(("rtmp://", "rtmps://")):
                    check_reachable(t, s.connect_timeout_s)
            # 3. what takes a process of its own starts now and comes up while the world
            # loads: the overlay's drawing, the encoder's outputs (the soundtrack's
            # process is started by the sound's first request, once on air)
            audio = self._soundtrack()
            self.compositor = compositor = self._compositor(size)
            compositor.start_drawing()
            connecting = connect(s, checked.targets)
            # 4. the world (the sketch world takes the sentence model when it is loaded)
            self.world.start(self.spec, size, s.fps, seed=self.settings.world.seed)
            # 5. the timeline, the audience and the director, which opens the story
            self.store = Store(resolve_path(self.settings.voting.timeline))
            if self.budget is not None:
                self.budget.resume(self.store)  # today's GPU hours so far: a restart does not reset them
            self.audience = Audience.from_settings(
                self.settings, store=self.store, world=self.spec, wait_for_model=False
            )
            self.audience.resume()
            self.director = Director(
                self.world,
                self.spec,
                beat_interval_s=self.settings.director.beat_interval_s,
                transition_s=self.settings.world.transition_s,
            )
            # One event for each change of picture, published by the director.
            self.director.subscribe(self.audience.note_on_air)
            self.director.subscribe(self._on_air)
            self.director.subscribe(lambda entry: audio.set_story(entry.text))
            if resume and resume.get("text"):
                # A restart (or a crash) picks the show up where it was.
                self.director.story_paused = bool(resume.get("story_paused"))
                compositor.set_off_air(bool(resume.get("off_air")))
                self.director.resume(
                    resume["text"],
                    source=resume.get("source", "story"),
                    user=resume.get("user"),
                    beat=int(resume.get("beat", 0)),
                )
            else:
                self.director.begin()
            # 6. the first overlay (its drawing process is up by now); from here on
            # the overlay follows each published state
            compositor.set_state(self.overlay_state())
            self._states.listen(lambda state: compositor.set_state(self._overlay(state)))
            # 7. encoder and outputs, the one way every broadcast is built (once they answer)
            max_frames = round(self.options.duration_s * s.fps) if self.options.duration_s else None
            self.broadcast = open_broadcast(
                self.world, s, checked.targets, compositor, audio, connecting=connecting, max_frames=max_frames
            )
            for out in self.broadcast.outputs:
                log.info("streaming to %s", mask_url(out.target))
            # 8. the console's app, made while the drawing process draws the first
            # overlay (on two cores, beside it); its server starts once on air (`run`)
            self._console = self._prepare_console()
        except BaseException:
            if self.broadcast is None:  # the broadcast closes them once it has them
                if audio is not None:
                    audio.close()
                if connecting is not None:
                    connecting.close()
            self.close()  # whatever was opened: the world and its processes, the timeline, the outputs
            raise
        # The drawing process's start must not compete with the first seconds on air.
        compositor.flush(20)
        warm.join(30)

    def _voice(self) -> VoiceService | None:
        """The voice worker, its speech model loading in a process of its own (made
        once the show is on air: nothing waits for it); a missing model turns
        voice off, not the show."""
        if not self.settings.voice.enabled:
            return None
        from .audience.voice import VoiceError, VoiceService

        try:
            return VoiceService.from_settings(self.settings.voice, self.audience)
        except VoiceError as e:
            log.error("voice commands are off: %s", e)
            return None

    def _soundtrack(self) -> SoundtrackProcess | Silence:
        """The world's music (or the streamer's folder of music) with its weather,
        in a process of its own (audio_feed.SoundtrackProcess). That process is
        spawned by the feed's first request, when the broadcast starts: its
        interpreter, scipy and instruments (about a second of CPU) would
        otherwise compete with the first frame on a small machine."""
        a = self.settings.audio
        if not a.enabled:
            return Silence()
        track = SoundtrackProcess(
            SoundtrackSettings(
                music_of(self.spec),
                seed=self.settings.world.seed,
                music_dir=Path(a.music_dir).expanduser() if a.music_dir else None,  # checked in check_inputs
                crossfade_s=a.crossfade_s,
                loudness_lufs=a.loudness_lufs,
                true_peak_dbtp=a.true_peak_dbtp,
                volume=a.volume,
                music_on=a.music,
            )
        )
        return track

    def _compositor(self, size: tuple[int, int]) -> Compositor:
        layout = load_layout(layout_name(self.settings.overlay.layout, self.spec))
        return Compositor(size, layout, burn_in=self.settings.overlay.burn_in)

    def _resume_state(self, on: OnAir | None) -> dict[str, Any]:
        """What a restart needs to pick the show up (see `resume_point`)."""
        assert self.director is not None
        return {
            "configured": self.settings.world.preset,
            "preset": self.spec.name,
            "spec": self.spec.to_dict(),
            "text": on.text if on else None,
            "source": on.source if on else "story",
            "user": on.user if on else None,
            "beat": self.director.beat,
            "story_paused": self.director.story_paused,
            "off_air": self.off_air,
        }

    def _save_world(self) -> None:
        if self.store is not None and self.director is not None:
            self.store.save_state(self._resume_state(self.director.on_air), "world")

    def _on_air(self, entry: OnAir) -> None:
        """The director's event: one timeline write for it, and the new state."""
        if self.store is not None:
            self.store.record_on_air(entry, state=self._resume_state(entry))
        if self.audience is not None:
            self.publish_state()

    def on_local_line(self, user: str, text: str) -> None:
        """A line typed by the streamer: a chat command (`!p`, `!vote 2`, …) goes
        through the audience like anyone's; plain text goes on air at once."""
        if self.audience is None or self.director is None:
            return
        if text.startswith(("!", "+")):
            reply = self.audience.chat("local", user, text, roles=("broadcaster",))
            if reply.screening:  # the idea's number once the safety screen has passed it
                task = asyncio.get_running_loop().create_task(self._say_settled(reply))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
            elif reply.text:
                log.info("chat: %s", reply.text)
        else:
            self.force(text, actor=user)

    async def _say_settled(self, reply: Reply) -> None:
        assert self.audience is not None
        settled = await self.audience.settle(reply)
        if settled.text:
            log.info("chat: %s", settled.text)

    def force(self, text: str, *, actor: str) -> bool:
        """The streamer puts a prompt on air now; every moderation layer still applies.
        The timeline records it once, from the director's event (its `actor`)."""
        assert self.audience is not None and self.director is not None
        cleaned = self.audience.screen_text(text)
        if cleaned is None:
            log.warning("%s: that prompt can't go on air (moderation)", actor)
            return False
        log.info("%s: force %s", actor, cleaned)
        self.director.submit(cleaned, source="console", user=actor, actor=actor)
        return True

    # -- the streamer's controls (the console calls these; each is recorded once) -------
    def record(self, actor: str, action: str, detail: str = "") -> None:
        """An action for the timeline (a login, a logout, a control)."""
        log.info("%s: %s %s", actor, action, detail)
        if self.store is not None:
            self.store.log_action(actor, action, detail)

    def switch_world(self, name_or_path: str, *, actor: str) -> WorldInfo:
        """Another preset (or a custom world file): the world morphs into it."""
        spec = resolve_world(name_or_path)
        self.spec = spec
        assert self.director is not None
        self.director.set_world(spec)
        if self.audience is not None:
            self.audience.set_world(spec)
        self.world.change_world(spec, self.settings.world.transition_s * 2)
        if self.broadcast is not None:
            self.broadcast.compositor.set_layout(load_layout(layout_name(self.settings.overlay.layout, spec)))
            self.broadcast.soundtrack.set_world_music(music_of(spec))
            self._layout_version += 1
        self.record(actor, "switch world", spec.name)
        self._save_world()
        self.publish_state()
        return WorldInfo(spec.name, spec.title, spec.description)

    def pause_story(self, paused: bool, *, actor: str) -> None:
        assert self.director is not None
        self.director.story_paused = paused
        self.record(actor, "pause story" if paused else "resume story")
        self._save_world()
        self.publish_state()

    def set_music(self, on: bool, *, actor: str) -> None:
        """The music fades in or out; the world's weather goes on either way."""
        assert self.broadcast is not None
        self.broadcast.soundtrack.set_music(on)
        self.record(actor, "music on" if on else "music off")
        self.publish_state()

    # the audience's controls, for the console (the audience records each)
    def skip_round(self, *, actor: str) -> None:
        assert self.audience is not None
        self.audience.skip_round(actor=actor)
        self.publish_state()

    def approve(self, candidate_id: int, *, actor: str) -> bool:
        assert self.audience is not None
        ok = self.audience.approve(candidate_id, actor=actor)
        self.publish_state()
        return ok

    def reject(self, candidate_id: int, *, actor: str) -> bool:
        assert self.audience is not None
        ok = self.audience.reject(candidate_id, actor=actor)
        self.publish_state()
        return ok

    def ban(self, user: str, *, actor: str, platform: str | None = None) -> None:
        assert self.audience is not None
        self.audience.ban(user, actor=actor, platform=platform)
        self.publish_state()

    def unban(self, user: str, *, actor: str, platform: str | None = None) -> None:
        assert self.audience is not None
        self.audience.unban(user, actor=actor, platform=platform)
        self.publish_state()

    def set_round_length(self, seconds: float, *, actor: str) -> None:
        """ValueError when shorter than the stream delay and grace."""
        assert self.audience is not None
        self.audience.set_round_length(seconds, actor=actor)
        self.publish_state()

    def lock(self, locked: bool, *, actor: str) -> None:
        assert self.audience is not None
        self.audience.lock(actor=actor, locked=locked)
        self.publish_state()

    def set_mode(self, mode: Mode, *, actor: str) -> None:
        """Rounds or anarchy; a round under way is decided by the switch and its
        winner goes on air the one way every winner does."""
        assert self.audience is not None
        winner = self.audience.set_mode(mode, actor=actor)
        if winner is not None:
            self.on_winner(winner)
        self.publish_state()

    def audio_status(self) -> dict[str, Any]:
        """Loudness, what plays, and any problem with the music, for the console."""
        return self.broadcast.audio_status() if self.broadcast is not None else {}

    def kill_switch(self, on: bool, *, actor: str) -> None:
        """Off air at once: the slate replaces the picture and prompts stop (one
        entry in the timeline: the switch, not the lock it implies)."""
        assert self.broadcast is not None and self.audience is not None
        self.broadcast.compositor.set_off_air(on)
        self.audience.lock(actor=actor, locked=on, action="kill switch on" if on else "kill switch off")
        self._save_world()
        self.publish_state()

    @property
    def off_air(self) -> bool:
        return bool(self.compositor and self.compositor.off_air)

    # -- what the show shows, published ------------------------------------------------
    @property
    def states(self) -> Latest[ShowState]:
        """Each change of `state()`: the overlay, the console's pages and Discord subscribe."""
        return self._states

    def state(self) -> ShowState:
        assert self.audience is not None and self.director is not None
        a, spec = self.audience, self.spec
        soundtrack = self.broadcast.soundtrack if self.broadcast is not None else None
        return ShowState(
            world=WorldInfo(spec.name, spec.title, spec.description),
            on_air=self.director.on_air,
            off_air=self.off_air,
            story_paused=self.director.story_paused,
            music_on=bool(getattr(soundtrack, "music_on", False)),
            round=a.snapshot(),
            bans=a.banned(),
            counts=dict(a.counts),
            layout=self._layout_version,
            discord_invite=self.settings.overlay.discord_invite or None,
        )

    def publish_state(self) -> bool:
        """Publish the state now (a control, an on-air change; the loop when it is due)."""
        state = self.state()
        if self.audience is not None:
            self._seen_changes = self.audience.changes
            left = state.round.time_left
            # the countdown shows ceil(time_left) seconds: its next change, at most a second away
            step = left - math.ceil(left) + 1.0 if left > 0 else 1.0
            self._refresh_at = self.audience.clock() + min(1.0, max(0.01, step))
        return self._states.publish(state)

    def _state_due(self) -> bool:
        """The state may have changed since it was last published: the audience had an event,
        or the countdown's next second is due."""
        a = self.audience
        return a is not None and (a.changes != self._seen_changes or a.clock() >= self._refresh_at)

    @staticmethod
    def _overlay(state: ShowState) -> OverlayState:
        return build_overlay_state(
            state.round, state.on_air, state.world.title, off_air=state.off_air, discord_invite=state.discord_invite
        )

    def overlay_state(self, state: ShowState | None = None) -> OverlayState:
        """What the overlay shows for `state` (default: now)."""
        return self._overlay(state if state is not None else self.state())

    def overlay_layout(self) -> dict[str, Any]:
        """The overlay layout on air, for the OBS page."""
        assert self.compositor is not None
        return layout_json(self.compositor.layout)

    # -- the broadcast, read ------------------------------------------------------------
    def health(self) -> Health | None:
        return self.broadcast.health() if self.broadcast is not None else None

    def frame(self) -> int | None:
        """The frame going out now (the clock's tick count)."""
        return self.broadcast.clock.stats.ticks if self.broadcast is not None else None

    def streaming(self) -> bool:
        """The broadcast is running: not stopped, not failed."""
        b = self.broadcast
        return b is not None and not b.clock.done.is_set() and b.clock.error is None

    def observe_frames(self, observer: Callable[[int, Any], None]) -> Callable[[], None]:
        """Call `observer(index, frame)` for each frame going out (on the clock's thread);
        returns the remover."""
        assert self.broadcast is not None
        broadcast = self.broadcast
        broadcast.frame_observer = observer

        def remove() -> None:
            if broadcast.frame_observer == observer:
                broadcast.frame_observer = None

        return remove

    @property
    def timeline_changes(self) -> Latest[int]:
        """Bumped each time the timeline records an action (the store publishes it once written)."""
        return self.store.timeline_changes if self.store is not None else self._no_timeline

    def timeline(self, limit: int = 40) -> list[TimelineEntry]:
        """This session's latest actions, newest first."""
        if self.store is None:
            return []
        return [TimelineEntry(r["at"], r["actor"], r["action"], r["detail"]) for r in self.store.actions(limit)]

    def now(self) -> float:
        """The show clock (the timeline's times)."""
        return self.store.clock() if self.store is not None else time.monotonic()

    def watch_source(self) -> tuple[Path, str] | None:
        """The local server's HLS folder and stream name, when there is one to watch (the demo)."""
        return (Path(self.options.watch[0]), self.options.watch[1]) if self.options.watch else None

    def world_status(self) -> dict[str, Any]:
        return self.world.status().to_json()

    def budget_status(self) -> dict[str, Any] | None:
        """GPU hours used today, the budget, the viewers, why the sketch world is on air."""
        return self.budget.status().to_json() if self.budget is not None else None

    def adapter_states(self) -> dict[str, str]:
        states = {f"local:{c.source}": c.state for c in self.chat}
        for adapter, task in self.adapters:
            name = type(adapter).__name__
            states[name] = "crashed" if task.done() and not task.cancelled() else getattr(adapter, "state", "?")
        return states

    def on_winner(self, winner: Winner) -> None:
        """A round's winner goes on air (the director publishes it)."""
        assert self.director is not None
        self.director.submit(winner.text, source="audience", user=winner.user, round=winner.round)

    def _start_adapters(self, loop: asyncio.AbstractEventLoop) -> None:
        """The chat platforms turned on (checked in the first phase); a failure in one never stops the show."""
        assert self.audience is not None
        ctx = ChatContext(
            self.audience,
            self.settings,
            self.options.secrets,
            store=self.store,
            voice=self.voice,
            on_viewers=self.budget.set_viewers if self.budget is not None else None,
            chat_source=self.options.chat_source,
            on_line=self.on_local_line,
            states=self.states,
            on_air=self.director.subscribe if self.director is not None else None,
        )
        for name, platform in self._chats:
            adapter = platform.create(ctx)
            if isinstance(adapter, LocalChat):  # a reading thread, not a task of its own
                adapter.start(loop)
                self.chat.append(adapter)
            else:
                self._run_adapter(adapter, name, loop)
        for adapter in self.options.adapters:
            self._run_adapter(adapter, type(adapter).__name__, loop)

    def _run_adapter(self, adapter: ChatAdapter, name: str, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(adapter.run(), name=f"{name} chat")
        task.add_done_callback(lambda t: self._adapter_ended(name, t))
        self.adapters.append((adapter, task))

    @staticmethod
    def _adapter_ended(name: str, task: asyncio.Task[None]) -> None:
        """An adapter's own loop never ends by an error: when it does, say so once (the console shows it)."""
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            log.error("%s chat crashed (%s); the show goes on without it", name, redact(f"{type(e).__name__}: {e}"))
            log.debug("%s chat crash", name, exc_info=e)

    async def run(self) -> None:
        """Go live and stay live until stopped (signal, duration, or `stop()`)."""
        assert self.broadcast is not None and self.director is not None and self.audience is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                pass
        self.broadcast.start()
        # The console's server comes up once the first frames are out; its address was
        # checked before anything connected (checks.check_inputs), its app made in `open`.
        console = await self._start_console()
        voting = loop.create_task(self.audience.run(self.on_winner), name="voting")
        self.voice = self._voice()
        if self.voice is not None:
            self.voice.bind(loop)
        self._start_adapters(loop)
        last_report = time.monotonic()
        try:
            while not self._stopping.is_set():
                if self.broadcast.clock.done.is_set():
                    break
                self.director.tick()  # an on-air change publishes the state itself
                if self._state_due():
                    self.publish_state()
                if time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    h = self.broadcast.health()
                    log.info(
                        "health: %.1f fps out, world %.1f fps, %d late, %d repeated, %d skipped, x264 %s",
                        h.output_fps,
                        h.generator_fps,
                        h.late_frames,
                        h.repeated_frames,
                        h.skipped_frames,
                        h.encoder_preset,
                    )
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=0.1)
                except TimeoutError:
                    pass
        finally:
            for adapter, task in self.adapters:
                try:
                    await asyncio.wait_for(adapter.close(), 10)
                except Exception as e:
                    log.warning("closing %s: %s", type(adapter).__name__, e)
                task.cancel()
            await self.audience.close()
            # Let a pooling batch in flight finish before the sentence model's
            # process is closed under it (close() below).
            try:
                await asyncio.wait_for(voting, 10)
            except (TimeoutError, Exception):
                voting.cancel()
            if console is not None:
                await console.stop()
            await asyncio.to_thread(self.close)

    # -- the web console, on this loop ------------------------------------------------
    def _prepare_console(self) -> PreparedConsole | None:
        if not self.options.console:
            return None
        from .console.server import PreparedConsole

        return PreparedConsole(self, self.options.console, secrets=self.options.secrets)

    async def _start_console(self) -> ConsoleServer | None:
        prepared, self._console = self._console, None
        if prepared is None:
            return None
        try:
            return await prepared.start()
        except BaseException:
            await asyncio.to_thread(self.close)
            raise

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        if self._console is not None:  # made, never started
            self._console.close()
            self._console = None
        for chat in self.chat:
            chat.close()
        if self.voice is not None:
            self.voice.close()
        if self.broadcast is not None:
            self.broadcast.stop()
            if self.broadcast.clock.error is not None:
                log.error("the broadcast stopped early: %s", self.broadcast.clock.error)
        elif self.compositor is not None:  # a start that failed before the broadcast took it over
            self.compositor.close()
        self.world.close()  # its budget writes the last GPU seconds to the store: close that after
        if self.store is not None:
            self.store.close()
        embeddings.close()
