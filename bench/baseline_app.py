"""The gateway without Kafka, as the throughput baseline: ``python -m bench.baseline_app``.

The same app (token check, validation, normalisation, metrics, one log line per push) and the same uvicorn
options as ``python -m gateway`` (gateway/__main__.py); only the publisher is ``MemoryPublisher(keep=False)``,
which answers at once and keeps nothing. The difference to the real gateway is the cost of Kafka.
"""

import sys

from fastapi import FastAPI

from gateway.__main__ import main as gateway_main
from gateway.app import create_app
from gateway.config import get_settings
from gateway.observability import configure_logging
from gateway.publisher import MemoryPublisher


def create() -> FastAPI:
    """Factory uvicorn calls in every worker process, like ``gateway.app:production_app``."""
    settings = get_settings()
    configure_logging(settings.log_level, mask_numbers=settings.mask_numbers_in_logs)
    return create_app(settings, MemoryPublisher(keep=False))


def main() -> int:
    # The same server stack and options as the gateway, only the factory differs.
    return gateway_main("bench.baseline_app:create")


if __name__ == "__main__":
    sys.exit(main())
