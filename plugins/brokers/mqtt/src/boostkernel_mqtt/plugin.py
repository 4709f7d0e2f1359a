"""Entry point of boostkernel-mqtt (imports nothing heavy: paho-mqtt is imported by the broker module)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker(
        "mqtt", "boostkernel_mqtt.broker:MqttBroker", schemes=("mqtt", "mqtts"),
        summary="MQTT 5 (paho-mqtt): QoS 1, persistent sessions, shared subscriptions, ack after the task",
    )
