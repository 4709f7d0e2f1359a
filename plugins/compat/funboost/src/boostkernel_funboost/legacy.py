"""The older API of the reference system: ``get_consumer(queue, consuming_function=f, ...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from boostkernel import ConfigError

from .booster import Booster, boost
from .params import BoosterParams


def get_consumer(queue_name: str | BoosterParams | None = None, *, consuming_function: Callable[..., Any] | None = None,
                 **fields: Any) -> Booster:
    """A booster for ``consuming_function`` on ``queue_name`` (older API; ``broker_kind`` may be an integer
    code). Start it with ``.start_consuming_message()``; publish with ``.publisher_of_same_queue.publish(...)``."""
    if isinstance(queue_name, BoosterParams):
        fn = consuming_function or queue_name.consuming_function
        params: BoosterParams | str = queue_name
    else:
        queue = queue_name if queue_name is not None else fields.pop("queue_name", None)
        if not isinstance(queue, str):
            raise ConfigError("get_consumer() needs the queue name: get_consumer('queue', consuming_function=f)")
        fn = consuming_function
        params = queue
    if fn is None:
        raise ConfigError("get_consumer() needs consuming_function=the function to run")
    return boost(params, **fields)(fn)
