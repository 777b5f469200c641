"""SNS publisher: the contract's JSON for every protocol, a readable text for email (MessageStructure=json)."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Final

from usagewatch import aws
from usagewatch.alerts import Event
from usagewatch.continuation import WorkItem
from usagewatch.errors import PublishError
from usagewatch.events import DIGEST, parse_event
from usagewatch.notify import chat_message, render_email, subject_for
from usagewatch.observability import logger
from usagewatch.redaction import redactor

if TYPE_CHECKING:
    from mypy_boto3_sns.client import SNSClient
    from mypy_boto3_sqs.client import SQSClient

ATTRIBUTES: Final = ("event_type", "vendor", "severity", "rule", "tenant_id", "customer_id")


def message_attributes(event: Event) -> dict[str, dict[str, str]]:
    """String attributes for filter policies; an attribute with no value (a whole-account failure has no
    tenant, a collection event no rule) is left out, since SNS refuses empty values."""
    return {
        name: {"DataType": "String", "StringValue": str(event[name])}
        for name in ATTRIBUTES
        if event.get(name) not in (None, "")
    }


def for_chat(event: Event) -> bool:
    """Chat gets the digests and the critical events (as they happen), nothing else."""
    return event.get("event_type") == DIGEST or event.get("severity") == "critical"


def scrub_event(event: Event) -> Event:
    """Last line of defence: no registered secret leaves in an event."""
    return {k: redactor.scrub(v) if isinstance(v, str) else v for k, v in event.items()}


class SnsPublisher:
    """The alert topic; with `chat_topic_arn`, digests and critical events also go to the chat topic as AWS
    Chatbot custom notifications (best effort: the alert topic is the record, chat a copy for people)."""

    def __init__(self, topic_arn: str, *, client: SNSClient | None = None, chat_topic_arn: str | None = None) -> None:
        self.topic_arn = topic_arn
        self.chat_topic_arn = chat_topic_arn
        self._client = client
        self._lock = threading.Lock()
        self.published = 0
        self.chat_failures = 0

    @property
    def client(self) -> SNSClient:
        with self._lock:
            return self._sns()

    def _sns(self) -> SNSClient:
        if self._client is None:
            self._client = aws.client("sns")
        return self._client

    def publish(self, event: Event, *, email: str | None = None) -> str:
        """Publish one event; PublishError when SNS did not accept it (the caller keeps the state as it was).

        The body is the event's model (events.py) as JSON: an event the schema does not describe is refused.
        `email` replaces the alert e-mail text for an event that is not an alert (the billing report)."""
        try:
            event = parse_event(scrub_event(event)).body()
        except ValueError as exc:
            raise PublishError(f"not a valid usagewatch event: {type(exc).__name__}: {exc}") from exc
        body = json.dumps(event, separators=(",", ":"))
        text = render_email(event) if email is None else redactor.scrub(email)
        message = json.dumps({"default": body, "email": text})
        try:
            answer: dict[str, Any] = self.client.publish(  # type: ignore[assignment]
                TopicArn=self.topic_arn,
                Message=message,
                MessageStructure="json",
                Subject=subject_for(event),
                MessageAttributes=message_attributes(event),  # type: ignore[arg-type]
            )
        except Exception as exc:
            raise PublishError(f"SNS publish failed: {type(exc).__name__}: {exc}") from exc
        with self._lock:
            self.published += 1
        if self.chat_topic_arn and for_chat(event):
            self._publish_chat(self.chat_topic_arn, event)
        return str(answer.get("MessageId", ""))

    def _publish_chat(self, topic_arn: str, event: Event) -> None:
        try:
            self.client.publish(TopicArn=topic_arn, Message=json.dumps(chat_message(event)))
        except Exception as exc:
            with self._lock:
                self.chat_failures += 1
            logger.error(
                "chat notification not published (the event itself was)",
                extra={"event_id": event.get("event_id"), "error": redactor.scrub(f"{type(exc).__name__}: {exc}")},
            )


class SqsWorkQueue:
    """Sends continuation chunks to the FIFO work queue that feeds the same function."""

    def __init__(self, queue_url: str, *, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def send(self, item: WorkItem) -> None:
        try:
            self.client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=item.to_json(),
                MessageGroupId=item.group_id,
                MessageDeduplicationId=item.deduplication_id,
            )
        except Exception as exc:
            raise PublishError(f"SQS send failed: {type(exc).__name__}: {exc}") from exc
