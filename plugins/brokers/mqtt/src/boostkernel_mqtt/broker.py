"""MQTT 5 broker (paho-mqtt 2): QoS 1, persistent sessions, shared subscriptions, ack after the task.

What MQTT (measured on Mosquitto 2.0.11, docs/brokers/mqtt.md) does and what this plugin adds:

* Consumers of queue ``Q`` subscribe ``$share/<group>/<prefix>/Q`` at QoS 1 with a persistent session
  (``clean_start=False``, ``session_expiry``) and **manual acks**: the PUBACK is sent only when the task
  finished (``client.ack(mid)``), so a message stays unacknowledged on the server while it runs.
  ``Receive Maximum`` = prefetch bounds how many a consumer holds.
* The server gives each message of a share group to one member (round robin), **including members whose
  session is offline**; a member killed with unacked messages keeps them *in its session*: Mosquitto
  redelivers them (DUP) only when the same client id connects again, never to another member, and drops
  them when the session expires. This plugin therefore **adopts** dead sessions: every consumer has a
  retained Last Will on ``<prefix>/Q/_bk/dead/<client id>``; Mosquitto publishes it when the consumer's
  socket drops without a DISCONNECT (kill -9); a live consumer of the queue that sees it connects *as*
  that client id, unsubscribes it from the group, publishes every message the session held back to the
  queue (counting the delivery, and a crash for those the dead consumer's running journal lists), acks
  them, and ends the session. A message that killed ``max_deliveries`` consumers goes to the DLQ. The dead
  sessions seen in one round are adopted together and a task found in several of them (a consumer killed
  while it was itself adopting) goes back once, with the highest crash count.
* A message published while **no** session (live or offline) subscribes to the queue is dropped by the
  server (MQTT is publish/subscribe). ``publish`` therefore keeps an *anchor* session subscribed in the
  group (``<group>-anchor``, offline); consumers drain the anchor (the same adoption) when they start and
  every ``adopt_interval``. Messages the server hands to the anchor wait up to that interval.
* No native delay, priority, count or purge. ``nack(delay=d)`` keeps the message unacked (so a crash still
  redelivers it) and republishes it after ``d`` seconds, then acks the original.
* Publishing: ``publish_many`` builds its QoS 1 PUBLISH packets itself and its client writes them in chunks
  within the server's Receive Maximum, counting the PUBACKs (``_client_class``'s ``bk_publish``); it returns
  when every one is PUBACKed, or raises :class:`PublishNotAcknowledged` with the ids of those that were not.
* Dead letters: one **retained** message per dead letter on ``<prefix>/Q/dlq/<id>``, reason in the user
  property ``bk-reason``; listed by subscribing to ``<prefix>/Q/dlq/+``, removed by an empty retained
  publish. Mosquitto keeps retained messages across restarts when ``persistence`` is on.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Outgoing, consumer_window
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.journal import RunningJournal, host_journal_dir, read_journal, remove_journal
from boostkernel.logs import mask_url
from boostkernel.params import BoostParams

log = logging.getLogger("boostkernel.mqtt")


def _props(kind: str, **values: Any) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    p = Properties(getattr(PacketTypes, kind))  # type: ignore[no-untyped-call]
    for k, v in values.items():
        setattr(p, k, v)
    return p


MIN_RECEIVE_MAXIMUM = 100
"""Smallest default ``Receive Maximum`` (see :func:`default_receive_maximum`)."""


def default_receive_maximum(params: BoostParams | None) -> int:
    """The consumer's MQTT 5 ``Receive Maximum`` (unacked QoS 1 messages the server sends it at once) when
    ``broker_options`` does not set ``prefetch``: the booster's explicit ``prefetch`` if given, else running
    + prefetched tasks and at least :data:`MIN_RECEIVE_MAXIMUM`. The window must cover the running tasks, the
    prefetched ones and the PUBACKs on their way back, or the server waits for an ack before each message
    (``solo``'s prefetch of 4 consumed at about a third of a raw client with a window of 100); see
    :func:`boostkernel.broker.consumer_window`."""
    return consumer_window(params, MIN_RECEIVE_MAXIMUM, unbound=100)


_USER_PROPS: Any = None


def _user_props(pairs: list[tuple[str, str]]) -> Any:
    """PUBLISH properties holding only ``pairs`` as user properties, packed once here. paho's ``Properties``
    builds two dictionaries per instance, checks every attribute set against every property name and packs
    by scanning them all: that was half of ``publish_many``'s time. The subclass shares those tables (so it
    still prints and reads like one) and returns the bytes packed here."""
    global _USER_PROPS
    if _USER_PROPS is None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties, VariableByteIntegers, writeUTF

        template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]

        class UserProps(Properties):
            types, names, properties = template.types, template.names, template.properties

            def __init__(self, pairs: list[tuple[str, str]]) -> None:
                buf = b"".join(b"\x26" + writeUTF(k) + writeUTF(v)  # type: ignore[no-untyped-call]
                               for k, v in pairs)  # 0x26: User Property
                object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
                object.__setattr__(self, "UserProperty", pairs)
                packed = VariableByteIntegers.encode(len(buf)) + buf  # type: ignore[no-untyped-call]
                object.__setattr__(self, "_packed", packed)

            def pack(self) -> bytes:
                packed: bytes = self.__dict__["_packed"]
                return packed

        _USER_PROPS = UserProps
    return _USER_PROPS(pairs)


def _user(msg: Any) -> dict[str, str]:
    props = getattr(msg, "properties", None)
    pairs = getattr(props, "UserProperty", None) or []
    return {str(k): str(v) for k, v in pairs}


def _vbi(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property length)."""
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        b, n = n & 127, n >> 7
        if n:
            out.append(b | 128)
        else:
            out.append(b)
            return bytes(out)


