"""The report's S3 adapter on moto: objects land encrypted with their type; S3 failures are ReportWriteError."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from tests.local_aws import REGION, LocalAws
from usagewatch.errors import StoreError, UsagewatchError
from usagewatch.redaction import redactor
from usagewatch.reports import ReportWriteError, S3ReportWriter


@pytest.fixture
def s3(aws: LocalAws) -> Any:
    """moto's S3 (the integration fixture `aws`) with one bucket."""
    client = aws.client("s3")
    client.create_bucket(Bucket="reports", CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def test_objects_are_written_encrypted_with_their_content_type(s3: Any) -> None:
    writer = S3ReportWriter("reports", client=s3)
    writer.write_all(
        [
            ("reports/2026-11/billing-2026-11.csv", "customer,metric\nacme,seats\n", "text/csv; charset=utf-8"),
            ("reports/2026-11/billing-2026-11.html", "<p>Acmé: 3 seats</p>", "text/html; charset=utf-8"),
        ]
    )
    csv = s3.get_object(Bucket="reports", Key="reports/2026-11/billing-2026-11.csv")
    html = s3.get_object(Bucket="reports", Key="reports/2026-11/billing-2026-11.html")
    assert csv["Body"].read() == b"customer,metric\nacme,seats\n"
    assert csv["ContentType"] == "text/csv; charset=utf-8"
    assert csv["ServerSideEncryption"] == "aws:kms"
    assert html["Body"].read().decode() == "<p>Acmé: 3 seats</p>"
    assert writer.written == 2


def test_writing_a_key_again_replaces_the_object(s3: Any) -> None:
    writer = S3ReportWriter("reports", client=s3)
    writer.write("r.csv", "old", content_type="text/csv")
    writer.write("r.csv", "new", content_type="text/csv")
    assert s3.get_object(Bucket="reports", Key="r.csv")["Body"].read() == b"new"


def test_a_missing_bucket_is_a_report_write_error_chained_to_botocore(s3: Any) -> None:
    writer = S3ReportWriter("no-such-bucket", client=s3)
    with pytest.raises(ReportWriteError, match=r"S3 write of s3://no-such-bucket/r\.csv failed: .*NoSuchBucket") as err:
        writer.write("r.csv", "x", content_type="text/csv")
    assert isinstance(err.value, UsagewatchError) and not isinstance(err.value, StoreError)
    assert type(err.value.__cause__).__module__.startswith("botocore")
    assert writer.written == 0


def test_the_first_failure_stops_the_rest(s3: Any) -> None:
    writer = S3ReportWriter("reports", client=s3)
    with Stubber(s3) as stub:
        stub.add_response("put_object", {})
        stub.add_client_error("put_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(ReportWriteError, match="AccessDenied"):
            writer.write_all([("a", "1", "text/csv"), ("b", "2", "text/csv"), ("c", "3", "text/csv")])
        stub.assert_no_pending_responses()
    assert writer.written == 1


def test_a_registered_secret_never_reaches_the_error(aws: LocalAws) -> None:
    secret = "s3cr3t-token-value-123456"
    redactor.register(secret)
    try:
        writer = S3ReportWriter("no-such-bucket", client=aws.client("s3"))
        with pytest.raises(ReportWriteError) as err:
            writer.write(f"r/{secret}.csv", "x", content_type="text/csv")
    finally:
        redactor.clear()
    assert secret not in str(err.value) and "no-such-bucket" in str(err.value)
