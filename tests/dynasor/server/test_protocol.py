"""Request models: lenient for pass-through, strict for the ``dynasor`` object."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dynasor.server.protocol import ChatCompletionRequest, CompletionRequest, DynasorOptions, validation_message


def test_unknown_top_level_fields_are_kept():
    req = ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}], "top_k": 5}
    )
    assert req.model_extra == {"tools": [{"type": "function"}], "top_k": 5}
    assert req.dynasor is None


def test_dynasor_extras_are_knobs_and_certaindex_is_strict():
    opts = DynasorOptions.model_validate({"algorithm": "sc", "samples_per_round": 4, "measure": "majority"})
    assert opts.knobs() == {"samples_per_round": 4, "measure": "majority"}
    with pytest.raises(ValidationError) as info:
        DynasorOptions.model_validate({"certaindex": {"treshold": 0.5}})
    message, param = validation_message(info.value.errors())
    assert param == "certaindex.treshold" and "treshold" in message


@pytest.mark.parametrize(
    "bad",
    [
        {"max_samples": 0},
        {"max_samples": "4"},
        {"effort": "extreme"},
        {"certaindex": {"threshold": "high"}},
        {"certaindex": {"abstentions": "sometimes"}},
        {"deadline": 0},
        {"progress": 1},
    ],
)
def test_out_of_range_dynasor_values_are_rejected(bad):
    with pytest.raises(ValidationError):
        DynasorOptions.model_validate(bad)


def test_token_cap_prefers_max_completion_tokens():
    msgs = [{"role": "user", "content": "x"}]
    assert ChatCompletionRequest(messages=msgs, max_tokens=5).token_cap() == 5
    assert ChatCompletionRequest(messages=msgs, max_tokens=5, max_completion_tokens=7).token_cap() == 7
    assert CompletionRequest(prompt="x", max_tokens=3).token_cap() == 3


def test_validation_message_for_bad_json_and_top_level():
    assert validation_message([{"type": "json_invalid", "loc": ("body", 0), "msg": "x"}]) == (
        "Request body is not valid JSON",
        None,
    )
    assert validation_message([{"type": "missing", "loc": ("body", "messages"), "msg": "Field required"}]) == (
        "messages: Field required",
        "messages",
    )
