"""``python -m console``: follow the alerts topic, feed Alertmanager, serve health and metrics."""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import httpx
import uvicorn

from console import ConfigError
from console.alertmanager import Alertmanagers
from console.app import create_app
from console.config import ConsoleSettings, get_settings
from console.observability import configure_logging
from console.service import ConsoleState, consume, follow_overview

log = logging.getLogger("bindwatch.console")
KAFKA_RETRY_SECONDS = 5.0


class _Server(uvicorn.Server):
    """uvicorn, minus its signal capture: after ``serve()`` returns it re-raises a captured SIGTERM with the default
    handler, which kills the process before the consumer commits and closes. The console handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def follow(state: ConsoleState, rebuilt: asyncio.Event) -> None:
    """Consume until cancelled; when Kafka fails (unreachable at start, a fatal consumer error) say so and start
    over: reading again from the beginning re-applies the same changes, which the view absorbs."""
    while True:
        try:
            await consume(state, rebuilt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.kafka_error = f"{type(exc).__name__}: {exc}"
            log.error("Kafka consumer failed; starting again", extra={"fields": {"reason": state.kafka_error}})
            await asyncio.sleep(KAFKA_RETRY_SECONDS)


async def overview(state: ConsoleState) -> None:
    """Follow the overview topic until cancelled, starting over (and saying why on the page) when Kafka fails."""
    while True:
        try:
            await follow_overview(state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.overview_error = f"{type(exc).__name__}: {exc}"
            log.error("overview consumer failed; starting again", extra={"fields": {"reason": state.overview_error}})
            await asyncio.sleep(KAFKA_RETRY_SECONDS)


async def run(settings: ConsoleSettings) -> None:
    state = ConsoleState(settings)
    async with httpx.AsyncClient(headers={"User-Agent": "bindwatch-console"}) as client:
        state.http = client
        if settings.alertmanager_urls:
            state.alertmanagers = Alertmanagers(settings, state.view, state.metrics, client)
            log.info("forwarding alerts", extra={"fields": {"alertmanagers": settings.alertmanager_urls}})
        else:
            log.warning(
                "no Alertmanager configured (BINDWATCH_ALERTMANAGER_URLS is empty): the console keeps the view "
                "and its metrics but forwards no alert"
            )
        server = _Server(
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
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        rebuilt = asyncio.Event()
        tasks = [
            asyncio.create_task(follow(state, rebuilt), name="consume"),
            asyncio.create_task(overview(state), name="overview"),
        ]
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
            log.info("console stopped")


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
