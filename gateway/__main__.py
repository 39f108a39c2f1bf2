"""``python -m gateway``: serve the gateway with uvicorn, settings from the environment."""

import sys

import uvicorn

from gateway import ConfigError
from gateway.config import get_settings
from gateway.observability import configure_logging


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
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
