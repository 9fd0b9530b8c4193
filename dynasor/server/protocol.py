"""Request and response models of the proxy (pydantic): one validation for every path.

Requests keep every field they do not declare (``extra="allow"``): a plain request is
forwarded byte for byte, so these models only check what the proxy itself acts on
(:class:`RequestFields`: ``stream``, ``n``, ``max_tokens``, ``temperature``, ...; the
``dynasor`` object) and describe the API in the OpenAPI schema. The very same
:class:`RequestFields` checks a plain request on its way upstream, one answered by the
simulated engine and a reasoning one, so the three paths accept and refuse alike.

Every field is strict: ``"12"`` is not an integer, ``1e12`` is not one either, ``"yes"`` is
not a boolean, ``NaN`` is not a number. The ``dynasor`` object is strict too: a key that is
neither one of its fields nor a knob of the chosen algorithm is rejected, and each knob is
checked against the program's own type (:mod:`dynasor.server._knobs`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from certaindex import StopRule

__all__ = [
    "CertaindexOverride",
    "ChatCompletionRequest",
    "CompletionRequest",
    "DynasorOptions",
    "Effort",
    "ErrorDetail",
    "ErrorResponse",
    "RequestFields",
    "StreamOptions",
    "error_body",
    "validation_message",
]

Effort = Literal["mild", "low", "mid", "high", "crazy"]


class OpenAIBaseModel(BaseModel):
    """Lenient base: unknown fields are kept and forwarded."""

    model_config = ConfigDict(extra="allow")


class StreamOptions(OpenAIBaseModel):
    """``stream_options``: the proxy reads ``include_usage``; other keys pass through."""

    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class RequestFields(BaseModel):
    """The fields of a request the proxy acts on, checked alike on every path (others are ignored here)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    stream: bool = False
    n: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Chat: wins over max_tokens.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)
    stream_options: StreamOptions | None = None

    def token_cap(self) -> int | None:
        """The per-choice token limit asked for (``max_completion_tokens`` first)."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options is not None and self.stream_options.include_usage)


_RULE_HELP = {
    "measure": "Measure the rule reads (one its algorithm reports: certaindex.ALGORITHM_MEASURES).",
    "threshold": "Stop as confident when certaindex >= threshold (null: never early).",
    "min_samples": "Samples drawn before the threshold applies.",
    "round_size": "Samples between two checks.",
}


def _override_fields() -> dict[str, Any]:
    """The request's stop-rule fields: those of :class:`certaindex.StopRule`, with its own types."""
    hints = typing.get_type_hints(StopRule)
    return {
        f.name: (hints[f.name] | None, Field(None, description=_RULE_HELP.get(f.name, f"StopRule.{f.name}")))
        for f in dataclasses.fields(StopRule)
        if f.name not in _RULE_INTERNAL
    }


_RULE_INTERNAL = ("certification", "name")
"""Fields of a stop rule a request does not set (what it was certified on, its report label)."""


class _OverrideBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    def changes(self) -> dict[str, Any]:
        """The fields the client set, as changes to a :class:`certaindex.StopRule`."""
        return self.model_dump(exclude_unset=True)


if typing.TYPE_CHECKING:
    CertaindexOverride = _OverrideBase
else:
    CertaindexOverride = create_model(
        "CertaindexOverride",
        __base__=_OverrideBase,
        __doc__=(
            "Per-request stop rule: overrides the configured rule of the query's algorithm field by field. "
            "The fields, their types and their bounds are certaindex.StopRule's own (the rule checks its values)."
        ),
        **_override_fields(),
    )


class DynasorOptions(BaseModel):
    """The ``dynasor`` object of a reasoning request.

    Extra keys are the algorithm's knobs (``samples_per_round``, ``temperature``, ...), each
    checked against the program's own type and bounds; a key the program does not have is
    rejected naming the valid ones.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    algorithm: str = Field("sc", description="Reasoning program: sc, cot, mcts, rebase, bon, ...")
    max_samples: int | None = Field(None, ge=1, description="Cap on generation calls of the query.")
    max_steps: int | None = Field(None, ge=1, description="Cap on certaindex reports (program steps).")
    max_total_tokens: int | None = Field(None, ge=1, description="Cap on completion tokens over all calls.")
    deadline: float | None = Field(
        None,
        gt=0.0,
        allow_inf_nan=False,
        description="Seconds by which the query must finish (at most the server's request timeout).",
    )
    certaindex: CertaindexOverride | None = None
    effort: Effort | None = Field(None, description="Preset of how eagerly to stop (mild: least, crazy: most).")
    progress: bool = Field(True, description="Stream progress chunks (the `dynasor` chunk extension).")

    def knobs(self) -> dict[str, Any]:
        """The algorithm knobs: every key that is not a field of this model."""
        return dict(self.model_extra or {})


_MESSAGES = Field(..., min_length=1, description="Chat messages, OpenAI format.")


class _Common(RequestFields):
    model_config = ConfigDict(extra="allow", strict=True)

    dynasor: DynasorOptions | None = Field(
        None, description="Present: run a reasoning program (Dynasor). Absent: plain pass-through."
    )


class ChatCompletionRequest(_Common):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = _MESSAGES


class CompletionRequest(_Common):
    """``POST /v1/completions``."""

    prompt: str | list[str] = Field(..., description="Prompt text (a list: one prompt per choice).")


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
