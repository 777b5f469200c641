"""Transitions applied: publish first (a few at a time), then the run's digest of what was accepted, store after.
The one place both the pipeline and the lifecycle tests apply them, so a state advances only once its event and
the digest listing it were accepted, and a change whose state was not stored is computed again, with the same
event id, by the next run (and listed again in that run's digest)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

from usagewatch.alerts import Event, Transition
from usagewatch.errors import PublishError, StoreError
from usagewatch.observability import logger
from usagewatch.stored import AlertState
from usagewatch.text import clip_error

WORKERS: Final = 8


T = TypeVar("T")
R = TypeVar("R")


class Publisher(Protocol):
    def publish(self, event: Event) -> str: ...


class AlertWriter(Protocol):
    def put_alert(self, state: AlertState) -> bool: ...


@dataclass(frozen=True, slots=True)
class Dispatched:
    transition: Transition
    published: bool
    """Its event was accepted (False: it has none, or the publish failed)."""
    stored: bool
    """Its state was written (False: its publish failed, another run changed it first, or the write failed)."""


@dataclass
class DispatchResult:
    items: list[Dispatched] = field(default_factory=list)
    publish_failures: int = 0
    store_error: StoreError | None = None
    """The first write that failed: those states' events go out again, with the same ids, on the next run."""
    digest: Event | None = None
    """The digest of the accepted events, once SNS accepted it too."""
    digest_failed: bool = False
    """The digest was refused: the events it listed keep their states unstored, to be sent again next run."""

    @property
    def published(self) -> int:
        return sum(1 for item in self.items if item.published)


def _map(function: Callable[[T], R], items: Sequence[T], name: str, workers: int) -> list[R]:
    if len(items) <= 1 or workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        return list(pool.map(function, items))


@dataclass
class Dispatcher:
    publisher: Publisher
    store: AlertWriter
    workers: int = WORKERS

    def apply(
        self, transitions: Sequence[Transition], digest: Callable[[list[Event]], Event | None] | None = None
    ) -> DispatchResult:
        """Publish the events, then `digest(accepted events)` when given, then store the states.

        A digest that SNS refuses keeps the states of the events it lists unstored (their events go out again, with
        the same ids, next run, and with them a digest), so no stored change is missing from every digest."""
        events = [t.event for t in transitions if t.event is not None]
        errors = iter(_map(self._try_publish, events, "sns-publisher", self.workers))
        result = DispatchResult()
        accepted: list[tuple[Transition, bool]] = []
        for transition in transitions:
            if transition.event is None:
                accepted.append((transition, False))
                continue
            error = next(errors)
            if error is None:
                accepted.append((transition, True))
                continue
            result.publish_failures += 1
            result.items.append(Dispatched(transition, published=False, stored=False))
            logger.error(
                "alert not published; it will be retried next run",
                extra={"alert_id": transition.state.alert_id, "error": clip_error(error)},
            )
        if digest is not None:
            accepted = self._publish_digest(digest, accepted, result)
        written = _map(self._try_store, [t.state for t, _ in accepted], "alert-writer", self.workers)
        for (transition, published), outcome in zip(accepted, written, strict=True):
            if isinstance(outcome, StoreError):
                result.store_error = result.store_error or outcome
            elif not outcome:
                logger.warning(
                    "alert state changed by another run since it was read; the other run's state is kept",
                    extra={"alert_id": transition.state.alert_id},
                )
            result.items.append(Dispatched(transition, published=published, stored=outcome is True))
        if result.store_error is not None:
            logger.error(
                "alert states not stored; their events will be sent again with the same event ids",
                extra={"error": clip_error(str(result.store_error))},
            )
        order = {id(t): n for n, t in enumerate(transitions)}
        result.items.sort(key=lambda item: order[id(item.transition)])
        return result

    def _publish_digest(
        self,
        digest: Callable[[list[Event]], Event | None],
        accepted: list[tuple[Transition, bool]],
        result: DispatchResult,
    ) -> list[tuple[Transition, bool]]:
        body = digest([t.event for t, published in accepted if published and t.event is not None])
        if body is None:
            return accepted
        error = self._try_publish(body)
        if error is None:
            result.digest = body
            return accepted
        result.digest_failed = True
        result.publish_failures += 1
        logger.error(
            "digest not published; the changes it lists are sent again next run",
            extra={"event_id": body["event_id"], "error": clip_error(error)},
        )
        held = [t for t, published in accepted if published]
        result.items += [Dispatched(t, published=True, stored=False) for t in held]
        return [(t, published) for t, published in accepted if not published]

    def _try_store(self, state: AlertState) -> bool | StoreError:
        try:
            return self.store.put_alert(state)
        except StoreError as exc:
            return exc

    def _try_publish(self, event: Event) -> str | None:
        try:
            self.publisher.publish(event)
        except PublishError as exc:
            return str(exc)
        return None
