"""The OpenAI-compatible proxy (``dynasor serve``): pass-through plus reasoning requests."""

from dynasor.server._settings import ServerSettings
from dynasor.server.app import create_app

__all__ = ["ServerSettings", "create_app"]
