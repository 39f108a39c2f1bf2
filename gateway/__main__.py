"""``python -m gateway``: serve the gateway with uvicorn, settings from the environment."""

import logging
import sys

import uvicorn

from gateway import ConfigError
from gateway.config import get_settings
from gateway.connections import ConnectionLimits, raise_fd_limit
from gateway.observability import configure_logging

log = logging.getLogger("bindwatch.gateway")


def main(factory: str = "gateway.app:production_app") -> int:
    """Serve ``factory`` (an app-factory path) with the production uvicorn options; the benchmark's
    no-Kafka baseline passes its own factory so that both run the same server stack."""
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        settings.check()
    except ConfigError as exc:
        print(f"bindwatch gateway: {exc}", file=sys.stderr)
        return 2
    nofile = raise_fd_limit()
    limits = ConnectionLimits.from_settings(settings, nofile)
    if settings.max_connections > limits.max_connections:
        log.warning(
            "BINDWATCH_MAX_CONNECTIONS is more than the open-files limit allows: using the lower figure",
            extra={"fields": {"asked": settings.max_connections, "using": limits.max_connections, "nofile": nofile}},
        )
    log.info(
        "connection limits",
        extra={
            "fields": {
                "max_connections": limits.max_connections,
                "max_connections_per_source": limits.max_per_source,
                "idle_timeout_s": limits.idle_timeout,
                "request_timeout_s": limits.request_timeout,
                "drop_at_connect": bool(limits.allowed_sources),
            }
        },
    )
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,  # it would print ?token=...; the gateway logs one masked line per request
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
        server_header=False,
        # One layer decides the client address: gateway.auth.client_address, from BINDWATCH_TRUSTED_PROXIES.
        # uvicorn's own rewriting (on by default, trusting loopback) let any local peer claim any source.
        proxy_headers=False,
        # Admission at connect, request deadlines and connection limits: see gateway/connections.py.
        http="gateway.connections:GuardedHttpToolsProtocol",
        timeout_keep_alive=settings.keepalive_timeout_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
