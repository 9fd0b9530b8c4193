"""The ``openai`` backend: any OpenAI-compatible server over HTTP, vLLM first.

One client (:class:`OpenAIBackend`: pooled keep-alive HTTP, retries, abort by closing the
stream) over three small parts: request shaping, stream reading and error mapping.
"""

from dynasor.engine.openai._client import OpenAIBackend
from dynasor.engine.openai._errors import RetryPolicy
from dynasor.engine.openai._request import PriorityConvention, build_body, engine_priority
from dynasor.engine.openai._stream import SSEDecoder

__all__ = ["OpenAIBackend", "PriorityConvention", "RetryPolicy", "SSEDecoder", "build_body", "engine_priority"]
