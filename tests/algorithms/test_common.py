"""Prompts, votes and confidences shared by the programs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from algorithms._common import chat_prompt, continue_prompt, mean_logprob_confidence, weighted_vote
from algorithms.protocol import Completion, QueryInfo, TokenLogprob

labels_st = st.lists(st.one_of(st.none(), st.integers(0, 4)), max_size=12)


@given(labels_st)
def test_unweighted_vote_is_the_most_common_label(labels):
    winner = weighted_vote(labels)
    answered = [x for x in labels if x is not None]
    if not answered:
        assert winner is None
    else:
        assert answered.count(winner) == max(answered.count(x) for x in answered)


@given(labels_st, st.data())
def test_weighted_vote_maximises_the_total_weight(labels, data):
    weights = data.draw(st.lists(st.floats(0, 10), min_size=len(labels), max_size=len(labels)))
    winner = weighted_vote(labels, weights)
    totals: dict[int, float] = {}
    for label, w in zip(labels, weights, strict=True):
        if label is not None:
            totals[label] = totals.get(label, 0.0) + w
    if not totals:
        assert winner is None
    else:
        assert totals[winner] == pytest.approx(max(totals.values()), rel=1e-9, abs=1e-12)


def test_vote_ties_go_to_the_first_seen_and_lengths_must_match():
    assert weighted_vote([2, 1, 1, 2]) == 2
    with pytest.raises(ValueError):
        weighted_vote([1, 2], [1.0])


def test_chat_prompt_appends_the_instruction_to_text_only():
    assert chat_prompt(QueryInfo("q", "2+2?"), "Box it.") == [{"role": "user", "content": "2+2?\nBox it."}]
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert chat_prompt(QueryInfo("q", messages), "Box it.") == messages


def test_continue_prompt_adds_a_partial_assistant_message():
    base = [{"role": "user", "content": "u"}]
    assert continue_prompt(base, "so far") == [*base, {"role": "assistant", "content": "so far"}]
    assert base == [{"role": "user", "content": "u"}]


def test_confidence_is_the_geometric_mean_token_probability():
    tokens = (TokenLogprob("a", math.log(0.5)), TokenLogprob("b", math.log(0.125)))
    done = Completion("ab", 1, 2, "stop", logprobs=tokens)
    assert mean_logprob_confidence(done) == pytest.approx(0.25)
    assert mean_logprob_confidence(Completion("ab", 1, 2, "stop")) is None
