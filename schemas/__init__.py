"""Data contracts shared by the gateway, the stream workers and downstream consumers.

Nothing here imports FastAPI, aiokafka or Faust: models, normalisation and the one JSON path
(``schemas.codec``) that every topic's bytes go through.
"""

from schemas.alerts import Alert, AlertStatus, Rule, Severity
from schemas.codec import decode, encode
from schemas.events import BindingFailureEvent, DeadLetterRecord
from schemas.overview import Overview
from schemas.push import NxcloudPush, PushValidationError
from schemas.topics import ALERTS_TOPIC, BY_DID_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, OVERVIEW_TOPIC

__all__ = [
    "ALERTS_TOPIC",
    "BY_DID_TOPIC",
    "DLQ_TOPIC",
    "EVENTS_TOPIC",
    "OVERVIEW_TOPIC",
    "Alert",
    "AlertStatus",
    "BindingFailureEvent",
    "DeadLetterRecord",
    "NxcloudPush",
    "Overview",
    "PushValidationError",
    "Rule",
    "Severity",
    "decode",
    "encode",
]
