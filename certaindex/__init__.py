"""Certaindex: how certain a reasoning program already is of its answer.

Pure library (numpy/scipy + math-verify); it knows nothing of servers or engines.
"""

from certaindex._answers import canonical_key, extract_boxed
from certaindex._certainty import Certainty
from certaindex._entropy import majority_fraction, normalized_entropy
from certaindex._tokens import approx_tokens

__all__ = ["Certainty", "approx_tokens", "canonical_key", "extract_boxed", "majority_fraction", "normalized_entropy"]
