"""Hostile input, generated: no crash, no double votes, nothing blocked becomes a candidate."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streambot.audience.events import Audience, ChatMessage
from streambot.audience.moderation import Moderation, normalise
from streambot.config import ModerationSettings, VotingSettings
from streambot.viewer import Viewer
from streambot.voting import VotingEngine

MOD = Moderation(ModerationSettings())
BAD = ["shit", "fuck", "kill yourself", "porn", "nigger", "cunt"]

zalgo = st.builds(
    lambda base, marks: "".join(c + "".join(marks) for c in base),
    st.text(string.ascii_letters, min_size=1, max_size=30),
    st.lists(st.characters(min_codepoint=0x300, max_codepoint=0x36F), max_size=20),
)
controls = st.sampled_from(
    ["\x00", "\u202e", "\u202d", "\u2066", "\u200b", "\u200d", "\ufeff", "\U000e0000", "\u034f", "\x7f", "\n"]
)
emoji = st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), min_size=1, max_size=500)
hostile = st.one_of(
    st.text(max_size=300),
    st.builds(lambda t: (t * 10_000)[:10_000], st.text(min_size=1, max_size=60)),  # 10,000 characters
    zalgo,
    emoji,
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=50), controls, st.text(max_size=50)),
)


def disguise(word: str, how: int, sep: str) -> str:
    leet = str.maketrans({"i": "1", "e": "3", "o": "0", "a": "4", "s": "$"})
    look = str.maketrans({"a": "а", "e": "е", "o": "о", "c": "с", "p": "р", "i": "і"})  # Cyrillic
    forms = [
        word.upper(),
        sep.join(word),
        word.translate(leet),
        word.translate(look),
        "".join(ch * 3 for ch in word),
        "\u200b".join(word),
        "".join(chr(ord(ch) + 0xFEE0) if ch != " " else ch for ch in word),  # fullwidth
    ]
    return forms[how % len(forms)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile)
def test_normalise_never_crashes_and_is_clean(text: str) -> None:
    out = normalise(text)
    assert len(out) <= 200
    assert not any(c in out for c in "\x00\u202e\u202d\u2066\u200b\u200d\ufeff\U000e0000\x7f\n")
    assert out == out.strip() and "  " not in out
    assert normalise(out) == out or len(out) == 200  # idempotent


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(BAD),
    st.integers(0, 20),
    st.sampled_from([" ", ".", "-", "_", "*"]),
    st.text(string.ascii_lowercase + " ", max_size=20),
    st.text(string.ascii_lowercase + " ", max_size=20),
)
def test_disguised_block_words_never_become_candidates(word, how, sep, before, after) -> None:
    text = f"{before} {disguise(word, how, sep)} {after}"
    engine = VotingEngine(VotingSettings(), now=0.0)
    aud = Audience(engine, Moderation(ModerationSettings(), block_list=MOD.block_list))
    reply = aud.handle(ChatMessage(Viewer("twitch", "troll"), "!p " + text), now=1.0)
    assert reply.kind == "blocked", text
    assert engine.snapshot(1.0).total_candidates == 0 and word not in reply.text


messages = st.lists(
    st.tuples(
        st.integers(0, 40),  # which account
        st.floats(0, 60, allow_nan=False),  # when
        st.one_of(  # (text, known bad): a block-list word in disguise is bad by how it was built
            st.one_of(
                st.builds(lambda n: f"!vote {n}", st.integers(-5, 30)),
                st.builds(lambda n: f"!{n}", st.integers(0, 12)),
                st.builds(lambda n: f"+{n}", st.integers(0, 12)),
                st.builds(lambda t: f"!p {t}", hostile),
                st.sampled_from(["!help", "!now", "!skip", "!lock", "!ban u1", "!p", "!vote", "hello"]),
                hostile,
            ).map(lambda text: (text, False)),
            st.builds(lambda w, h: (f"!p {disguise(w, h, ' ')}", True), st.sampled_from(BAD), st.integers(0, 10)),
        ),
    ),
    max_size=150,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.sampled_from(["rounds", "anarchy"]))
def test_chat_storm_keeps_the_rules(msgs, mode) -> None:
    engine = VotingEngine(VotingSettings(mode=mode, round_s=5, stream_delay_s=2, grace_s=1), now=0.0)
    aud = Audience(engine, Moderation(ModerationSettings(), block_list=MOD.block_list))
    results = []
    aud.subscribe(results.append)
    for who, t, (text, bad) in sorted(msgs, key=lambda m: m[1]):
        aud.tick(t)
        roles = frozenset({"moderator"}) if who == 0 else frozenset()
        reply = aud.handle(ChatMessage(Viewer("twitch", f"u{who}", roles), text), now=t)
        if bad:  # the oracle is how the text was made, not the block list under test
            assert reply.kind in ("blocked", "none"), (text, reply)  # "none": its sender was banned
        for r in filter(None, (engine.current, engine.closing)):
            # One ballot per viewer, and the tallies add up to exactly those ballots.
            voters = [k for c in r.candidates for k in c.voters]
            assert len(voters) == len(set(voters)) == len(r.ballots)
            assert abs(sum(c.votes for c in r.candidates) - sum(b.weight for b in r.ballots.values())) < 1e-9
            for c in r.candidates:
                assert not MOD.is_blocked(c.text) and len(c.text) <= 200
    aud.tick(1000.0)
    for r in results:
        users = [u for c in r.candidates for u in c.users]
        assert len(users) == len(set(users))
        if r.winner is not None:
            assert not MOD.is_blocked(r.winner.text)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200), st.integers(1, 8))
def test_scripted_accounts_get_one_vote_each(accounts, repeats) -> None:
    engine = VotingEngine(VotingSettings(), now=0.0)
    aud = Audience(engine, Moderation(ModerationSettings()))
    aud.chat("twitch", "ann", "!p a dragon", now=0.1)
    aud.chat("twitch", "bob", "!p a castle", now=0.2)
    for rep in range(repeats):
        for i in range(accounts):
            aud.chat("twitch", f"bot{i}", ["!vote 2", "!2", "+2", "!vote 1"][rep % 4], now=1 + rep)
    (r,) = engine.tick(20.0)  # round 1 ends at 10 s; its votes count for 5 + 2 s more
    total = sum(c.votes for c in r.candidates)
    assert total == accounts + 2
