"""The brokerless listening brokers (zeromq, tcp, udp, http, grpc, websocket) beside raw loops, one run.

    uv run python benchmarks/bench_edge.py            # -n 20000 --batch 100 --json benchmarks/results/edge.json

For each transport, three rows, all at-most-once and all on 127.0.0.1:

* **raw**: the same transport without boostkernel, the same bytes (an encoded no-op envelope, ~150 B),
  the same batching: a raw socket / raw client loop sending, a raw server counting what arrived.
* **broker**: the plugin's ``Broker`` API: a producer instance ``publish_many`` (batches of ``--batch``),
  a listening instance ``fetch(1000)`` until all arrived (framing, the listener, the buffer).
* **booster**: ``@boost`` on the broker, ``consume()`` with 8 threads running a no-op, ``push_many``
  from this process: the whole kernel path, from first publish to last task finished.

*consume/s* is messages / seconds from the first send to the last message received (raw, broker) or run
(booster). UDP may lose datagrams: the rows say how many arrived. Plus ``tcp + secret``: the broker row
with HMAC-SHA256 signing and checking of every message.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _common import write_json

from boostkernel import boost
from boostkernel.broker import Outgoing
from boostkernel.message import Envelope

SCHEMES = {"zeromq": "zmq", "tcp": "tcp", "udp": "udp", "http": "http", "grpc": "grpc", "websocket": "ws"}


def _messages(n: int) -> list[Outgoing]:
    out = []
    for i in range(n):
        env = Envelope("bench_edge", [i], {})
        out.append(Outgoing(env.id, env.encode()))
    return out


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()
        self.last = 0.0

    def add(self, k: int) -> None:
        with self.lock:
            self.n += k
            self.last = time.perf_counter()


def _wait(counter: Counter, n: int, idle: float = 5.0) -> None:
    """Until n arrived, or nothing arrived for ``idle`` seconds (UDP loss)."""
    seen, since = -1, time.monotonic()
    while counter.n < n:
        if counter.n != seen:
            seen, since = counter.n, time.monotonic()
        elif time.monotonic() - since > idle:
            return
        time.sleep(0.001)


# --- raw loops ------------------------------------------------------------------------------------
def raw_tcp(frames: list[bytes], batch: int) -> tuple[float, int]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    c = Counter()

    def serve() -> None:
        conn, _ = srv.accept()
        buf = bytearray()
        while c.n < len(frames):
            chunk = conn.recv(256 * 1024)
            if not chunk:
                break
            buf += chunk
            pos, k = 0, 0
            while len(buf) - pos >= 4:
                m = int.from_bytes(buf[pos:pos + 4], "big")
                if len(buf) - pos - 4 < m:
                    break
                bytes(buf[pos + 4:pos + 4 + m])
                pos += 4 + m
                k += 1
            del buf[:pos]
            c.add(k)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    for b in _batches(frames, batch):
        s.sendall(b"".join(len(f).to_bytes(4, "big") + f for f in b))
    _wait(c, len(frames))
    s.close()
    srv.close()
    return c.last - t0, c.n


def raw_udp(frames: list[bytes], batch: int) -> tuple[float, int]:
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    r.bind(("127.0.0.1", 0))
    r.settimeout(0.2)
    c = Counter()

    def serve() -> None:
        while c.n < len(frames):
            try:
                r.recvfrom(65536)
            except TimeoutError:
                if time.perf_counter() - c.last > 5 and c.n:
                    return
                continue
            except OSError:  # closed: the run is over (datagrams were lost)
                return
            c.add(1)

    threading.Thread(target=serve, daemon=True).start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(r.getsockname())
    t0 = time.perf_counter()
    for f in frames:
        s.send(f)
    _wait(c, len(frames))
    s.close()
    r.close()
    return c.last - t0, c.n


def raw_zeromq(frames: list[bytes], batch: int) -> tuple[float, int]:
    import zmq

    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.bind("tcp://127.0.0.1:*")
    ep = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    c = Counter()

    def serve() -> None:
        while c.n < len(frames):
            if pull.poll(200):
                k = 0
                try:
                    while k < 1000:
                        pull.recv(zmq.NOBLOCK)
                        k += 1
                except zmq.Again:
                    pass
                c.add(k)
        pull.close(0)

    threading.Thread(target=serve, daemon=True).start()
    push = ctx.socket(zmq.PUSH)
    push.connect(ep)
    t0 = time.perf_counter()
    for f in frames:
        push.send(f)
    _wait(c, len(frames))
    push.close(0)
    return c.last - t0, c.n


def raw_http(frames: list[bytes], batch: int) -> tuple[float, int]:
    c = Counter()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            pos, k = 0, 0
            while pos < len(body):
                m = int.from_bytes(body[pos:pos + 4], "big")
                bytes(body[pos + 4:pos + 4 + m])
                pos += 4 + m
                k += 1
            c.add(k)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1])
    t0 = time.perf_counter()
    for b in _batches(frames, batch):
        conn.request("POST", "/", b"".join(len(f).to_bytes(4, "big") + f for f in b))
        conn.getresponse().read()
    _wait(c, len(frames))
    conn.close()
    srv.shutdown()
    srv.server_close()
    return c.last - t0, c.n


def raw_grpc(frames: list[bytes], batch: int) -> tuple[float, int]:
    import grpc

    c = Counter()

    def publish(requests: Any, context: Any) -> bytes:
        for _ in requests:
            c.add(1)
        return b""

    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "raw.Edge", {"Publish": grpc.stream_unary_rpc_method_handler(publish)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = ch.stream_unary("/raw.Edge/Publish")
    t0 = time.perf_counter()
    for b in _batches(frames, batch):
        stub(iter(b), wait_for_ready=True)
    _wait(c, len(frames))
    ch.close()
    server.stop(0)
    return c.last - t0, c.n


def raw_websocket(frames: list[bytes], batch: int) -> tuple[float, int]:
    from websockets.asyncio.server import serve
    from websockets.sync.client import connect

    c = Counter()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def handler(ws: Any) -> None:
        async for _ in ws:
            c.add(1)

    async def start() -> Any:
        return await serve(handler, "127.0.0.1", 0, compression=None)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result()
    port = next(iter(server.sockets)).getsockname()[1]
    ws = connect(f"ws://127.0.0.1:{port}/", compression=None).__enter__()
    t0 = time.perf_counter()
    for f in frames:
        ws.send(f)
    _wait(c, len(frames))
    ws.close()

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    return c.last - t0, c.n


RAW: dict[str, Callable[[list[bytes], int], tuple[float, int]]] = {
    "zeromq": raw_zeromq, "tcp": raw_tcp, "udp": raw_udp, "http": raw_http, "grpc": raw_grpc,
    "websocket": raw_websocket}


# --- the plugin -----------------------------------------------------------------------------------
def broker_row(name: str, msgs: list[Outgoing], batch: int, **options: Any) -> tuple[float, int]:
    from boostkernel.plugins import get_plugins

    cls = get_plugins().get("broker", name).load()
    q = f"bench_{name}_{uuid.uuid4().hex[:6]}"
    lst = cls(q, f"{SCHEMES[name]}://127.0.0.1:0", None, **options)
    lst.listen()
    prod = cls(q, lst.url, None, **options)
    got = 0
    t0 = time.perf_counter()

    def produce() -> None:
        for b in _batches(msgs, batch):
            prod.publish_many(b)

    t = threading.Thread(target=produce)
    t.start()
    last = t0
    idle_since = time.monotonic()
    while got < len(msgs):
        ds = lst.fetch(1000, 0.2)
        if ds:
            got += len(ds)
            last = time.perf_counter()
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 5 and not t.is_alive():
            break
    t.join()
    prod.close()
    lst.close()
    return last - t0, got


def booster_row(name: str, n: int, batch: int) -> tuple[float, int]:
    probe_cls = __import__("boostkernel.plugins", fromlist=["get_plugins"]).get_plugins().get("broker", name).load()
    probe = probe_cls("probe", f"{SCHEMES[name]}://127.0.0.1:0")
    probe.listen()
    url = probe.url
    probe.close()
    c = Counter()
    done = threading.Event()

    @boost(f"bench_b_{name}_{uuid.uuid4().hex[:6]}", broker=name, broker_url=url, workers=8, validate_args=False)
    def noop(x: int) -> None:
        c.add(1)
        if c.n >= n:
            done.set()

    noop.consume()
    noop.broker.wait_listening(10)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        noop.push_many([(j,) for j in range(i, min(n, i + batch))])
    _wait(c, n)
    noop.stop()
    return c.last - t0, c.n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--only", default="", help="comma-separated transports")
    ap.add_argument("--json", default="benchmarks/results/edge.json")
    a = ap.parse_args()
    msgs = _messages(a.n)
    frames = [b"\x01bench_edge\n" + m.id.encode() + b"\n\n" + m.body for m in msgs]  # the plugins' frame, unsigned
    names = [x for x in (a.only.split(",") if a.only else SCHEMES)]
    rows: list[dict[str, Any]] = []
    print(f"{a.n} messages of ~{len(frames[0])} bytes, batches of {a.batch}; load average {os.getloadavg()[0]:.1f}",
          file=sys.stderr)
    print(f"{'transport':<12}{'row':<16}{'consume/s':>12}{'arrived':>10}")
    for name in names:
        for row, fn in (("raw", lambda: RAW[name](frames, a.batch)),
                        ("broker", lambda: broker_row(name, msgs, a.batch)),
                        ("booster", lambda: booster_row(name, a.n, a.batch))):
            secs, got = fn()
            rate = got / secs if secs > 0 else 0.0
            rows.append({"transport": name, "row": row, "consume_per_s": round(rate), "arrived": got, "n": a.n})
            print(f"{name:<12}{row:<16}{rate:>12,.0f}{got:>10}", flush=True)
        if name == "tcp":
            secs, got = broker_row(name, msgs, a.batch, secret="bench-secret")
            rows.append({"transport": name, "row": "broker + secret", "consume_per_s": round(got / secs),
                         "arrived": got, "n": a.n})
            print(f"{name:<12}{'broker + secret':<16}{got / secs:>12,.0f}{got:>10}", flush=True)
    write_json(a.json, {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "n": a.n, "batch": a.batch,
                        "loadavg": os.getloadavg()[0], "rows": rows}, indent=1, say=False)


if __name__ == "__main__":
    main()
