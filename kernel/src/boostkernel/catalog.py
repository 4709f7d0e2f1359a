"""Names owned by known control plugins, so that using one whose plugin is not installed names the plugin
to install instead of "unknown parameter". Checked against the in-tree plugins by kernel/tests/test_options.py.
"""

from __future__ import annotations

#: ``@boost`` option -> the plugin that declares it (also the name of its extra of ``boostkernel``).
KNOWN_OPTIONS: dict[str, str] = {
    "qps": "ratelimit", "qps_scope": "ratelimit",
    "max_retries": "retry", "max_retries_cap": "retry", "retry_backoff": "retry", "retry_backoff_max": "retry", "retry_jitter": "retry",
    "retry_on": "retry", "retry_mode": "retry",
    "timeout": "timeout", "timeout_cap": "timeout",
    "dedup": "dedup", "dedup_ttl": "dedup", "dedup_claim_ttl": "dedup", "dedup_busy_delay": "dedup",
    "expires": "expiry",
    "allowed_window": "timewindow", "window_tz": "timewindow",
    "pausable": "pause", "pause_poll_interval": "pause",
    "cancellable": "cancel", "cancel_poll_interval": "cancel",
    "circuit_breaker": "circuitbreaker",
    "quota": "quota",
    "stats_interval": "stats",
    "workflow": "workflow",
}

#: Booster method -> the plugin that adds it (``registry.add_booster_method``).
KNOWN_METHODS: dict[str, str] = {
    "pause": "pause", "resume": "pause", "is_paused": "pause",
    "revoke": "cancel",
    "schedule": "schedule", "unschedule": "schedule", "schedules": "schedule",
    "s": "workflow", "si": "workflow",
}
