"""HTTP gateway: authenticates and validates NXCLOUD pushes and writes them to Kafka durably.

Exception tree (one root, so callers can catch the gateway's own failures and nothing else)::

    GatewayError
    ├── ConfigError        settings that cannot work (e.g. no push token and no insecure flag)
    └── PublishError       the event is not durably stored: answer 503 so NXCLOUD retries
        ├── PublishTimeout    the broker did not acknowledge within the bound
        └── NotConnected      no producer connection (yet)
"""


class GatewayError(Exception):
    """Root of the gateway's own errors."""


class ConfigError(GatewayError):
    """The settings cannot work; the message says which variable to set."""


class PublishError(GatewayError):
    """The write was not acknowledged by Kafka; nothing may be answered 200."""

    reason = "kafka_error"


class PublishTimeout(PublishError):
    reason = "timeout"


class NotConnected(PublishError):
    reason = "not_connected"
