"""The reference system's connection settings (``BrokerConnConfig`` keys) mapped to broker URLs.

The reference system writes a ``funboost_config.py`` into the user's project and reads it at import time.
Here nothing is written: ``patch_frame_config(REDIS_HOST=..., ...)`` (or a class with those attributes)
records the settings in this process, and each booster whose broker has no ``broker_url`` of its own gets
the URL built from them. Without any call, boostkernel's own configuration applies (``BOOSTKERNEL_BROKER_URL``,
``[tool.boostkernel]`` in pyproject.toml, or the plugin's default such as redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

log = logging.getLogger("boostkernel.funboost")

#: Keys that only changed the reference system's own logging / banner: accepted, no effect here.
_COSMETIC = {
    "NB_LOG_FORMATER_INDEX_FOR_CONSUMER_AND_PUBLISHER", "TIMEZONE", "SHOW_HOW_FUNBOOST_CONFIG_SETTINGS",
    "FUNBOOST_PROMPT_LOG_LEVEL", "KEEPALIVETIMETHREAD_LOG_LEVEL",
}
#: Keys used to build a URL (read by :func:`broker_url_for`).
_KNOWN = {
    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_USERNAME", "REDIS_DB", "REDIS_SSL", "REDIS_URL",
    "REDIS_DB_FILTER_AND_RPC_RESULT", "RABBITMQ_USER", "RABBITMQ_PASS", "RABBITMQ_HOST", "RABBITMQ_PORT",
    "RABBITMQ_VIRTUAL_HOST", "RABBITMQ_URL", "MONGO_CONNECT_URL", "KAFKA_BOOTSTRAP_SERVERS", "SQLACHEMY_ENGINE_URL",
    "MYSQL_HOST", "MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE", "SQLLITE_QUEUES_PATH",
    "TXT_FILE_PATH", "POSTGRES_DSN", "NATS_URL", "KOMBU_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
    "DRAMATIQ_URL", "PULSAR_URL", "NSQD_TCP_ADDRESSES", "NSQD_HTTP_CLIENT_HOST", "NSQD_HTTP_CLIENT_PORT",
    "MQTT_HOST", "MQTT_TCP_PORT", "ROCKETMQ_NAMESRV_ADDR", "ROCKETMQ_ENDPOINTS",
}

_settings: dict[str, Any] = {}


def patch_frame_config(config: Any = None, /, **settings: Any) -> None:
    """Record connection settings of the reference system (``REDIS_HOST=...``, ``RABBITMQ_URL=...``).

    ``config`` may be a class or module with those attributes (e.g. the ``BrokerConnConfig`` of an existing
    ``funboost_config.py``). Logging-only keys are accepted and ignored; unknown keys are logged."""
    if config is not None:
        settings = {k: v for k, v in vars(config).items() if k.isupper()} | settings
    for key, value in settings.items():
        if key in _COSMETIC:
            log.info("patch_frame_config: %s only shaped the reference system's logging; ignored", key)
        elif key not in _KNOWN:
            log.warning("patch_frame_config: unknown key %s ignored (docs/migration-funboost.md lists the keys)", key)
        _settings[key] = value


def reset_frame_config() -> None:
    """Forget every setting recorded by :func:`patch_frame_config` (for tests)."""
    _settings.clear()


def _auth(user: Any, password: Any) -> str:
    if not user and not password:
        return ""
    return f"{quote(str(user or ''), safe='')}:{quote(str(password or ''), safe='')}@"


def broker_url_for(broker: str) -> str | None:
    """The URL for boostkernel broker ``broker`` built from the recorded settings, or ``None``."""
    s = _settings
    if broker.startswith("redis") or broker in ("rq", "huey"):
        if s.get("REDIS_URL"):
            return str(s["REDIS_URL"])
        if "REDIS_HOST" not in s:
            return None
        scheme = "rediss" if s.get("REDIS_SSL") else "redis"
        return (f"{scheme}://{_auth(s.get('REDIS_USERNAME'), s.get('REDIS_PASSWORD'))}{s['REDIS_HOST']}:"
                f"{s.get('REDIS_PORT', 6379)}/{s.get('REDIS_DB', 0)}")
    if broker == "rabbitmq":
        if s.get("RABBITMQ_URL"):
            return str(s["RABBITMQ_URL"])
        if "RABBITMQ_HOST" not in s:
            return None
        vhost = quote(str(s.get("RABBITMQ_VIRTUAL_HOST", "/")), safe="")
        return (f"amqp://{_auth(s.get('RABBITMQ_USER', 'guest'), s.get('RABBITMQ_PASS', 'guest'))}"
                f"{s['RABBITMQ_HOST']}:{s.get('RABBITMQ_PORT', 5672)}/{vhost}")
    if broker in ("kafka", "confluent-kafka") and s.get("KAFKA_BOOTSTRAP_SERVERS"):
        servers = s["KAFKA_BOOTSTRAP_SERVERS"]
        return "kafka://" + (",".join(servers) if isinstance(servers, (list, tuple)) else str(servers))
    if broker == "sql":
        if s.get("SQLACHEMY_ENGINE_URL"):
            return str(s["SQLACHEMY_ENGINE_URL"])
        if "MYSQL_HOST" in s:
            return (f"mysql+pymysql://{_auth(s.get('MYSQL_USER'), s.get('MYSQL_PASSWORD'))}{s['MYSQL_HOST']}:"
                    f"{s.get('MYSQL_PORT', 3306)}/{s.get('MYSQL_DATABASE', '')}")
        return None
    simple = {"postgres": "POSTGRES_DSN", "mongodb": "MONGO_CONNECT_URL", "nats": "NATS_URL", "kombu": "KOMBU_URL",
              "celery": "CELERY_BROKER_URL", "dramatiq": "DRAMATIQ_URL", "pulsar": "PULSAR_URL"}
    key = simple.get(broker)
    return str(s[key]) if key and s.get(key) else None


def data_dir() -> str | None:
    """``SQLLITE_QUEUES_PATH``: the folder of the embedded SQLite files (boostkernel's ``data_dir``)."""
    value = _settings.get("SQLLITE_QUEUES_PATH")
    return str(value) if value else None
