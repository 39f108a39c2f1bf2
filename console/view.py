"""The console's view: the latest change of every alert, like a KTable over the compacted alerts topic. Pure."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from console.records import AlertChange
from schemas.alerts import AlertStatus


class Applied(StrEnum):
    """What applying one record did to the view (the metric label ``result``)."""

    CHANGED = "changed"
    """A new alert or a newer change of a known one."""
    DUPLICATE = "duplicate"
    """The same emission again (same ``alertId``), e.g. a producer retry: nothing changes."""
    STALE = "stale"
    """Emitted before the change the view already holds: kept out, the newer one stands."""


@dataclass
class AlertView:
    """Latest change per fingerprint, with per-status counts kept in step (read by ``/metrics``)."""

    _alerts: dict[str, AlertChange] = field(default_factory=dict)
    _counts: dict[AlertStatus, int] = field(default_factory=lambda: dict.fromkeys(AlertStatus, 0))

    def apply(self, change: AlertChange) -> Applied:
        current = self._alerts.get(change.fingerprint)
        if current is not None:
            if current.alertId == change.alertId:
                return Applied.DUPLICATE
            if change.emittedAt < current.emittedAt:
                return Applied.STALE
            self._counts[current.status] -= 1
        self._alerts[change.fingerprint] = change
        self._counts[change.status] += 1
        return Applied.CHANGED

    def get(self, fingerprint: str) -> AlertChange | None:
        return self._alerts.get(fingerprint)

    def count(self, status: AlertStatus) -> int:
        return self._counts[status]

    def firing(self) -> Iterator[AlertChange]:
        return (a for a in self._alerts.values() if a.status is AlertStatus.FIRING)

    def __len__(self) -> int:
        return len(self._alerts)

    def __iter__(self) -> Iterator[AlertChange]:
        return iter(self._alerts.values())
