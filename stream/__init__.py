"""Stream workers: a thin Faust layer (``stream.app``) over pure alert rules (``stream.rules``)."""

from stream import native

# Before any of the compiled modules is imported: their compiled build, or their source (see stream.native).
native.select()


class StreamError(Exception):
    """Root of the stream package's own errors."""
