"""moto's server with its SQS receive made atomic; started by ``sqs.sh`` (a helper, not a service script).

moto (5.2.5, the newest release) serves each request on its own thread, and its ``receive_message`` checks
that a message is visible and marks it received in two separate steps, with no lock: two receives at once
can both take the same message. The second copy arrives with ``ApproximateReceiveCount`` 2 while the first
consumer still holds it, so the message runs twice although its first delete was answered ``Successful``.
Amazon SQS does not do that; the contract suite's competing-consumer tests caught it as duplicates.
``scripts/sqs_duplicates_probe.py`` (1,500 messages, 8 consumers, 3 December 2026): 245 duplicates against
moto as released, 0 with this patch (twice, at load 4.9 and 10.6), and deletes answered in 0.06 s
(median) instead of 0.87 s.

The patch: each queue gets a receive lock held while ``receive_message`` scans and marks, released while
a long poll waits (moto waits in ``Queue.wait_for_messages``), so long polls do not queue behind each
other. Deletes are not behind it; they take the lock moto already holds when it appends a message,
because ``Queue.delete_message`` rebuilds the message list, and a send in between would be lost. If a
moto upgrade renames what is patched, the server refuses to start rather than run unpatched.

    python moto_sqs_server.py -H 127.0.0.1 -p 9324      # moto_server's arguments
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any


def patch() -> None:
    from moto.sqs import models

    queue_cls, backend_cls = models.Queue, models.SQSBackend
    for owner, name in ((queue_cls, "delete_message"), (queue_cls, "wait_for_messages"),
                        (backend_cls, "receive_message")):
        if not callable(getattr(owner, name, None)):
            raise SystemExit(f"moto_sqs_server.py: this moto has no {owner.__name__}.{name}: check the patch "
                             f"against its SQS model before starting it")
    delete, wait, receive = queue_cls.delete_message, queue_cls.wait_for_messages, backend_cls.receive_message
    guard = threading.Lock()

    def receive_lock(queue: Any) -> threading.Lock:  # one per queue, made once
        lock = queue.__dict__.get("_bk_receive_lock")
        if lock is None:
            with guard:
                lock = queue.__dict__.setdefault("_bk_receive_lock", threading.Lock())
        return lock

    @functools.wraps(delete)
    def locked_delete(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            delete(self, receipt_handle)

    @functools.wraps(wait)
    def unlocked_wait(self: Any, timeout: int) -> None:
        lock = receive_lock(self)
        lock.release()
        try:
            wait(self, timeout)
        finally:
            lock.acquire()

    @functools.wraps(receive)
    def locked_receive(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with receive_lock(self.get_queue(queue_name)):
            return receive(self, queue_name, *args, **kwargs)

    queue_cls.delete_message = locked_delete
    queue_cls.wait_for_messages = unlocked_wait
    backend_cls.receive_message = locked_receive


if __name__ == "__main__":
    patch()
    from moto.server import main

    main(sys.argv[1:])