def _utf(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _publish_parts(topic: bytes, payload: bytes, user: dict[str, str] | None, retain: bool) -> tuple[bytes, bytes]:
    """A QoS 1 MQTT 5 PUBLISH packet without its packet identifier: ``(before, after)`` the two bytes of the
    id, the bytes paho's ``Client.publish`` writes for the same message (tests compare them)."""
    props = b"".join(b"\x26" + _utf(k) + _utf(v) for k, v in user.items()) if user else b""  # 0x26: User Property
    after = _vbi(len(props)) + props + payload
    before = bytes((0x32 | retain,)) + _vbi(2 + len(topic) + 2 + len(after)) + len(topic).to_bytes(2, "big") + topic
    return before, after


def _task_parts(topic: bytes, messages: Sequence[Outgoing]) -> list[tuple[bytes, bytes]]:
    """``_publish_parts(topic, m.body, {"bk-id": m.id}, False)`` for each message, the fixed parts built once."""
    th = len(topic).to_bytes(2, "big") + topic
    key = b"\x26\x00\x05bk-id"  # User Property, "bk-id"
    n = len(th) + 2
    out = []
    for m in messages:
        i = m.id.encode()
        props = key + len(i).to_bytes(2, "big") + i
        after = _vbi(len(props)) + props + m.body
        out.append((b"\x32" + _vbi(n + len(after)) + th, after))
    return out


class _Batch:
    """QoS 1 publishes sent together: ``left`` counts those not PUBACKed yet, ``acked`` marks each one."""

    __slots__ = ("acked", "cancelled", "done", "failed", "left")

    def __init__(self, n: int) -> None:
        self.left = n
        self.acked = bytearray(n)
        self.failed: list[tuple[int, int]] = []  # (index, reason code >= 0x80)
        self.cancelled = False
        self.done = threading.Event()
        if not n:
            self.done.set()


_CLIENT: Any = None

READ_CHUNK = 65536
"""Bytes read from the socket at once by :func:`_client_class`'s client."""


def _client_class() -> Any:
    """paho's ``Client`` reading the socket in chunks, handing packets over once per chunk, decoding our
    QoS 1 PUBLISH packets itself and writing the PUBACKs queued between two wake-ups of its thread at once.

    paho reads each packet with three ``recv`` calls (command byte, length byte(s), rest) after one
    ``select``, and calls ``loop_read`` for one packet at a time: four system calls per message, each one
    releasing the GIL to the consumer's threads and waiting to get it back (``consume()`` drained a backlog
    at 37-54 % of a raw paho loop, issue #15). This subclass reads up to :data:`READ_CHUNK` bytes per
    ``recv`` into a buffer the three reads are served from, handles every complete packet of the chunk in
    one ``loop_read`` (a buffered byte would otherwise wait behind the next ``select``) and then calls
    ``on_batch`` once (the consumer wakes once per chunk, not per message). The packets and their order are
    paho's own; the buffer belongs to one socket (a reconnect starts empty, as paho's packet state does).
    It uses paho 2's private methods (``_sock_recv``, ``_handle_publish``, ``_packet_queue``, ``_out_packet``):
    tests/test_mqtt_publish_properties.py and tests/test_mqtt_acks.py check it against the installed paho."""
    global _CLIENT
    if _CLIENT is None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import MessageState, MQTTErrorCode
        from paho.mqtt.exception import MalformedPacket
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        PUBACK = 0x40
        PUBLISH_Q1 = 0x32  # PUBLISH, QoS 1: paho's _packet_write treats it as one (no on_publish, no info)
        template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]

        class ReceivedProps(Properties):
            """A received PUBLISH's properties holding only user properties, without paho's per-instance
            tables (two dictionaries built per message: a third of paho's thread in the profile)."""
            types, names, properties = template.types, template.names, template.properties

            def __init__(self, pairs: list[tuple[str, str]]) -> None:
                object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
                if pairs:
                    object.__setattr__(self, "UserProperty", pairs)

        class ReceivedMessage(mqtt.MQTTMessage):
            """A received QoS 1 message without paho's ``MQTTMessageInfo`` (a ``threading.Condition`` built per
            message, for waiting on an outgoing publish: nothing waits on a received one)."""
            __slots__ = ()

            def __init__(self, mid: int, topic: bytes, props: Any, payload: bytes, header: int) -> None:
                self.mid, self._topic, self.properties, self.payload = mid, topic, props, payload
                self.dup, self.qos, self.retain = bool(header & 0x08), 1, bool(header & 0x01)
                self.state, self.info, self.timestamp = MessageState.MQTT_MS_INVALID, None, time.monotonic()  # type: ignore[assignment]

        def user_properties(buf: bytes | bytearray, start: int, end: int) -> list[tuple[str, str]] | None:
            """The user properties (id 38) in ``buf[start:end]``, or None if another property is there."""
            pairs = []
            i = start
            while i < end:
                if buf[i] != 38:
                    return None
                n = (buf[i + 1] << 8) | buf[i + 2]
                k = bytes(buf[i + 3:i + 3 + n]).decode()
                i += 3 + n
                n = (buf[i] << 8) | buf[i + 1]
                pairs.append((k, bytes(buf[i + 2:i + 2 + n]).decode()))
                i += 2 + n
            if i != end:
                raise ValueError("property length")
            return pairs

        class BufferedClient(mqtt.Client):
            _bk_sock: Any = None
            _bk_buf: bytes = b""
            _bk_pos = 0
            on_batch: Any = None

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._bk_acks: deque[tuple[Any, int]] = deque()
                self._bk_woken = False  # a wake-up byte for the acks is on its way to paho's thread
                # bk_publish(): messages not sent yet, and those sent and not PUBACKed (by packet id)
                self._bk_plock = threading.Lock()
                self._bk_queue: deque[tuple[_Batch, int, bytes, bytes]] = deque()
                self._bk_flight: dict[int, tuple[_Batch, int, bytes, bytes]] = {}
                self._bk_window = 20  # the server's Receive Maximum (its CONNACK; 20 is Mosquitto's default)
                self._bk_mid = 0
                self._bk_live = False  # CONNACK received and the connection not lost since
                self._bk_refill = False  # a PUBACK of ours arrived in this read: room in the window
                super().__init__(*args, **kwargs)

            # --- QoS 1 publishes sent by us, not by paho (see bk_publish) ---------------------------------
            def bk_publish(self, parts: Sequence[tuple[bytes, bytes]]) -> _Batch:
                """Queue QoS 1 PUBLISH packets (``_publish_parts``: the bytes before and after the packet id)
                and send as many as the server's Receive Maximum allows, as one write; paho's thread sends
                the rest as PUBACKs come back (one write per read of the socket). The returned batch's
                ``done`` is set when every message was PUBACKed. A message in flight when the connection
                drops is sent again (a new packet id) after the next CONNACK: at least once, like QoS 1.

                paho's ``publish`` builds an ``MQTTMessage``, an ``MQTTMessageInfo`` and a packet per
                message, wakes its thread per message and, beyond its in-flight limit, scans every queued
                message on every PUBACK (``_update_inflight``). This client's other QoS 1 publishes must not
                go through paho's ``publish`` too: the two would share the server's window unknowingly."""
                batch = _Batch(len(parts))
                with self._bk_plock:
                    self._bk_queue.extend((batch, i, a, b) for i, (a, b) in enumerate(parts))
                    data = self._bk_fill()
                    if data:  # under the lock: a reconnect cannot clear paho's queue in between (see reconnect)
                        self._packet_queue(PUBLISH_Q1, data, 0, 1)
                return batch

            def _bk_fill(self) -> bytes:
                """Packets for the free part of the window, joined (``_bk_plock`` held)."""
                q, flight = self._bk_queue, self._bk_flight
                room = self._bk_window - len(flight)
                if not self._bk_live or room <= 0 or not q:
                    return b""
                parts: list[bytes] = []
                mid, out = self._bk_mid, self._out_messages
                while room > 0 and q:
                    p = q.popleft()
                    if p[0].cancelled:
                        continue
                    while True:  # a free packet id: the window (<= 65535) leaves one
                        mid = mid + 1 if mid < 65535 else 1
                        if mid not in flight and mid not in out:
                            break
                    flight[mid] = p
                    parts += (p[2], mid.to_bytes(2, "big"), p[3])
                    room -= 1
                self._bk_mid = mid
                return b"".join(parts)

            def bk_connected(self, receive_maximum: int) -> None:
                """A CONNACK (paho's thread, before any packet of it is written): the messages in flight on
                the previous connection go first (the server forgot them: a clean start), then the queue."""
                with self._bk_plock:
                    self._bk_window = max(1, min(65535, receive_maximum))
                    if self._bk_flight:
                        self._bk_queue.extendleft(reversed(list(self._bk_flight.values())))
                        self._bk_flight.clear()
                    self._bk_live = True
                    data = self._bk_fill()
                    if data:
                        self._bk_out(data)

            def bk_cancel(self, batch: _Batch) -> list[int]:
                """Stop sending ``batch``; the indexes of its messages not PUBACKed (those in flight keep
                their place in the window until answered or the connection ends)."""
                with self._bk_plock:
                    batch.cancelled = True
                    return [i for i, a in enumerate(batch.acked) if not a]

            def _bk_out(self, data: bytes) -> None:
                self._out_packet.append({"command": PUBLISH_Q1, "mid": 0, "qos": 1, "pos": 0,
                                         "to_process": len(data), "packet": data, "info": None})

            def _handle_pubackcomp(self, cmd: Any) -> Any:
                if cmd != "PUBACK" or not self._bk_flight:
                    return super()._handle_pubackcomp(cmd)
                pkt = self._in_packet["packet"]
                mid = (pkt[0] << 8) | pkt[1]
                with self._bk_plock:
                    p = self._bk_flight.pop(mid, None)
                    if p is not None:
                        batch, i = p[0], p[1]
                        if not batch.acked[i]:
                            batch.acked[i] = 1
                            if len(pkt) > 2 and pkt[2] >= 0x80:  # a reason code: the server refused it
                                batch.failed.append((i, pkt[2]))
                            batch.left -= 1
                            if not batch.left:
                                batch.done.set()
                        self._bk_refill = True
                if p is None:  # not ours: paho's (it takes its own locks)
                    return super()._handle_pubackcomp(cmd)
                return MQTTErrorCode.MQTT_ERR_SUCCESS

            def reconnect(self) -> Any:
                with self._bk_plock:  # nothing of ours may be queued before the new CONNECT
                    self._bk_live = False
                return super().reconnect()

            def _do_on_disconnect(self, *args: Any, **kwargs: Any) -> Any:
                with self._bk_plock:
                    self._bk_live = False
                return super()._do_on_disconnect(*args, **kwargs)

            def ack(self, mid: int, qos: int) -> Any:
                """A PUBACK from any thread: queued, and paho's thread woken only if no wake-up is on its
                way already (paho sends one byte through its socket pair per ack: a system call and a
                wake-up of its thread each, half of the fetching thread's time in the profile). The queued
                acks go out as one write, before any packet queued after them (see ``_packet_queue``)."""
                w = self._sockpairW
                if qos != 1 or not self._manual_ack or w is None or self._thread is None:
                    return super().ack(mid, qos)
                self._bk_acks.append((self._sock, mid))
                if not self._bk_woken:  # set after the append, cleared before the flush: no ack is left behind
                    self._bk_woken = True
                    try:
                        w.send(b"0")
                    except BlockingIOError:  # the pair's buffer is full: paho's thread is being woken anyway
                        pass
                    except OSError:  # the loop was stopped: the unacked message comes again (DUP)
                        pass
                return MQTTErrorCode.MQTT_ERR_SUCCESS

            def _bk_flush_acks(self) -> None:
                acks, sock = self._bk_acks, self._sock
                mids = []
                while acks:
                    try:
                        s, mid = acks.popleft()
                    except IndexError:  # another thread flushed it
                        break
                    if s is sock and sock is not None:  # an ack for an earlier connection is dropped (DUP)
                        mids.append(mid)
                if mids:
                    packet = b"".join(struct.pack("!BBH", PUBACK, 2, mid) for mid in mids)
                    self._out_packet.append({"command": PUBACK, "mid": 0, "qos": 0, "pos": 0,
                                             "to_process": len(packet), "packet": packet, "info": None})

            def _packet_queue(self, *args: Any, **kwargs: Any) -> Any:
                if self._bk_acks:  # acks queued earlier are written first
                    self._bk_flush_acks()
                return super()._packet_queue(*args, **kwargs)

            def loop_write(self) -> Any:
                self._bk_woken = False
                if self._bk_acks:
                    self._bk_flush_acks()
                return super().loop_write()

            def _sock_recv(self, bufsize: int) -> bytes:
                if self._bk_sock is not self._sock:  # a new connection: nothing buffered for it
                    self._bk_sock, self._bk_buf, self._bk_pos = self._sock, b"", 0
                pos, buf = self._bk_pos, self._bk_buf
                if pos >= len(buf):
                    data: bytes = super()._sock_recv(max(bufsize, READ_CHUNK))
                    if len(data) <= bufsize:
                        return data
                    self._bk_buf, self._bk_pos = data, bufsize
                    return data[:bufsize]
                end = pos + bufsize
                self._bk_pos = end
                return buf[pos:end]

            def _bk_buffered(self) -> bool:
                return self._bk_sock is self._sock and self._bk_pos < len(self._bk_buf)

            def _handle_publish(self) -> Any:
                """QoS 1 with manual acks (ours) decoded here, the rest by paho: the same message, without
                paho's generic property decoding (dictionaries and name scans per message)."""
                header = self._in_packet["command"]
                if (header & 0x06) != 0x02 or self._protocol != mqtt.MQTTv5 or not self._manual_ack:
                    return super()._handle_publish()
                buf = self._in_packet["packet"]
                try:
                    tlen = (buf[0] << 8) | buf[1]
                    i = 2 + tlen
                    mid = (buf[i] << 8) | buf[i + 1]
                    i += 2
                    vbi = i
                    plen = mult = 0  # the properties' length, a variable byte integer
                    while True:
                        b = buf[i]
                        i += 1
                        plen += (b & 127) << mult
                        mult += 7
                        if not b & 128:
                            break
                        if mult > 21:
                            raise ValueError("variable byte integer")
                    if i + plen > len(buf) or i > len(buf):
                        raise ValueError("property length")
                    pairs = user_properties(buf, i, i + plen)
                    if pairs is None:  # another property: paho's decoding
                        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                        props.unpack(bytes(buf[vbi:i + plen]))  # type: ignore[no-untyped-call]
                    else:
                        props = ReceivedProps(pairs)
                    message = ReceivedMessage(mid, bytes(buf[2:2 + tlen]), props, bytes(buf[i + plen:]), header)
                except (IndexError, ValueError, UnicodeDecodeError) as exc:
                    raise MalformedPacket(str(exc)) from exc
                self._handle_on_message(message)
                return MQTTErrorCode.MQTT_ERR_SUCCESS

            def loop_read(self, max_packets: int = 1) -> Any:
                rc = super().loop_read(max_packets)
                while not rc and self._sock is not None and self._bk_buffered():
                    rc = super().loop_read(max_packets)
                if self._bk_refill:  # PUBACKs of ours in this read: the next packets go out now, as one write
                    self._bk_refill = False
                    with self._bk_plock:
                        data = self._bk_fill()
                        if data:
                            self._bk_out(data)
                    if data and not rc and self._sock is not None:
                        self.loop_write()
                if self.on_batch is not None:
                    self.on_batch()
                return rc

        _CLIENT = BufferedClient
    return _CLIENT


