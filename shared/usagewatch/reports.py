"""The monthly report's S3 writes: a small adapter beside the SNS publisher (publisher.py).

Every object goes to the stack's private bucket encrypted with KMS (`aws:kms`); any failure of S3 (refused,
unreachable, no such bucket) surfaces as a `ReportWriteError`, chained to botocore's error, its text scrubbed of
registered secrets. Writing the same key again replaces the object (the bucket keeps earlier versions), so a
report that failed half-way is simply written again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from usagewatch import aws
from usagewatch.errors import UsagewatchError
from usagewatch.redaction import redactor

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class ReportWriteError(UsagewatchError):
    """A report object could not be written to S3."""


class S3ReportWriter:
    """Writes report objects (CSV, HTML) to one bucket."""

    def __init__(self, bucket: str, *, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self._client = client
        self._lock = threading.Lock()
        self.written = 0

    @property
    def client(self) -> S3Client:
        with self._lock:
            if self._client is None:
                self._client = aws.client("s3")
            return self._client

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def write(self, key: str, body: str, *, content_type: str) -> None:
        """One object, UTF-8, KMS-encrypted; ReportWriteError when S3 did not take it."""
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body.encode(),
                ContentType=content_type,
                ServerSideEncryption="aws:kms",
            )
        except Exception as exc:
            message = f"S3 write of {self.url(key)} failed: {type(exc).__name__}: {exc}"
            raise ReportWriteError(redactor.scrub(message)) from exc
        with self._lock:
            self.written += 1

    def write_all(self, objects: Sequence[tuple[str, str, str]]) -> None:
        """Each (key, body, content type) in order; the first failure stops and is raised."""
        for key, body, content_type in objects:
            self.write(key, body, content_type=content_type)
