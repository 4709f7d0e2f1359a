"""Pure helpers of the MongoDB broker (no pymongo import): URL checks and names."""

from __future__ import annotations

import re
from typing import Any

from boostkernel.errors import ConfigError
from boostkernel.logs import mask_url

DEFAULT_URL = "mongodb://127.0.0.1:27017/boostkernel"
DEFAULT_DATABASE = "boostkernel"
_DB_NAME = re.compile(r'^[^/\\. "$*<>:|?]{1,63}$')


def validate_url(url: str) -> str:
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"MongoDB URL {mask_url(url)!r} must start with mongodb:// or mongodb+srv://")
    rest = url.split("://", 1)[1]
    if not rest or rest.startswith(("/", "?")):
        raise ConfigError(f"MongoDB URL {mask_url(url)!r} names no host")
    return url


def database_name(url: str, option: Any = None) -> str:
    """The ``database`` option, else the URL's path (``mongodb://host/DB?…``), else ``boostkernel``."""
    name = str(option) if option else ""
    if not name:
        rest = url.split("://", 1)[1]
        path = rest.split("/", 1)[1] if "/" in rest else ""
        name = path.split("?", 1)[0] or DEFAULT_DATABASE
    if not _DB_NAME.match(name):
        raise ConfigError(f"MongoDB database name {name!r} is not valid (1-63 characters, none of /\\. \"$*<>:|?)")
    return name