def _stop_loop(client: Any) -> None:
    """Stop paho's network thread and close its wake-up socket pair. paho closes that pair only in
    ``Client.__del__``; a client and our ``_Conn`` reference each other (the callbacks), so the pair was left
    to the cycle collector, which may finalize the sockets first: a ``ResourceWarning`` (an error under the
    tests' ``filterwarnings``). ``loop_start`` makes a new pair if the client is started again."""
    client.loop_stop()
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset(sockpair_only=True)


class PublishNotAcknowledged(BrokerUnavailable):
    """QoS 1 publishes not PUBACKed in time (``refused`` False: the connection was lost or the server is
    slow; they may still arrive) or answered with an error reason code (``refused`` True: not stored).
    ``unacked``: the ids of those messages; the others of the same call were acknowledged."""

    def __init__(self, message: str, unacked: list[str], refused: bool = False) -> None:
        super().__init__(message)
        self.unacked = unacked
        self.refused = refused


class _Conn:
    """One paho client with its network thread; connects synchronously."""

    def __init__(self, broker: MqttBroker, client_id: str, *, session_expiry: int, receive_max: int,
                 will: tuple[str, bytes] | None = None, clean_start: bool = False,
                 control: Any = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.b = broker
        self.client_id = client_id
        self.connected = threading.Event()
        self.session_present = False
        self.error: str | None = None
        self.messages: deque[tuple[int, Any]] = deque()
        self.cond = threading.Condition()
        self.waiting = 0  # take()s waiting on cond (counted under it): on_batch notifies only then
        self.generation = 0
        self.control = control
        c = _client_class()(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.manual_ack_set(True)
        if broker.username:
            c.username_pw_set(broker.username, broker.password)
        if broker.tls:
            c.tls_set()
        if will is not None:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.reconnect_delay_set(0.1, float(broker.options.get("backoff_max", 10)))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_batch = self._on_batch
        self.client = c
        self.subscriptions: list[str] = []
        props = _props("CONNECT", SessionExpiryInterval=session_expiry, ReceiveMaximum=max(1, min(65535, receive_max)))
        try:
            c.connect(broker.host, broker.port, keepalive=int(broker.options.get("keepalive", 30)),
                      clean_start=clean_start, properties=props)
        except OSError as exc:
            raise BrokerUnavailable(f"mqtt: cannot connect to {mask_url(broker.url)}: {exc}") from exc
        c.loop_start()
        if not self.connected.wait(float(broker.options.get("connect_timeout", 10))) or self.error:
            _stop_loop(c)
            raise BrokerUnavailable(f"mqtt: connecting to {mask_url(broker.url)} failed: {self.error or 'timeout'}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            self.error = str(rc)
            self.connected.set()
            return
        self.session_present = bool(flags.session_present)
        with self.cond:
            self.generation += 1
        client.bk_connected(int(getattr(props, "ReceiveMaximum", 65535)))
        for topic in self.subscriptions:  # a lost session (expired) needs its subscriptions again
            client.subscribe(topic, qos=1)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if self.control is not None and self.control(msg):
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        self.messages.append((self.generation, msg))  # paho's thread; take() is woken once per read

    def _on_batch(self) -> None:
        if self.waiting and self.messages:
            with self.cond:
                self.cond.notify_all()

    def subscribe(self, topic: str) -> None:
        self.subscriptions.append(topic)
        self.client.subscribe(topic, qos=1)

    def take(self, n: int, timeout: float) -> list[tuple[int, Any]]:
        deadline = time.monotonic() + timeout
        messages = self.messages
        out: list[tuple[int, Any]] = []
        while True:
            try:  # popleft is atomic: a concurrent take() may empty the deque between two calls
                while len(out) < n:
                    out.append(messages.popleft())
            except IndexError:
                pass
            if out:
                return out
            with self.cond:
                # counted before the check: paho's thread, appending after the check, sees the count and
                # notifies (under the lock: once this thread waits); a message appended before is seen here.
                self.waiting += 1
                try:
                    while not messages:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return []
                        self.cond.wait(left)
                finally:
                    self.waiting -= 1

    def publish(self, topic: str, payload: bytes, user: dict[str, str] | None = None, retain: bool = False) -> Any:
        props = _user_props(list(user.items())) if user else None
        return self.client.publish(topic, payload, qos=1, retain=retain, properties=props)

    def publish_wait(self, items: Sequence[tuple[str, bytes, dict[str, str] | None, bool]], ids: Sequence[str],
                     timeout: float) -> None:
        """QoS 1 publishes of ``(topic, payload, user properties, retain)`` through ``bk_publish``, returning
        when every one was PUBACKed; :class:`PublishNotAcknowledged` names those that were not in
        ``timeout`` seconds (kept across reconnects meanwhile) or that the server refused."""
        parts = [_publish_parts(t.encode(), p, u, r) for t, p, u, r in items]
        self.wait_batch(self.client.bk_publish(parts), ids, timeout)

    def wait_batch(self, batch: _Batch, ids: Sequence[str], timeout: float) -> None:
        if not batch.done.wait(timeout):
            left = self.client.bk_cancel(batch)
            if left:
                state = "connected" if self.connected.is_set() else "not connected"
                raise PublishNotAcknowledged(
                    f"mqtt: {mask_url(self.b.url)} did not acknowledge {len(left)} of {len(ids)} publish(es) in "
                    f"{timeout}s ({state}); they may or may not have reached the server",
                    unacked=[ids[i] for i in left])
        if batch.failed:
            raise PublishNotAcknowledged(
                f"mqtt: {mask_url(self.b.url)} refused {len(batch.failed)} of {len(ids)} publish(es) (reason code "
                f"{', '.join(sorted({hex(r) for _, r in batch.failed}))})",
                unacked=[ids[i] for i, _ in batch.failed], refused=True)

    def close(self, end_session: bool) -> None:
        try:
            props = _props("DISCONNECT", SessionExpiryInterval=0) if end_session else None
            self.client.disconnect(properties=props)
        except Exception:  # noqa: BLE001
            pass
        _stop_loop(self.client)


class MqttBroker(Broker):
    """MQTT 5 broker; ``url`` ``mqtt://[user:pass@]host:1883`` (``mqtts://`` for TLS)."""

    name = "mqtt"
    capabilities = BrokerCapabilities(ack=True, requeue=True, priority=False, delay=False, durable=False,
                                      count=False, purge=False, batch_publish=False, dead_letter=True,
                                      recovery_seconds=5.0)
    default_url = "mqtt://127.0.0.1:1883"
    default_store = "sqlite"

    def __init__(self, queue: str, url: str | None = None, params: BoostParams | None = None,
                 **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        u = urlparse(self.url or self.default_url or "")
        if u.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"mqtt: url {mask_url(self.url)!r} must be mqtt://host:1883 or mqtts://host:8883")
        self.host = u.hostname or "127.0.0.1"
        self.tls = u.scheme == "mqtts"
        self.port = u.port or (8883 if self.tls else 1883)
        self.username, self.password = u.username, u.password
        o = self.options
        prefix = str(o.get("topic_prefix", "boostkernel"))
        if any(ch in queue for ch in "+#/") or not queue:
            raise ConfigError(f"mqtt: queue {queue!r} may not contain '/', '+' or '#'")
        self.topic = f"{prefix}/{queue}"
        self.group = str(o.get("group", f"bk-{queue}"))[:60]
        self.share = f"$share/{self.group}/{self.topic}"
        self.member_topic = f"{self.topic}/_bk/member"
        self.dlq_topic = f"{self.topic}/dlq"
        self.session_expiry = int(o.get("session_expiry", 3600))
        self.adopt_interval = float(o.get("adopt_interval", 2.0))
        #: Seconds a consumer waits after joining before it may lead the adoptions: the members that joined
        #: at the same moment see each other first, so two never adopt one session at once (a session taken
        #: over in the middle of a drain gives its republished, not yet acked messages out twice).
        self.lead_delay = float(o.get("lead_delay", 1.0))
        self._lead_from = float("inf")
        self.anchor_expiry = int(o.get("anchor_expiry", 7 * 86400))
        self.anchor = bool(o.get("anchor", True))
        self.prefetch = int(o.get("prefetch", default_receive_maximum(params)))
        self.client_id = str(o.get("client_id") or
                             f"bk-{queue[:40]}-{socket.gethostname()[:20]}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self.journal_dir = Path(host_journal_dir(f"mqtt-{self.group}"))
        self.journal = RunningJournal(self.journal_dir, self.client_id)
        self._lock = threading.RLock()
        self._pub: _Conn | None = None
        self._sub: _Conn | None = None
        self._anchored = False
        self._held: dict[tuple[int, int], Delivery] = {}
        self._closed = threading.Event()
        self._members_lock = threading.Lock()  # never held while waiting on the server (paho's thread takes it)
        self._alive: set[str] = set()
        self._dead: set[str] = set()
        self._adopter: threading.Thread | None = None
        self._timers: set[threading.Timer] = set()

    # --- connections ---------------------------------------------------------------------------------
    def _publisher(self) -> _Conn:
        with self._lock:
            if self._pub is None:
                self._pub = _Conn(self, f"{self.client_id}-pub", session_expiry=0, receive_max=10, clean_start=True)
            if not self._anchored and self.anchor:
                if not self._members_alive():
                    self._ensure_anchor()
                self._anchored = True
            return self._pub

    def _members_alive(self) -> bool:
        """Does a live consumer of this queue exist (its retained ``alive`` membership)?"""
        conn = _Conn(self, f"{self.client_id}-look", session_expiry=0, receive_max=100, clean_start=True)
        try:
            conn.client.subscribe(f"{self.member_topic}/+", qos=1)
            self._sync(conn)
            alive = False
            while got := conn.take(100, 0.2):
                for _, msg in got:
                    if msg.qos:
                        conn.client.ack(msg.mid, msg.qos)
                    alive = alive or msg.payload == b"alive"
            return alive
        finally:
            conn.close(end_session=True)

    def _ensure_anchor(self) -> None:
        """Keep one offline session subscribed in the group, so a message published while no consumer
        session exists is kept (consumers drain it)."""
        a = _Conn(self, f"{self.group}-anchor", session_expiry=self.anchor_expiry, receive_max=1)
        try:
            # Subscribe even when the session is present: an adoption that just drained the anchor has
            # unsubscribed it and may not have ended it yet (its DISCONNECT still on the way), so a present
            # session is not proof of a subscription. Subscribing again is harmless.
            a.client.subscribe(self.share, qos=1)
            self._sync(a)
        finally:
            a.client.disconnect()  # keeps the session: it was connected with an expiry
            _stop_loop(a.client)

    def _sync(self, conn: _Conn, timeout: float = 10.0) -> None:
        """Round trip: a QoS 1 publish to a private topic, waited for (orders after earlier packets)."""
        info = conn.publish(f"{self.topic}/_bk/sync", b"", None)
        info.wait_for_publish(timeout)

    def _consumer(self) -> _Conn:
        with self._lock:
            if self._sub is None:
                me = f"{self.member_topic}/{self.client_id}"
                c = _Conn(self, self.client_id, session_expiry=self.session_expiry,
                          receive_max=max(1, self.prefetch), will=(me, b"dead"), control=self._on_member)
                c.publish(me, b"alive", None, retain=True)
                c.subscribe(f"{self.member_topic}/+")
                c.subscribe(self.share)
                # One round trip before this consumer adopts anything: the server handles a connection's
                # packets in order, so once this PUBACK is back our SUBSCRIBE to the group is in place (a
                # message republished by an adoption reaches a live member, not nobody) and the retained
                # membership (every ``dead`` will) has been delivered, so the first round sees them all.
                self._sync(c)
                self._lead_from = time.monotonic() + self.lead_delay
                self._sub = c
                self.journal.open()
                self._adopter = threading.Thread(target=self._adopt_loop, name=f"bk-mqtt-adopt-{self.queue}",
                                                 daemon=True)
                self._adopter.start()
            return self._sub

    # --- publishing ----------------------------------------------------------------------------------
    def publish(self, message: Outgoing) -> None:
        self.publish_many([message])

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Every message published at QoS 1 and PUBACKed before this returns (see ``bk_publish``: the
        packets are built here, written in chunks as the server's Receive Maximum allows, and the PUBACKs
        counted in paho's thread); :class:`PublishNotAcknowledged` names the ones that were not."""
        if not messages:
            return
        parts = _task_parts(self.topic.encode(), messages)
        pub = self._publisher()
        pub.wait_batch(pub.client.bk_publish(parts), [m.id for m in messages], self._publish_timeout())

    def _publish_timeout(self) -> float:
        return float(self.options.get("publish_timeout", 30))

    def _publish_one(self, topic: str, body: bytes, user: dict[str, str] | None, *, retain: bool = False,
                     mid: str = "", timeout: float | None = None) -> None:
        """One QoS 1 publish on the publisher connection, waited for (every publish there goes through
        ``bk_publish``: it and paho's ``publish`` would share the server's window unknowingly)."""
        self._publisher().publish_wait([(topic, body, user, retain)], [mid or topic],
                                       self._publish_timeout() if timeout is None else timeout)

    # --- consuming -----------------------------------------------------------------------------------
    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed.is_set():
            return []
        sub = self._consumer()
        out: list[Delivery] = []
        deadline = time.monotonic() + timeout
        while not out:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for gen, msg in sub.take(max_messages - len(out), left):
                u = _user(msg)
                mid = u.get("bk-id") or str(uuid.uuid4())
                count = int(u.get("bk-deliveries", "0") or 0) + 1 + (1 if msg.dup else 0)
                d = Delivery(mid, msg.payload, (gen, msg.mid), count, crashes=int(u.get("bk-crashes", "0") or 0))
                with self._lock:
                    self._held[(gen, msg.mid)] = d
                out.append(d)
        return out

    def started(self, delivery: Delivery) -> None:
        self.journal.started(delivery.id)

    def _settle(self, d: Delivery) -> bool:
        self.journal.finished(d.id)
        with self._lock:
            known = self._held.pop(d.tag, None) is not None
            sub = self._sub
        if not known or sub is None:
            return False
        gen, mid = d.tag
        if gen != sub.generation:
            return False  # an ack for a connection that is gone: the server resends the message (DUP)
        sub.client.ack(mid, 1)
        return True

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery)

    def _republish(self, d: Delivery, crashes: int | None = None) -> None:
        user = {"bk-id": d.id, "bk-deliveries": str(d.delivery_count)}
        c = d.crashes if crashes is None else crashes
        if c:
            user["bk-crashes"] = str(c)
        self._publish_one(self.topic, d.body, user, mid=d.id)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        if not requeue:
            self._settle(delivery)
            return
        if delay <= 0:
            self._republish(delivery)
            self._settle(delivery)
            return

        def later() -> None:  # the original stays unacked meanwhile: a crash still redelivers it
            self._timers.discard(t)
            if self._closed.is_set():
                return
            try:
                self._republish(delivery)
                self._settle(delivery)
            except Exception as exc:  # noqa: BLE001 - the unacked original comes back through its session
                log.warning("mqtt: delayed requeue failed: %s", exc)

        t = threading.Timer(delay, later)
        t.daemon = True
        self._timers.add(t)
        t.start()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._to_dlq(delivery.id, delivery.body, reason)
        self._settle(delivery)

    def _to_dlq(self, mid: str, body: bytes, reason: str) -> None:
        self._publish_one(f"{self.dlq_topic}/{mid}", body, {
            "bk-id": mid, "bk-reason": reason[:10000], "bk-failed-at": repr(time.time())}, retain=True, mid=mid)

    # --- adoption of dead and anchor sessions ------------------------------------------------------------
    def _on_member(self, msg: Any) -> bool:
        """Membership of the queue's consumers (paho's thread): retained ``alive``, the will ``dead``."""
        if not msg.topic.startswith(self.member_topic + "/"):
            return False
        cid = msg.topic[len(self.member_topic) + 1:]
        with self._members_lock:
            self._alive.discard(cid)
            self._dead.discard(cid)
            if msg.payload == b"alive":
                self._alive.add(cid)
            elif msg.payload == b"dead" and cid != self.client_id:
                self._dead.add(cid)
        return True

    def _leader(self) -> bool:
        """Only one live consumer adopts sessions (two adopters of one session would duplicate): the lowest
        client id among the members, once it has been a member for ``lead_delay``. An adoption checks it
        after every message and stops (keeping the session) when a lower member has come."""
        if time.monotonic() < self._lead_from:
            return False
        with self._members_lock:
            return self.client_id <= min(self._alive | {self.client_id})

    def _adopt_loop(self) -> None:
        next_anchor = time.monotonic() + self.adopt_interval * 0.5
        while not self._closed.wait(0.1):
            if not self._leader():
                continue
            with self._members_lock:
                dead = sorted(self._dead)
            if dead:
                try:
                    self._adopt_dead(dead)
                except Exception as exc:  # noqa: BLE001 - retried at the next round
                    log.warning("mqtt: adopting dead session(s) %s failed: %s", ", ".join(dead), exc)
            now = time.monotonic()
            if now >= next_anchor and not self._closed.is_set():
                next_anchor = now + self.adopt_interval
                try:
                    self._adopt(f"{self.group}-anchor")
                except Exception as exc:  # noqa: BLE001 - retried at the next round
                    log.warning("mqtt: adopting the anchor session failed: %s", exc)

    ADOPT_BATCH = 500
    """Messages of dead sessions held (unacked) while copies are looked for; below the adoption Receive Maximum."""

    def _adopt_dead(self, cids: list[str]) -> int:
        """Adopt the sessions of dead consumers together, one copy per task id.

        A consumer killed while it was itself adopting a dead session (between republishing a message and
        acking it there) leaves two sessions holding copies of that message, with different crash counts:
        the old session's original and the copy it republished (and may have been running). Adopted one by
        one, both came back (a task delivered once more than its crash count allowed). Here every session
        of the round is drained first; copies of one id are handed back once, with the highest crash count
        seen (each crash happened). Flushed every :attr:`ADOPT_BATCH` messages so a session holding more
        than the Receive Maximum still drains; a copy found after a flush goes back only if it carries more
        crashes than the one already handed back."""
        opened: list[tuple[str, _Conn]] = []
        best: dict[str, Delivery] = {}
        sent: dict[str, int] = {}
        unacked: list[tuple[_Conn, int]] = []
        moved = 0

        def flush() -> None:
            for d in best.values():
                if d.crashes >= self.max_crashes:
                    self._to_dlq(d.id, d.body, f"crash-loop: the worker died {d.crashes} time(s) while "
                                               f"running it (sessions: {', '.join(cids)})")
                else:
                    self._republish(d, d.crashes)
                sent[d.id] = d.crashes
            best.clear()
            for conn, m in unacked:
                conn.client.ack(m, 1)
            unacked.clear()

        try:
            for cid in cids:
                if self._closed.is_set():
                    break
                conn = _Conn(self, cid, session_expiry=self.session_expiry, receive_max=1000)
                opened.append((cid, conn))
                if not conn.session_present:
                    continue
                running = read_journal(self.journal_dir, cid)
                for gen, msg in self._drain(conn):
                    if not conn.connected.is_set() or gen != conn.generation:
                        raise BrokerUnavailable(f"session {cid} was taken over while being adopted")
                    u = _user(msg)
                    mid = u.get("bk-id") or str(uuid.uuid4())
                    crashes = int(u.get("bk-crashes", "0") or 0)
                    if running is None or mid in running:
                        crashes += 1  # it was running (or we cannot tell) when its consumer died
                    unacked.append((conn, msg.mid))
                    moved += 1
                    prev = best.get(mid)
                    if crashes > sent.get(mid, -1) and (prev is None or crashes > prev.crashes):
                        best[mid] = Delivery(mid, msg.payload, None, int(u.get("bk-deliveries", "0") or 0) + 1,
                                             crashes=crashes)
                    if len(unacked) >= self.ADOPT_BATCH:
                        flush()
                    if not self._leader():  # another member leads now: it adopts what is left
                        flush()
                        raise BrokerUnavailable("another consumer leads the adoptions now")
            flush()
        except BaseException:
            for _, conn in opened:  # keep the sessions: what was not acked is adopted again later
                conn.close(end_session=False)
            raise
        for cid, conn in opened:
            conn.close(end_session=True)
            with self._members_lock:
                self._dead.discard(cid)
            try:  # the sessions are ended: a retained "dead" left behind only brings an adoption of nothing
                self._publish_one(f"{self.member_topic}/{cid}", b"", None, retain=True, timeout=10)
            except BrokerUnavailable as exc:
                log.warning("mqtt: clearing the membership of %s failed: %s", cid, exc)
            remove_journal(self.journal_dir, cid)
        if moved:
            log.info("mqtt: adopted %d message(s) (%d task(s)) of session(s) %s", moved, len(sent), ", ".join(cids))
        return moved

    def _adopt(self, cid: str) -> int:
        """Connect as the anchor session ``cid``, leave the group, publish back what it held, end it."""
        if self._closed.is_set():
            return 0
        conn = _Conn(self, cid, session_expiry=self.anchor_expiry, receive_max=1000)
        moved = 0
        end = True
        try:
            if not conn.session_present:
                return 0
            for gen, msg in self._drain(conn):
                if not conn.connected.is_set() or gen != conn.generation:
                    raise BrokerUnavailable(f"session {cid} was taken over while being adopted")
                u = _user(msg)
                mid = u.get("bk-id") or str(uuid.uuid4())
                d = Delivery(mid, msg.payload, None, int(u.get("bk-deliveries", "0") or 0),
                             crashes=int(u.get("bk-crashes", "0") or 0))
                if d.crashes >= self.max_crashes:
                    self._to_dlq(mid, msg.payload, f"crash-loop: the worker died {d.crashes} time(s) while "
                                                   f"running it")
                else:
                    self._republish(d, d.crashes)
                conn.client.ack(msg.mid, 1)
                moved += 1
                if not self._leader():  # another member leads now: it adopts what is left (acks go first)
                    end = False
                    break
        except BaseException:
            end = False  # keep the session: its messages are adopted again later
            raise
        finally:
            conn.close(end_session=end)
        if moved:
            log.info("mqtt: adopted %d message(s) of session %s", moved, cid)
        return moved

    def _drain(self, conn: _Conn) -> Any:
        """Leave the group and yield every queue message the session holds or has queued, in order, until
        a marker published after the UNSUBSCRIBE comes back (Mosquitto delivers a session's queue in order).
        The caller acks each one it has handled."""
        mark = f"{self.topic}/_bk/mark/{uuid.uuid4().hex}"
        conn.client.subscribe(mark, qos=1)
        conn.client.unsubscribe(self.share)
        conn.publish(mark, b"m", None)
        wait = float(self.options.get("drain_timeout", 30))
        while True:
            got = conn.take(100, wait)
            if not got:
                raise BrokerUnavailable(f"mqtt: draining session {conn.client_id}: no marker in {wait}s")
            for gen, msg in got:
                if msg.topic == mark:
                    conn.client.ack(msg.mid, msg.qos)
                    return
                if msg.topic != self.topic:
                    if msg.qos:
                        conn.client.ack(msg.mid, msg.qos)
                    continue
                yield gen, msg

    # --- dead letters ------------------------------------------------------------------------------------
    def _read_dlq(self) -> list[Any]:
        conn = _Conn(self, f"{self.client_id}-dlq-{uuid.uuid4().hex[:6]}", session_expiry=0, receive_max=1000,
                     clean_start=True)
        try:
            conn.client.subscribe(f"{self.dlq_topic}/+", qos=1)
            self._sync(conn)
            out: list[Any] = []
            while got := conn.take(1000, 0.3):
                for _, msg in got:
                    if msg.qos:
                        conn.client.ack(msg.mid, msg.qos)
                    if msg.payload or msg.retain:
                        out.append(msg)
            return [m for m in out if m.payload]
        finally:
            conn.close(end_session=True)

    def _record(self, msg: Any) -> DeadLetterRecord:
        u = _user(msg)
        return DeadLetterRecord(u.get("bk-id") or msg.topic.rsplit("/", 1)[-1], msg.payload,
                                u.get("bk-reason", "dead-lettered"), float(u.get("bk-failed-at", 0) or 0), msg.topic)

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        return sorted((self._record(m) for m in self._read_dlq()), key=lambda r: r.failed_at)[:limit]

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        want = set(ids) if ids is not None else None
        n = 0
        for rec in self.dead_letters(1_000_000):
            if want is not None and rec.id not in want:
                continue
            self._publish_one(self.topic, rec.body, {"bk-id": rec.id}, mid=rec.id)
            self._publish_one(rec.tag, b"", None, retain=True, mid=rec.id)
            n += 1
        return n

    def purge_dead_letters(self) -> int:
        recs = self.dead_letters(1_000_000)
        for rec in recs:
            self._publish_one(rec.tag, b"", None, retain=True, mid=rec.id)
        return len(recs)

    # --- lifecycle ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Leave the group, publish back every message held and not settled, end the session."""
        if not self.stop_background(self._closed):
            return
        for t in list(self._timers):
            t.cancel()
        if self._adopter is not None:
            self._adopter.join(15)
        sub = self._sub
        if sub is not None:
            try:
                if sub.connected.is_set():
                    with self._members_lock:
                        last = not (self._alive - {self.client_id})
                    if last and self.anchor:  # the group keeps a member: messages published now are kept
                        self._ensure_anchor()
                    sub.publish(f"{self.member_topic}/{self.client_id}", b"", None, retain=True)
                    sub.control = None
                    with self._lock:
                        held, self._held = list(self._held.values()), {}
                    for d in held:  # prefetched, or a delayed nack still waiting: back to the queue
                        self._republish(d)
                        sub.client.ack(d.tag[1], 1)
                    for _, msg in self._drain(sub):  # queued for us before we left the group
                        u = _user(msg)
                        self._republish(Delivery(u.get("bk-id") or str(uuid.uuid4()), msg.payload, None,
                                                 int(u.get("bk-deliveries", "0") or 0),
                                                 crashes=int(u.get("bk-crashes", "0") or 0)))
                        sub.client.ack(msg.mid, 1)
                    sub.close(end_session=True)
                    remove_journal(self.journal_dir, self.client_id)
                else:
                    sub.close(end_session=False)  # cannot hand them back: the session keeps them
            except Exception as exc:  # noqa: BLE001
                log.warning("mqtt: graceful close failed (%s): the session keeps its messages", exc)
                sub.close(end_session=False)
        self.journal.close()
        if self._pub is not None:
            self._pub.close(end_session=True)

    def drop_anchor(self) -> None:
        """End the anchor session of this queue (tests, tooling): messages it holds are lost."""
        conn = _Conn(self, f"{self.group}-anchor", session_expiry=0, receive_max=1, clean_start=True)
        conn.close(end_session=True)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "topic": self.topic, "group": self.group, "client_id": self.client_id}
