"""Arbitrary and mutated messages: nothing raises out of processing, and every message ends in
a state that says what became of it."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supportdesk.intake.models import MessageState
from supportdesk.intake.parse import parse_message
from tests.intake.mail import CORPUS, corpus, deliver

pytestmark = pytest.mark.django_db

FINAL = {
    MessageState.PROCESSED, MessageState.HELD, MessageState.REJECTED,
    MessageState.RECORDED, MessageState.DUPLICATE, MessageState.QUARANTINED,
}  # fmt: skip
NAMES = sorted(p.name for p in CORPUS.glob("*.eml"))
FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def mutated(draw):
    raw = corpus(draw(st.sampled_from(NAMES)), sender="bob@acme.test", number=1000)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 20))
        raw = raw[:at] + draw(st.binary(max_size=20)) + raw[at + cut :]
    return raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | mutated())
def test_the_parser_never_raises(raw):
    parsed = parse_message(raw)
    for text in (parsed.subject, parsed.text, parsed.html, parsed.from_address, parsed.message_id):
        assert "\x00" not in text
        text.encode("utf-8")


def check(message):
    assert message.state in FINAL
    if message.state == MessageState.PROCESSED:
        assert message.ticket is not None
    if message.state == MessageState.QUARANTINED:
        assert message.error


@FAST
@given(raw=st.binary(max_size=1500))
def test_arbitrary_bytes_end_in_a_final_state(bob, raw):
    check(deliver(raw))


@FAST
@given(raw=mutated())
def test_mutated_corpus_messages_end_in_a_final_state(bob, raw):
    check(deliver(raw))
