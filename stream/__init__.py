"""Stream workers: a thin Faust layer (``stream.app``) over pure alert rules (``stream.rules``)."""


class StreamError(Exception):
    """Root of the stream package's own errors."""
