from __future__ import annotations

import eval.bench


def test_all_names_exist() -> None:
    missing = [name for name in eval.bench.__all__ if not hasattr(eval.bench, name)]
    assert missing == []
    assert len(set(eval.bench.__all__)) == len(eval.bench.__all__)
