"""A stage's table in memory, for running the stage cores in process (``docs/noise_report.py``, ``bench.stages``)."""

from __future__ import annotations

from typing import Any

from stream.core import rows_in


class MemoryTable:
    """``stream.core.SubjectTable`` on a dictionary: every write is stored when made, as in Faust's memory store."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.data: dict[str, bytes] = {}

    def get(self, key: str, where: Any) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, where: Any) -> None:
        self.data[key] = value

    def delete(self, key: str, where: Any) -> None:
        self.data.pop(key, None)

    def items(self, partition: int | None = None) -> list[tuple[str, bytes]]:
        return rows_in(self.data.items(), partition, self.partitions)

    async def written(self) -> None:
        """In memory: every write is stored when made."""
