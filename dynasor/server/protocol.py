"""Request and response models of the proxy (pydantic).

Requests keep every field they do not declare (``extra="allow"``): a plain request is
forwarded byte for byte, so these models only check what the proxy itself acts on
(``stream``, ``n``, ``max_tokens`` and the ``dynasor`` object) and describe the API in
the OpenAPI schema. The ``dynasor`` object is strict: a key that is neither one of its
fields nor a knob of the chosen algorithm is rejected.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CertaindexOverride",
    "ChatCompletionRequest",
    "CompletionRequest",
    "DynasorOptions",
    "Effort",
    "ErrorDetail",
    "ErrorResponse",
    "error_body",
    "validation_message",
]

Effort = Literal["mild", "low", "mid", "high", "crazy"]


class OpenAIBaseModel(BaseModel):
    """Lenient base: unknown fields are kept and forwarded."""

    model_config = ConfigDict(extra="allow")


class CertaindexOverride(BaseModel):
    """Per-request stop rule: overrides the configured rule of the query's algorithm."""

    model_config = ConfigDict(extra="forbid")

    measure: str | None = Field(None, description="Measure the rule reads (e.g. entropy, majority).")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="Stop when certaindex >= threshold.")
    min_samples: int | None = Field(None, ge=1, description="Samples drawn before the threshold applies.")
    round_size: int | None = Field(None, ge=1, description="Samples between two checks.")
    abstentions: Literal["ignore", "class", "distinct"] | None = None
    hopeless_threshold: float | None = Field(None, ge=0.0, le=1.0)
    hopeless_after: int | None = Field(None, ge=1)
    hopeless_action: Literal["stop", "demote"] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client set, as changes to a :class:`certaindex.StopRule`."""
        return self.model_dump(exclude_unset=True)


class DynasorOptions(BaseModel):
    """The ``dynasor`` object of a reasoning request.

    Extra keys are the algorithm's knobs (``samples_per_round``, ``temperature``, ...); the
    algorithm rejects the ones it does not have.
    """

    model_config = ConfigDict(extra="allow")

    algorithm: str = Field("sc", description="Reasoning program: sc, cot, mcts, rebase, bon, ...")
    max_samples: int | None = Field(None, ge=1, description="Cap on generation calls of the query.")
    max_steps: int | None = Field(None, ge=1, description="Cap on certaindex reports (program steps).")
    max_total_tokens: int | None = Field(None, ge=1, description="Cap on completion tokens over all calls.")
    deadline: float | None = Field(None, gt=0.0, description="Seconds by which the query must finish.")
    certaindex: CertaindexOverride | None = None
    effort: Effort | None = Field(None, description="Preset of how eagerly to stop (mild: least, crazy: most).")
    progress: bool = Field(True, description="Stream progress chunks (the `dynasor` chunk extension).")

    def knobs(self) -> dict[str, Any]:
        """The algorithm knobs: every key that is not a field of this model."""
        return dict(self.model_extra or {})


_MESSAGES = Field(..., min_length=1, description="Chat messages, OpenAI format.")


class _Common(OpenAIBaseModel):
    model: str | None = None
    stream: bool = False
    n: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    stream_options: dict[str, Any] | None = None
    dynasor: DynasorOptions | None = Field(
        None, description="Present: run a reasoning program (Dynasor). Absent: plain pass-through."
    )


class ChatCompletionRequest(_Common):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = _MESSAGES
    max_completion_tokens: int | None = Field(None, ge=1)

    def token_cap(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Common):
    """``POST /v1/completions``."""

    prompt: str | list[str] = Field(..., description="Prompt text (a list: one prompt per choice).")

    def token_cap(self) -> int | None:
        return self.max_tokens


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape."""

    error: ErrorDetail


def error_body(message: str, status: int, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    """An OpenAI-shaped error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def validation_message(errors: list[Any]) -> tuple[str, str | None]:
    """A message and the offending parameter from pydantic's (or FastAPI's) validation errors."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "Request body is not valid JSON", None
    message = str(first.get("msg", "invalid request"))
    param = ".".join(loc) or None
    return (f"{param}: {message}" if param else message), param
