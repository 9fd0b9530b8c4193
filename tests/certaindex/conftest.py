"""Hypothesis settings for the certaindex tests: no per-example deadline.

Examples that call scipy or start the math-verify worker have slow first calls, and a
loaded 2-core machine makes wall-clock deadlines flaky without catching anything.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("certaindex", deadline=None)
settings.load_profile("certaindex")
