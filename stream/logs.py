"""The worker's logs: JSON lines through ``schemas.logs``, at ``BINDWATCH_LOG_LEVEL``, numbers masked.

Faust's worker sets up logging itself (mode ``Worker._setup_logging``, called when ``faust ... worker``
starts): it applies the app's ``logging_config`` setting, when there is one, with ``logging.config.dictConfig``
instead of its own coloured text handler. ``stream.app`` passes ``logging_config(settings)`` there, so Faust's,
mode's and aiokafka's loggers and ours all reach the one JSON handler, and the level is the worker's own
setting (the ``-l`` option of ``faust worker`` only shapes the configuration that this one replaces).
"""

from typing import Any

from schemas import logs
from stream.config import StreamSettings


def logging_config(settings: StreamSettings) -> dict[str, Any]:
    """The ``logging_config`` of the Faust app (a ``logging.config.dictConfig`` dictionary)."""
    return logs.dict_config(settings.log_level, mask_numbers=settings.mask_numbers_in_logs)
