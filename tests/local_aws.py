"""Local AWS for tests and the demo: the template's table, topic and a subscriber queue, secrets, rules.

Works the same against moto in-process (`mock_aws`) and a moto server on loopback (the demo): it only
uses boto3 clients, which pick up `AWS_ENDPOINT_URL` when it is set.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
from moto import mock_aws
from moto.core.models import MockAWS

from tests.template_loader import function_environment, table_definition, ttl_attribute
from usagewatch import registry
from usagewatch.store import DynamoStore, deserialize

REGION = "eu-west-1"


def in_process_aws() -> MockAWS:
    """moto in this process, keeping boto3's default session from one test to the next. By default moto replaces
    that session at every start, and a new session reads botocore's service models from disk again: about a tenth
    of an integration test's CPU (docs/performance.md: Test time). Fault hooks are registered on that session and
    removed by the test that adds them (tests/faults/harness.py: boto_hook)."""
    return mock_aws(config={"core": {"reset_boto3_session": False}})


@dataclass
class LocalAws:
    table_name: str
    topic_arn: str
    queue_url: str
    work_queue_url: str = ""
    rules_parameter: str | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    chat_topic_arn: str = ""
    chat_queue_url: str = ""
    digests: list[dict[str, Any]] = field(default_factory=list)
    """Digests the subscriber queue received, kept apart from the alert events by drain_events."""

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=REGION)
        return self.clients[service]

    def environment(self, vendor: str, *, secret_name: str | None = None, chat: bool = False) -> dict[str, str]:
        """The function's environment exactly as template.yaml gives it, resolved against these resources."""
        parameters = {"AWS::Region": REGION, "AWS::AccountId": "123456789012"}
        if chat:
            parameters["ChatNotifications"] = "true"
        if secret_name is not None:
            parameters[registry.vendor(vendor).secret_parameter] = secret_name
        if self.rules_parameter is not None:
            parameters["AlertRulesParameterName"] = self.rules_parameter
        return function_environment(
            registry.vendor(vendor).function_name,
            resources={
                "UsageTable": self.table_name,
                "AlertTopic": self.topic_arn,
                "GravityZoneWorkQueue": self.work_queue_url,
                "ChatTopic": self.chat_topic_arn,
            },
            parameters=parameters,
        )

    def put_secret(self, name: str, accounts: list[dict[str, Any]] | str) -> None:
        text = accounts if isinstance(accounts, str) else json.dumps({"accounts": accounts})
        sm = self.client("secretsmanager")
        try:
            sm.create_secret(Name=name, SecretString=text)
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=name, SecretString=text)

    def put_rules(self, name: str, document: dict[str, Any] | str) -> None:
        text = document if isinstance(document, str) else json.dumps(document)
        self.client("ssm").put_parameter(Name=name, Value=text, Type="String", Overwrite=True)
        self.rules_parameter = name

    def drain_events(self) -> list[dict[str, Any]]:
        """Every alert event the topic delivered to the subscriber queue since the last drain; the digests
        among them are kept in `digests` (drain_digests)."""
        events: list[dict[str, Any]] = []
        for body in self.drain_queue(self.queue_url):
            (self.digests if body.get("event_type") == "digest" else events).append(body)
        return events

    def drain_digests(self) -> list[dict[str, Any]]:
        """Every digest the subscriber queue received since the last call (the alert events are dropped)."""
        self.drain_events()
        digests, self.digests = self.digests, []
        return digests

    def drain_chat(self) -> list[dict[str, Any]]:
        """Every message the chat topic delivered (raw) since the last drain."""
        return self.drain_queue(self.chat_queue_url)

    def drain_queue(self, queue_url: str) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        bodies: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = answer.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def store(self) -> DynamoStore:
        return DynamoStore(self.table_name, client=self.client("dynamodb"))

    def usage(self, period: str, vendor: str | None = None) -> list[dict[str, Any]]:
        """Usage items of one period, read the way the product reads them (a Query)."""
        return [usage.row() for usage in self.store().period_usage(period, vendor=vendor)]

    def totals(self, period: str) -> list[dict[str, Any]]:
        return [asdict(total) for total in self.store().period_totals(period)]

    def count(self) -> int:
        """How many items the table holds (a COUNT Scan: tests only)."""
        answer = self.client("dynamodb").scan(TableName=self.table_name, Select="COUNT")
        return int(answer["Count"])

    def work_messages(self) -> list[dict[str, Any]]:
        """Take every message waiting on the work queue, as the SQS event records Lambda would receive."""
        sqs = self.client("sqs")
        records: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(
                QueueUrl=self.work_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
            )
            messages = answer.get("Messages", [])
            if not messages:
                return records
            for message in messages:
                records.append(sqs_record(message, queue_arn=self.work_queue_arn()))
                sqs.delete_message(QueueUrl=self.work_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def work_queue_arn(self) -> str:
        answer = self.client("sqs").get_queue_attributes(QueueUrl=self.work_queue_url, AttributeNames=["QueueArn"])
        return str(answer["Attributes"]["QueueArn"])

    def items(self, record_type: str | None = None) -> list[dict[str, Any]]:
        """Every item of the table (a Scan: slow under moto, for tests only, never in the product)."""
        ddb = self.client("dynamodb")
        found: list[dict[str, Any]] = []
        for page in ddb.get_paginator("scan").paginate(TableName=self.table_name):
            found += [deserialize(item) for item in page["Items"]]
        return [i for i in found if record_type is None or i.get("record_type") == record_type]


def sqs_record(message: dict[str, Any], *, queue_arn: str) -> dict[str, Any]:
    """One received SQS message as the record Lambda's event source mapping delivers."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message.get("ReceiptHandle", ""),
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "1795000000000"),
            "SenderId": attributes.get("SenderId", "AIDAEXAMPLE"),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "1795000000000"),
            **{
                k: attributes[k]
                for k in ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber")
                if k in attributes
            },
        },
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


def provision(table_name: str = "usagewatch-usage", topic_name: str = "usagewatch-alerts") -> LocalAws:
    """Create what `sam deploy` would: the table from template.yaml, the topic, and a raw-delivery queue."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(**table_definition(table_name=table_name))
    ttl = ttl_attribute()
    if ttl:
        ddb.update_time_to_live(TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})
    sns = boto3.client("sns", region_name=REGION)
    topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"{topic_name}-subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    # The chat topic (ChatNotifications), with a raw queue standing in for AWS Chatbot.
    chat_topic_arn = sns.create_topic(Name=f"{topic_name}-chat")["TopicArn"]
    chat_queue_url = sqs.create_queue(QueueName=f"{topic_name}-chat-subscriber")["QueueUrl"]
    chat_queue_arn = sqs.get_queue_attributes(QueueUrl=chat_queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=chat_topic_arn, Protocol="sqs", Endpoint=chat_queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    work_queue_url = sqs.create_queue(
        QueueName=f"{table_name}-gravityzone-work.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    return LocalAws(
        table_name,
        topic_arn,
        queue_url,
        work_queue_url,
        clients={"dynamodb": ddb, "sns": sns, "sqs": sqs},
        chat_topic_arn=chat_topic_arn,
        chat_queue_url=chat_queue_url,
    )
