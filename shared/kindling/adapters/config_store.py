"""Applied configuration in the single table: immutable numbered versions and a pointer.

  CONFIG#<kind> / v000042   one applied version (JSON text, its hash, when it was applied)
  CONFIG#<kind> / CURRENT   which version is in force

Handlers read the pointer once per invocation and the version itself only when it
changed, so a newly applied version is in force for the next batch, without a redeploy.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel

from kindling.adapters import aws
from kindling.kernel.clock import isoformat
from kindling.kernel.errors import Conflict, NotFound

M = TypeVar("M", bound=BaseModel)


def _key(kind: str, sort: str) -> dict[str, Any]:
    return {"PK": {"S": f"CONFIG#{kind}"}, "SK": {"S": sort}}


def canonical_json(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def document_digest(document: dict[str, Any]) -> str:
    """What identifies a config version's content: applying the same document again changes nothing."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


class DynamoConfigStore(aws.TableAdapter):
    def current_version(self, kind: str) -> int | None:
        item = self.client.get_item(
            TableName=self._table, Key=_key(kind, "CURRENT"), ConsistentRead=True
        ).get("Item")
        return int(item["version"]["N"]) if item else None

    def load(self, kind: str, version: int) -> tuple[dict[str, Any], str]:
        item = self.client.get_item(
            TableName=self._table, Key=_key(kind, f"v{version:06d}"), ConsistentRead=True
        ).get("Item")
        if not item:
            raise NotFound(f"{kind} config version {version} does not exist")
        return json.loads(item["document"]["S"]), item["sha256"]["S"]

    def apply(self, kind: str, document: dict[str, Any], applied_at: datetime) -> tuple[int, bool]:
        """Store ``document`` as the next version unless it is what is in force: (version, changed)."""
        text = canonical_json(document)
        digest = document_digest(document)
        current = self.current_version(kind)
        if current is not None and self.load(kind, current)[1] == digest:
            return current, False
        version = (current or 0) + 1
        pointer_condition = "attribute_not_exists(PK)" if current is None else "version = :current"
        pointer: dict[str, Any] = {
            "Put": {
                "TableName": self._table,
                "Item": {**_key(kind, "CURRENT"), "version": {"N": str(version)}},
                "ConditionExpression": pointer_condition,
            }
        }
        if current is not None:
            pointer["Put"]["ExpressionAttributeValues"] = {":current": {"N": str(current)}}
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                **_key(kind, f"v{version:06d}"),
                                "version": {"N": str(version)},
                                "document": {"S": text},
                                "sha256": {"S": digest},
                                "applied_at": {"S": isoformat(applied_at)},
                            },
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                    pointer,
                ]
            )
        except ClientError as exc:
            if aws.error_code(exc) == "TransactionCanceledException":
                raise Conflict(f"another {kind} config was applied at the same time; apply again") from exc
            raise aws.translate(exc, "config: apply") from exc
        return version, True


class ConfigCache(Generic[M]):
    """The version in force, re-read only when the pointer moves.

    Handlers call ``refresh()`` once per invocation (one small read per batch); a new
    version is then in force from the next batch on.
    """

    def __init__(self, store: DynamoConfigStore, kind: str, model: type[M]) -> None:
        self._store = store
        self._kind = kind
        self._model = model
        self._cached: tuple[int, M] | None = None
        self._fresh = False

    def refresh(self) -> None:
        self._fresh = False

    def current(self) -> tuple[int, M]:
        if self._fresh and self._cached is not None:
            return self._cached
        version = self._store.current_version(self._kind)
        if version is None:
            raise NotFound(f"no {self._kind} config has been applied: run `kindling config apply`")
        if self._cached is None or self._cached[0] != version:
            document, _ = self._store.load(self._kind, version)
            self._cached = (version, self._model.model_validate(document))
        self._fresh = True
        return self._cached


class EmailConfig:
    """The email settings and templates in force, for the sender."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        from kindling.email.config import EmailSettings, EmailTemplates

        store = DynamoConfigStore(table_name, client)
        self._settings = ConfigCache(store, "email", EmailSettings)
        self._templates = ConfigCache(store, "templates", EmailTemplates)

    def refresh(self) -> None:
        self._settings.refresh()
        self._templates.refresh()

    def email(self) -> Any:
        return self._settings.current()[1]

    def templates(self) -> dict[str, Any]:
        return dict(self._templates.current()[1].templates)


class ProgramsConfig:
    """Programs, segments and the scoring decay in force, for the program functions.

    Nothing applied yet means no programs and no segments: leads simply enrol in nothing.
    """

    def __init__(self, table_name: str, client: Any = None) -> None:
        from kindling.programs.config import Programs, Segments
        from kindling.scoring.config import ScoringConfig

        store = DynamoConfigStore(table_name, client)
        self._programs = ConfigCache(store, "programs", Programs)
        self._segments = ConfigCache(store, "segments", Segments)
        self._scoring = ConfigCache(store, "scoring", ScoringConfig)
        self._empty_programs = Programs()
        self._empty_segments = Segments()

    def refresh(self) -> None:
        for cache in (self._programs, self._segments, self._scoring):
            cache.refresh()

    def programs(self) -> Any:
        try:
            return self._programs.current()[1]
        except NotFound:
            return self._empty_programs

    def segments(self) -> Any:
        try:
            return self._segments.current()[1]
        except NotFound:
            return self._empty_segments

    def decay(self) -> Any:
        try:
            return self._scoring.current()[1].engagement.decay
        except NotFound:
            return None

    def event_window_days(self) -> int:
        from kindling.programs.config import event_window_days

        return event_window_days(self.programs(), self.segments())


class CrmPolicy:
    """The sales policy of ``config/crm.yaml``: quiet stages, silence limits, recycling.

    Read through the one validated model (``kindling.crm.config.CrmConfig``) the webhooks
    use too; with no crm config applied there are no quiet stages, and nothing is
    reactivated or recycled.
    """

    def __init__(self, table_name: str, client: Any = None) -> None:
        from kindling.crm.config import CrmConfig

        self._cache = ConfigCache(DynamoConfigStore(table_name, client), "crm", CrmConfig)
        self._config = CrmConfig()

    def refresh(self) -> None:
        from kindling.crm.config import CrmConfig

        try:
            self._cache.refresh()
            self._config = self._cache.current()[1]
        except NotFound:
            self._config = CrmConfig()

    def is_quiet(self, stage: str | None) -> bool:
        return stage is not None and stage in self._config.quiet_stages

    def lifecycle_stage(self, provider: str, crm_stage: str) -> str | None:
        return self._config.lifecycle_stage(provider, crm_stage)  # type: ignore[arg-type]

    def max_silence(self, stage: str | None) -> timedelta | None:
        reactivation = self._config.reactivation
        if reactivation is None or stage is None:
            return None
        days = {str(name): value for name, value in reactivation.max_silence_days.items()}.get(stage)
        return timedelta(days=days) if days else None

    def reactivation_program(self) -> str | None:
        return self._config.reactivation.program if self._config.reactivation else None

    def cooling_off(self) -> timedelta | None:
        recycle = self._config.recycle
        return timedelta(days=recycle.cooling_off_days) if recycle else None
