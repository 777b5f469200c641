"""Alerts: one item per (tenant, period, metric, rule) with optimistic versions; the firing ones also in the sparse
index gsi1, so a run reads only those (keys: docs/data-model.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any, Final

from usagewatch.store.table import Table, key_part, known_fields, serialize
from usagewatch.stored import AlertState

AlertKey = tuple[str, str, str, str]
"""(tenant_id, period, metric, rule): an alert item's sort key, in order."""

_ALERT_FIELDS: Final = frozenset(f.name for f in fields(AlertState))


def alert_state(item: Mapping[str, Any]) -> AlertState:
    return AlertState(**known_fields(item, _ALERT_FIELDS))


def alert_pk(vendor: str, account_id: str) -> str:
    return f"ALERT#{vendor}#{account_id}"


def alert_sk(key: AlertKey) -> str:
    return "#".join((key_part(key[0]), *key[1:]))


class AlertTable(Table):
    """The alert room of the store."""

    def put_alert(self, state: AlertState) -> bool:
        """Store one alert state if nobody changed it since it was read (optimistic concurrency).

        `state.version` is the stored version it replaces (0: a state not read, which may only replace
        one that is not firing, or an item written before versions existed); the item gets version + 1.
        False when another run got there first: its state is kept.
        """
        attributes: dict[str, object] = {
            "pk": alert_pk(state.vendor, state.account_id),
            "sk": alert_sk((state.tenant_id, state.period, state.metric, state.rule)),
            "record_type": "alert",
            **asdict(state),
            "version": state.version + 1,
        }
        if state.status == "firing":
            attributes["gsi1pk"] = f"OPEN#{state.vendor}#{state.account_id}"
            attributes["gsi1sk"] = state.alert_id
        if state.version:
            condition = "#version = :expected"
            values: dict[str, Any] = {":expected": {"N": str(state.version)}}
        else:
            condition = "attribute_not_exists(pk) OR attribute_not_exists(#version) OR #status <> :firing"
            values = {":firing": {"S": "firing"}}
        names = {"#version": "version"} | ({} if state.version else {"#status": "status"})
        self._count(1, 0)
        written = self._call(
            "put_item",
            "write",
            conditional=True,
            Item=serialize(attributes),
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ExpressionAttributeNames=names,
        )
        if written is None:
            return False
        self._count(0, 1)
        return True

    def alert_states(self, vendor: str, account_id: str, keys: Iterable[AlertKey]) -> dict[str, AlertState]:
        """The stored state (any status) of the given alerts, by BatchGetItem: one call per 100 keys."""
        pk = alert_pk(vendor, account_id)
        items = self.get_items([(pk, alert_sk(key)) for key in sorted(set(keys))])
        states = (alert_state(item) for item in items.values())
        return {state.alert_id: state for state in states}

    def open_alerts(self, vendor: str, account_id: str) -> dict[str, AlertState]:
        """Every firing alert (thresholds and collection failures) of one account, from the sparse index."""
        states: dict[str, AlertState] = {}
        for item in self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"OPEN#{vendor}#{account_id}"}},
        ):
            state = alert_state(item)
            states[state.alert_id] = state
        return states

    def tenant_alerts(self, vendor: str, account_id: str, tenant_id: str) -> list[AlertState]:
        """The alert state of one tenant (every rule, metric and period; firing or not)."""
        return [
            alert_state(item)
            for item in self._query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": alert_pk(vendor, account_id)},
                    ":prefix": {"S": f"{key_part(tenant_id)}#"},
                },
            )
        ]
