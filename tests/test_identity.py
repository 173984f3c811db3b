"""Viewers by platform id, bans that follow an account, and taking a message back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from streambot.audience.events import Audience, ChatMessage
from streambot.audience.moderation import Moderation
from streambot.config import ModerationSettings, VotingSettings
from streambot.store import Store
from streambot.viewer import Viewer
from streambot.voting import VotingEngine


def audience(store: Store | None = None) -> Audience:
    engine = VotingEngine(VotingSettings(round_s=10, grace_s=2, stream_delay_s=0), now=0.0)
    return Audience(engine, Moderation(ModerationSettings(viewer_burst=10)), store=store, clock=lambda: 0.0)


def say(aud: Audience, who: Viewer, text: str, message_id: str, now: float = 1.0) -> None:
    aud.handle(ChatMessage(who, text, message_id), now)


def ballot(aud: Audience, now: float = 1.0) -> list[tuple[int | None, str, float, str]]:
    return [(c.number, c.text, c.votes, c.author) for c in aud.snapshot(now).candidates]


ANN, BOB, CAT, DAN = (
    Viewer("twitch", n, frozenset({"viewer"}), str(i)) for i, n in enumerate(("ann", "bob", "cat", "dan"), 11)
)


def test_the_key_is_the_platform_id_when_there_is_one() -> None:
    assert Viewer("twitch", "Ann", id="11").key == "twitch:11"
    assert Viewer("twitch", "Ann_Renamed", id="11").key == Viewer("twitch", "ann", id="11").key
    assert Viewer("local", "Ann").key == "local:ann"


def test_a_deleted_prompt_leaves_and_its_idea_stays_with_the_next_submitter() -> None:
    aud = audience()
    say(aud, ANN, "!p a dragon", "m1")
    say(aud, BOB, "!p a dragon", "m2")  # the same idea: bob joins #1
    say(aud, CAT, "!p a castle", "m3")
    say(aud, DAN, "!vote 2", "m4")
    assert ballot(aud) == [(1, "a dragon", 2.0, "ann"), (2, "a castle", 2.0, "cat")]
    assert aud.retract_message("twitch", "m1")
    assert ballot(aud) == [(2, "a castle", 2.0, "cat"), (1, "a dragon", 1.0, "bob")]
    assert not aud.retract_message("twitch", "m1")  # once
    assert not aud.retract_message("discord", "m3")  # another platform's message ids
    assert aud.retract_message("twitch", "m3")  # cat's lone prompt: the candidate and dan's vote go
    assert ballot(aud) == [(1, "a dragon", 1.0, "bob")]
    assert aud.handle(ChatMessage(DAN, "!vote 2", "m5"), 1.0).kind == "unknown"  # #2 leads nowhere now
    say(aud, CAT, "!p a castle", "m6")  # the same words again make a new candidate
    assert [c.text for c in aud.snapshot(1.0).candidates] == ["a dragon", "a castle"]
    assert aud.tick(13.0).user == "bob"  # ann's deleted prompt earns her nothing


def test_a_deleted_vote_leaves_only_if_it_is_still_the_viewers_vote() -> None:
    aud = audience()
    say(aud, ANN, "!p a dragon", "m1")
    say(aud, BOB, "!p a castle", "m2")
    say(aud, CAT, "!vote 1", "m3")
    say(aud, CAT, "!vote 2", "m4")  # changed her mind
    assert aud.retract_message("twitch", "m3") is False  # that vote is no longer hers
    assert ballot(aud) == [(2, "a castle", 2.0, "bob"), (1, "a dragon", 1.0, "ann")]
    assert aud.retract_message("twitch", "m4")
    assert ballot(aud) == [(1, "a dragon", 1.0, "ann"), (2, "a castle", 1.0, "bob")]
    assert [c.text for c in aud.snapshot(1.0).candidates if c.author == "bob"] == ["a castle"]  # bob's stays


def test_a_cleared_viewer_leaves_every_open_round() -> None:
    aud = audience()
    say(aud, ANN, "!p a dragon", "m1")
    say(aud, BOB, "!p a dragon", "m2")
    say(aud, ANN, "!p a comet", "m3")  # ann's vote moves to her second idea
    say(aud, CAT, "!p a castle", "m4")
    aud.tick(10.5)  # round 1 ends; its grace period runs to 12
    say(aud, ANN, "!p a forest", "m5", now=10.6)  # round 2
    assert aud.retract_viewer(Viewer("twitch", "ann_renamed", id="11")) == 5  # 1 vote + 4 submissions
    assert aud.snapshot(10.6).candidates == ()
    winner = aud.tick(12.5)
    assert (winner.text, winner.user) in {("a dragon", "bob"), ("a castle", "cat")}
    assert winner.user != "ann"


def test_bans_follow_the_account(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.sqlite3", background=False)
    aud = audience(store)
    mod = Viewer("twitch", "boss", frozenset({"moderator"}), "1")
    say(aud, ANN, "hello", "m1")
    say(aud, ANN, "!p a dragon", "m2")
    say(aud, mod, "!ban ann", "m3")  # by name: the account seen under it is banned too
    assert ballot(aud) == []
    renamed = Viewer("twitch", "not_ann", frozenset({"viewer"}), "11")
    say(aud, renamed, "!p a comet", "m4")
    assert ballot(aud) == []
    aud.ban("eve", actor="discord:boss", platform="discord", user_id="42")  # Discord bans by member id
    assert aud.moderation.is_banned(Viewer("discord", "eve_again", id="42"))
    assert not aud.moderation.is_banned(Viewer("discord", "eve", id="43"))
    store.close()

    again = audience(Store(tmp_path / "t.sqlite3", background=False))  # a restart keeps them
    assert again.moderation.is_banned(renamed)
    assert again.moderation.is_banned(Viewer("discord", "someone", id="42"))
    again.unban("ann", actor="console", platform="twitch")  # the name lifts the account's ban too
    assert not again.moderation.is_banned(renamed)
    again.unban("42", actor="console", platform="discord")  # as the console lists it
    assert not again.moderation.is_banned(Viewer("discord", "eve", id="42"))
    assert again.store.bans() == []
    again.store.close()


def test_a_timeline_from_before_keeps_its_bans(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE bans (key TEXT PRIMARY KEY, actor TEXT NOT NULL, at_wall REAL NOT NULL)")
        db.execute("INSERT INTO bans VALUES ('*:troll', 'console', 1.0)")
    store = Store(path, background=False)
    assert store.bans() == ["*:troll"] and store.ban_names() == {}
    store.add_ban("twitch:77", "console", "troll")
    assert store.ban_names() == {"twitch:77": "troll"}
    store.close()
