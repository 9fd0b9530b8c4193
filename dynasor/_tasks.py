"""Structured concurrency, the one way Dynasor does it: ``asyncio.TaskGroup`` and cancel scopes.

Every task a query starts lives in a task group nested in that query's scope, so cancelling
the scope (a stop, a deadline, a client that went away) cancels them all and nothing outlives
the query. What is left here is the small part asyncio does not do for us.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

__all__ = ["first_error"]


@contextlib.asynccontextmanager
async def first_error() -> AsyncIterator[None]:
    """Around a task group: re-raise the first child's error itself, not the group that holds it.

    One failed sub-request fails its step (and one failed handler its request); callers catch
    the error's own type, as they would without the group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None
