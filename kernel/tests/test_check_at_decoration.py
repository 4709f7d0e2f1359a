"""``Broker.check_at_decoration``: a broker whose ``__init__`` validates without connecting is built once
by ``@boost``, so a bad option fails at decoration time with the broker's own message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from boostkernel_memory.broker import MemoryBroker

from boostkernel import boost, hookimpl
from boostkernel.errors import ConfigError
from boostkernel.plugins import Registry, get_plugins

built: list[str] = []


class CheckedBroker(MemoryBroker):
    name = "checked-memory"
    check_at_decoration = True

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        built.append(queue)
        if self.options.get("window", 1) < 1:
            raise ConfigError(f"broker_options window={self.options['window']!r}: must be at least 1")


class UncheckedBroker(CheckedBroker):
    name = "unchecked-memory"
    check_at_decoration = False


class _Plugin:
    @staticmethod
    @hookimpl
    def register_brokers(registry: Registry) -> None:
        for cls in (CheckedBroker, UncheckedBroker):
            registry.add_broker(cls.name, "boostkernel_memory.broker:MemoryBroker", summary="test broker")
            registry.items["broker"][cls.name]._loaded = cls


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    ps = get_plugins()
    ps.register_plugin(_Plugin, "test-check-at-decoration")
    built.clear()
    yield
    ps.unregister_plugin("test-check-at-decoration")


def test_a_bad_option_fails_at_decoration() -> None:
    with pytest.raises(ConfigError, match="window=0: must be at least 1"):
        @boost("checked_bad", broker="checked-memory", broker_options={"window": 0})
        def f() -> None: ...


def test_a_good_booster_is_built_once_at_decoration() -> None:
    @boost("checked_good", broker="checked-memory", broker_options={"window": 2})
    def f() -> None: ...

    assert built == ["checked_good"]


def test_without_the_flag_nothing_is_built_at_decoration() -> None:
    @boost("unchecked_bad", broker="unchecked-memory", broker_options={"window": 0})
    def f() -> None: ...

    assert built == []
