"""The console: reads ``bindwatch.alerts.v1``, keeps the latest change of every alert, feeds Alertmanager.

Depends on ``schemas/`` only (never ``gateway/`` or ``stream/``)::

    ConsoleError            root of every error the console raises
     └─ ConfigError         settings that cannot work
"""


class ConsoleError(Exception):
    """Root of the console's exceptions."""


class ConfigError(ConsoleError):
    """Settings that cannot work; the message says which variable and what to do."""
