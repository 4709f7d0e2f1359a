"""The memory store: results and coordination state within one process."""

from __future__ import annotations

import threading
import time
from typing import Any

from boostkernel.store import Store, StoreCapabilities


class MemoryStore(Store):
    name = "memory"
    capabilities = StoreCapabilities(cross_process=False, cross_host=False, durable=False, push_wait=True)

    _data: dict[str, tuple[Any, float | None]] = {}
    _cond = threading.Condition()

    def _alive(self, key: str) -> tuple[bool, Any]:
        entry = self._data.get(key)
        if entry is None:
            return False, None
        value, expires = entry
        if expires is not None and expires <= time.time():
            self._data.pop(key, None)
            return False, None
        return True, value

    def put_result(self, task_id: str, record: dict[str, Any], ttl: float) -> None:
        with self._cond:
            self._data[f"result:{task_id}"] = (record, time.time() + ttl)
            self._cond.notify_all()

    def get_result(self, task_id: str, timeout: float = 0.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        key = f"result:{task_id}"
        with self._cond:
            while True:
                ok, value = self._alive(key)
                if ok and value.get("status") != "running":
                    return value  # type: ignore[no-any-return]
                left = deadline - time.monotonic()
                if left <= 0:
                    return value if ok else None
                self._cond.wait(left)

    def set(self, key: str, value: Any, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        with self._cond:
            if only_if_absent and self._alive(key)[0]:
                return False
            self._data[key] = (value, time.time() + ttl if ttl else None)
            return True

    def get(self, key: str) -> Any:
        with self._cond:
            return self._alive(key)[1]

    def delete(self, key: str) -> bool:
        with self._cond:
            return self._data.pop(key, None) is not None

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self._cond:
            ok, value = self._alive(key)
            if ok:
                expires = self._data[key][1]
                new = int(value) + amount
            else:
                expires = time.time() + ttl if ttl else None
                new = amount
            self._data[key] = (new, expires)
            return new

    def keys(self, prefix: str) -> list[str]:
        with self._cond:
            return sorted(k for k in list(self._data) if k.startswith(prefix) and self._alive(k)[0])
