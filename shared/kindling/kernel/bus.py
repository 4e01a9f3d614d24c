"""What travels on the EventBridge bus, and the port that puts it there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class BusEvent(BaseModel):
    source: str
    detail_type: str
    detail: dict[str, Any]
    time: datetime | None = None

    def detail_json(self) -> str:
        return json.dumps(self.detail, separators=(",", ":"), default=str)


class EventPublisher(Protocol):
    def publish(self, events: Sequence[BusEvent]) -> None:
        """Hand every event to the bus durably, or raise ``Retryable``."""


class BusEnvelope(BaseModel):
    """The envelope EventBridge wraps around ``detail``; a queue target receives all of it.

    Only the fields every producer sets (the local emulator included) are required.
    Subclasses narrow ``detail`` to the model a consumer expects.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    detail_type: str = Field(alias="detail-type")
    source: str
    time: datetime
    detail: dict[str, Any]
