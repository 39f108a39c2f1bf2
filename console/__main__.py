"""``python -m console``: follow the alerts topic, feed Alertmanager, serve health and metrics."""

import argparse
import asyncio
import logging
import sys

import httpx
import uvicorn

from console import ConfigError
from console.alertmanager import Alertmanagers
from console.app import create_app
from console.config import ConsoleSettings, get_settings
from console.observability import configure_logging
from console.service import ConsoleState, consume

log = logging.getLogger("bindwatch.console")


async def run(settings: ConsoleSettings) -> None:
    state = ConsoleState(settings)
    async with httpx.AsyncClient(headers={"User-Agent": "bindwatch-console"}) as client:
        if settings.alertmanager_urls:
            state.alertmanagers = Alertmanagers(settings, state.view, state.metrics, client)
            log.info("forwarding alerts", extra={"fields": {"alertmanagers": settings.alertmanager_urls}})
        else:
            log.warning(
                "no Alertmanager configured (BINDWATCH_ALERTMANAGER_URLS is empty): the console keeps the view "
                "and its metrics but forwards no alert"
            )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(state),
                host=settings.host,
                port=settings.port,
                access_log=False,
                log_config=None,
                server_header=False,
                timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
            )
        )
        rebuilt = asyncio.Event()
        tasks = [asyncio.create_task(consume(state, rebuilt), name="consume")]
        if state.alertmanagers is not None:
            ams = state.alertmanagers

            async def deliver() -> None:
                await rebuilt.wait()  # a half-read view would send alerts that are resolved further on
                await ams.run()

            tasks.append(asyncio.create_task(deliver(), name="deliver"))
        serve = asyncio.create_task(server.serve(), name="http")
        try:
            done, _ = await asyncio.wait([serve, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not serve and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            server.should_exit = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await serve


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m console",
        description="Follow bindwatch.alerts.v1 and feed Prometheus Alertmanager (settings: BINDWATCH_* variables).",
    ).parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        settings.check()
    except ConfigError as exc:
        print(f"bindwatch console: {exc}", file=sys.stderr)
        return 2
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
