"""The stop rule value object and the Certaindex config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from certaindex import (
    ABSTENTIONS,
    AGREEMENT_MEASURES,
    ANSWER_KINDS,
    CertaindexConfig,
    Certification,
    RuleError,
    StopRule,
)

unit = st.floats(0.0, 1.0, allow_nan=False)
rules = st.builds(
    StopRule,
    measure=st.sampled_from(AGREEMENT_MEASURES),
    threshold=st.one_of(st.none(), unit),
    min_samples=st.integers(1, 64),
    round_size=st.integers(1, 16),
    answer_kind=st.sampled_from(ANSWER_KINDS),
    abstentions=st.sampled_from(ABSTENTIONS),
    hopeless_threshold=st.none(),
    hopeless_after=st.integers(1, 64),
    certification=st.one_of(
        st.none(),
        st.builds(
            Certification,
            bound=st.one_of(st.none(), st.floats(0.0, 0.5)),
            confidence=st.one_of(st.none(), st.floats(0.5, 0.99)),
            method=st.sampled_from(["ltt-paired", "point-estimate"]),
            data=st.text(max_size=20),
            queries=st.integers(0, 10_000),
        ),
    ),
)


@given(rules)
def test_config_entry_round_trips(rule: StopRule) -> None:
    back = StopRule.from_mapping(yaml.safe_load(yaml.safe_dump(rule.to_dict())), algorithm="sc")
    assert back.to_dict() == rule.to_dict()
    again = StopRule.from_mapping(json.loads(json.dumps(rule.to_dict())))
    assert again.to_dict() == rule.to_dict()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"measure": "entropi", "threshold": 0.5}, "unknown measure 'entropi'"),
        ({"measure": "entropy", "threshold": 1.5}, r"threshold must lie in \[0, 1\]"),
        ({"measure": "entropy", "threshold": -0.1}, r"threshold must lie in \[0, 1\]"),
        ({"measure": "entropy", "min_samples": 0}, "min_samples must be an integer >= 1"),
        ({"measure": "entropy", "round_size": 2.5}, "round_size must be an integer >= 1"),
        ({"measure": "entropy", "abstentions": "skip"}, "abstentions must be one of ignore, class, distinct"),
        ({"measure": "entropy", "answer_kind": "gsm"}, "answer_kind must be one of math, choice, code"),
        ({"measure": "entropy", "min_step": 2}, "unknown field.*min_step"),
        ({"measure": "entropy", "threshold": 0.5, "hopeless_threshold": 0.7}, "a check could be both"),
        ({"measure": "entropy", "certification": {"bound": 2.0, "method": "x", "data": "d"}}, "bound is a fraction"),
        ({"measure": "entropy", "certification": {"method": "x", "data": "d", "proof": 1}}, "unknown field"),
        ("entropy", "expected a mapping"),
    ],
)
def test_bad_entries_say_what_is_wrong(entry: object, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        StopRule.from_mapping(entry, algorithm="sc")  # type: ignore[arg-type]


def test_a_measure_the_algorithm_cannot_produce() -> None:
    with pytest.raises(RuleError, match="sc cannot produce measure 'reward_max'"):
        StopRule.from_mapping({"measure": "reward_max", "threshold": 0.9}, algorithm="sc")
    with pytest.raises(RuleError, match="cot cannot produce measure 'entropy'"):
        StopRule.from_mapping({"measure": "entropy"}, algorithm="cot")
    assert StopRule.from_mapping({"measure": "reward_max", "threshold": 0.9}, algorithm="bon").measure == "reward_max"
    # A custom program may report a measure of its own.
    assert StopRule.from_mapping({"measure": "my_score"}, algorithm="my_program").measure == "my_score"


def test_config_file_yaml_and_json(tmp_path: Path) -> None:
    cert = Certification(0.005, 0.95, "ltt-paired", "a (10), b (20)", 30, 0.61, 0.001)
    config = CertaindexConfig(
        {"sc": StopRule("beta", 0.9, min_samples=4, round_size=2, certification=cert)}, StopRule("beta", None)
    )
    for name in ("c.yaml", "c.json"):
        path = tmp_path / name
        config.save(path, header="made for a test")
        loaded = CertaindexConfig.load(path)
        assert loaded.to_dict() == config.to_dict()
        assert loaded.rule_for("sc").certification == cert
        assert loaded.rule_for("mcts") == StopRule("beta", None)
    assert (tmp_path / "c.yaml").read_text().startswith("# made for a test\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sc: [1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "a mapping of algorithm name to rule"),
        ("version: 2\n", "unsupported config version 2"),
        ("sc:\n  measure: reward_max\n", "sc cannot produce measure"),
        ("default:\n  measure: nope\n", "unknown measure 'nope'"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RuleError, match=message) as info:
        CertaindexConfig.load(path)
    assert str(path) in str(info.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        CertaindexConfig.load(tmp_path / "none.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RuleError, match="not UTF-8"):
        CertaindexConfig.load(tmp_path / "bin.yaml")


def test_bundled_config_loads_and_says_how_it_was_made() -> None:
    config = CertaindexConfig.bundled()
    rule = config.rule_for("sc")
    assert rule.measure in AGREEMENT_MEASURES
    if rule.threshold is not None:
        cert = rule.certification
        assert cert is not None and cert.method.startswith(("ltt", "ordering-betting", "worst-case"))
        assert cert.queries > 0 and cert.bound is not None
        if cert.method == "worst-case":  # the bound is the rule's own cap, so it holds on any data
            assert rule.max_risk is not None and rule.max_risk <= cert.bound
            assert "by construction" in cert.statement


def test_statement_never_calls_a_point_estimate_a_bound() -> None:
    point = Certification(None, None, "point-estimate", "set a", 100, 0.7, -0.01)
    assert point.statement.startswith("no bound")
    assert "<=" not in point.statement
    bound = Certification(0.005, 0.95, "ltt-paired", "set a", 900)
    assert "<= 0.5 pt with probability >= 0.95" in bound.statement


def test_describe_and_value_key() -> None:
    rule = StopRule("entropy", 0.9, min_samples=3, abstentions="class", hopeless_threshold=0.2, hopeless_after=8)
    assert rule.value_key == "entropy/class"
    assert rule.describe() == (
        "entropy >= 0.9 from 3 samples, rounds of 1, abstentions class, hopeless < 0.2 from 8 samples"
    )
    assert StopRule("esc", 1.0, round_size=5).value_key == "esc5/class"
    assert StopRule().describe() == "no early stop (full budget)"
