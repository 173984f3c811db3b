"""The timeline: rounds, votes, winners, bans, actions; resume; `streambot timeline`."""

import json
from pathlib import Path

from click.testing import CliRunner

from streambot.audience.events import Audience
from streambot.audience.moderation import Moderation
from streambot.cli_audience import timeline
from streambot.config import ModerationSettings, VotingSettings
from streambot.onair import OnAir
from streambot.replay import VirtualClock
from streambot.store import Store, hms
from streambot.viewer import Viewer
from streambot.voting import VotingEngine
from streambot.world.base import Direction


def make(path: Path, clock: VirtualClock, background: bool = True) -> Audience:
    store = Store(path, clock=clock, wall=lambda: 1_700_000_000.0, background=background)
    engine = VotingEngine(VotingSettings(round_s=10, stream_delay_s=0, grace_s=2), now=clock())
    return Audience(engine, Moderation(ModerationSettings()), store=store, clock=clock)


def aired(aud: Audience, winner) -> None:
    """The winner goes on air: the director's event, as the show writes it to the timeline."""
    aud.store.record_on_air(
        OnAir(Direction(winner.text, winner.text, "audience", winner.user), 1, aud.clock(), round=winner.round)
    )


def test_rounds_votes_winners_and_chapters(tmp_path: Path) -> None:
    clock = VirtualClock(100.0)  # the show clock need not start at 0
    aud = make(tmp_path / "t.sqlite3", clock)
    aud.chat("twitch", "ann", "!p a dragon", now=101)
    aud.chat("twitch", "bob", "!p a castle", now=102)
    aud.chat("discord", "cat", "!vote 2", now=103)
    clock.t = 3700.0 + 12
    winner = aud.tick(112)
    assert winner.text == "a castle"
    aired(aud, winner)
    aud.chat("twitch", "ann", "!p night falls", now=3701)
    clock.t = 3714
    aired(aud, aud.tick(3714))
    aud.ban("troll", actor="console")
    aud.skip_round(actor="console:admin", now=3715)
    aud.store.flush()
    rounds = aud.store.rounds()
    assert [r["winner"] for r in rounds] == ["a castle", "night falls", None]
    assert rounds[0]["candidates"][0]["text"] == "a castle" and rounds[0]["candidates"][0]["votes"] == 2
    assert {(v["user"], v["platform"], v["cid"]) for v in rounds[0]["votes"]} == {
        ("ann", "twitch", 1),
        ("bob", "twitch", 2),
        ("cat", "discord", 2),
    }
    assert rounds[2]["skipped"] == 1
    assert aud.store.chapters() == [(3612.0, "a castle"), (3614.0, "night falls")]
    assert hms(3612) == "01:00:12"
    assert aud.store.bans() == ["*:troll"]
    aud.store.close()
    aud.store.close()  # twice is fine

    r = CliRunner().invoke(timeline, ["--db", str(tmp_path / "t.sqlite3"), "--format", "chapters"])
    assert r.exit_code == 0 and r.stdout == "01:00:12 a castle\n01:00:14 night falls\n"
    r = CliRunner().invoke(timeline, ["--db", str(tmp_path / "t.sqlite3"), "--format", "jsonl"])
    assert [json.loads(x)["number"] for x in r.stdout.splitlines()] == [1, 2, 3]
    r = CliRunner().invoke(timeline, ["--db", str(tmp_path / "t.sqlite3")])
    assert "a castle" in r.stdout and "(skipped)" in r.stdout


def test_restart_resumes_round_and_bans(tmp_path: Path) -> None:
    clock = VirtualClock(0.0)
    aud = make(tmp_path / "t.sqlite3", clock)
    aud.chat("twitch", "ann", "!p a dragon", now=1)
    aud.chat("twitch", "bob", "!p a castle", now=2)
    aud.chat("twitch", "cat", "!2", now=3)
    aud.ban("troll", actor="console", platform="twitch")
    aud.store.save_state(aud.engine.state(4))
    aud.store.close()

    clock2 = VirtualClock(50.0)
    aud2 = make(tmp_path / "t.sqlite3", clock2)
    assert aud2.resume()
    assert aud2.moderation.is_banned(Viewer("twitch", "troll"))
    s = aud2.snapshot(50)
    assert s.round == 1 and [(c.text, c.votes) for c in s.candidates] == [("a castle", 2.0), ("a dragon", 1.0)]
    aud2.chat("twitch", "cat", "!1", now=51)  # still one vote each
    assert aud2.tick(60).text == "a dragon"
    aud2.store.close()


def test_timeline_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(timeline, ["--db", str(tmp_path / "none.sqlite3")])
    assert r.exit_code != 0 and "no timeline there yet" in r.stderr
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    r = CliRunner().invoke(timeline, ["--db", str(bad)])
    assert r.exit_code != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
