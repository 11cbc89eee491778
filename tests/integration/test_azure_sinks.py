"""The two Log Analytics sinks over HTTPS to the local fakes: azure-monitor-ingestion's LogsIngestionClient
(managed identity token, gzip, 1 MiB chunks, SDK retries) and the Data Collector API with requests (SharedKey
signature recomputed by the fake from the raw bytes, 30 MB bodies, bounded retries)."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.azure.identity import build_credential
from shared.delivery.data_collector_sink import MAX_POST_BYTES, DataCollectorSink, signature, split_bodies
from shared.delivery.logs_ingestion_sink import LogsIngestionSink
from shared.delivery.outbox import FileOutbox, decode_rows
from shared.delivery.reliable_sink import ReliableSink
from shared.errors import SinkError
from shared.records import KEYS_TABLE, RUNS_TABLE
from tests.support.azure_fakes import (  # noqa: F401 - fixtures
    DATA_COLLECTOR_DOMAIN,
    MONITOR_RESOURCE,
    WORKSPACE_ID,
    AzureFakes,
    Response,
    azure_fixture,
    fake_tls_fixture,
)

RULE_ID = "dcr-0123456789abcdef0123456789abcdef"  # one of the rule ids the fake's rule answers to (RULE_IDS)
KEYS_STREAM = "Custom-AwsIamAccessKeys"
RUNS_STREAM = "Custom-AwsIamKeyCollectorRuns"


def key_row(i: int, user: str = "alice", pad: int = 0) -> dict[str, Any]:
    return {"TimeGenerated": "2026-01-02T03:04:05Z", "RunId": "run-1", "AccountId": "123456789012",
            "UserName": user, "AccessKeyId": f"AKIA...{i:04d}", "AgeDays": i, "NeverUsed": i % 2 == 0,
            "LastUsedAt": None, "UserArn": "x" * pad}


# ---------------------------------------------------------------------------------------------- logs_ingestion


def ingestion_sink(azure: AzureFakes) -> LogsIngestionSink:
    credential = build_credential(None, azure.options())
    return LogsIngestionSink(azure.ingestion.url, RULE_ID, KEYS_STREAM, RUNS_STREAM, credential, azure.options())


def test_logs_ingestion_delivers_each_table_to_its_stream(azure: AzureFakes) -> None:
    sink = ingestion_sink(azure)
    rows = [key_row(i, user) for i, user in enumerate(["alice", "jürgen", "山田"])]
    sink.send(KEYS_TABLE, rows)
    sink.send(RUNS_TABLE, [{"RunId": "run-1", "Status": "Succeeded"}])
    sink.send(KEYS_TABLE, [])  # nothing to send: no request
    sink.close()
    assert azure.ingestion.rows(KEYS_STREAM) == rows
    assert azure.ingestion.rows(RUNS_STREAM) == [{"RunId": "run-1", "Status": "Succeeded"}]
    assert {u.rule_id for u in azure.ingestion.uploads} == {RULE_ID} and len(azure.ingestion.uploads) == 2
    # one token from the managed identity for Azure Monitor, reused for both uploads
    assert [r.query["resource"] for r in azure.identity.requests] == [MONITOR_RESOURCE]


def test_logs_ingestion_chunks_at_one_mebibyte(azure: AzureFakes) -> None:
    sink = ingestion_sink(azure)
    rows = [key_row(i, pad=990) for i in range(2600)]  # about 2.9 MB of JSON
    sink.send(KEYS_TABLE, rows)
    sink.close()
    uploads = azure.ingestion.uploads
    assert len(uploads) == 3
    assert [r for u in uploads for r in u.rows] == rows  # all, in order, none twice
    assert all(len(json.dumps(u.rows).encode()) <= 1024 * 1024 + 2 * len(u.rows) for u in uploads)


def test_logs_ingestion_waits_for_retry_after_then_succeeds(azure: AzureFakes) -> None:
    azure.ingestion.faults.add(Response.json(429, {"error": {"code": "TooManyRequests", "message": "slow down"}},
                                             {"Retry-After": "1"}))
    sink = ingestion_sink(azure)
    started = time.monotonic()
    sink.send(KEYS_TABLE, [key_row(1)])
    elapsed = time.monotonic() - started
    sink.close()
    assert azure.ingestion.rows(KEYS_STREAM) == [key_row(1)]
    posts = [r for r in azure.ingestion.requests if r.method == "POST"]
    assert len(posts) == 2 and 0.9 <= elapsed < 5


def test_logs_ingestion_retries_a_post_throttled_without_retry_after(azure: AzureFakes) -> None:
    """azure-core retries a POST only on 500/503/504 by default; the sink opts in to 429 as well."""
    azure.ingestion.faults.add(Response.json(429, {"error": {"code": "TooManyRequests", "message": "slow down"}}))
    sink = ingestion_sink(azure)
    sink.send(KEYS_TABLE, [key_row(1)])
    sink.close()
    assert azure.ingestion.rows(KEYS_STREAM) == [key_row(1)]


def test_logs_ingestion_reports_failed_chunks_and_delivers_the_rest(azure: AzureFakes) -> None:
    rows = [key_row(i, pad=1000) for i in range(2600)]
    rejected = {"count": 0}

    def reject(stream: str, chunk: list[dict[str, Any]]) -> Response | None:
        if any(r["AgeDays"] == 1500 for r in chunk):
            rejected["count"] = len(chunk)
            return Response.json(400, {"error": {"code": "InvalidStream", "message": "schema mismatch"}})
        return None

    azure.ingestion.reject = reject
    sink = ingestion_sink(azure)
    with pytest.raises(SinkError) as caught:
        sink.send(KEYS_TABLE, rows)
    sink.close()
    assert 0 < rejected["count"] < len(rows)
    assert caught.value.undelivered == rejected["count"]
    assert len(azure.ingestion.rows(KEYS_STREAM)) == len(rows) - rejected["count"]
    message = str(caught.value)
    assert f"{rejected['count']} of 2600 row(s)" in message and KEYS_STREAM in message and RULE_ID in message
    assert "HTTP 400" in message and "stream declared in the data collection rule" in message


def test_logs_ingestion_denied_names_the_role(azure: AzureFakes) -> None:
    azure.ingestion.faults.add(Response.json(403, {"error": {"code": "OperationFailed", "message": "no access"}}))
    sink = ingestion_sink(azure)
    with pytest.raises(SinkError) as caught:
        sink.send(RUNS_TABLE, [{"RunId": "run-1"}])
    sink.close()
    assert caught.value.undelivered == 1
    assert "HTTP 403" in str(caught.value) and "'Monitoring Metrics Publisher'" in str(caught.value)
    for token in azure.identity.tokens():
        assert token not in str(caught.value)


# ---------------------------------------------------------------------------------------------- data_collector


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def collector_sink(azure: AzureFakes, **kwargs: Any) -> DataCollectorSink:
    return DataCollectorSink(WORKSPACE_ID, azure.collector.shared_key, DATA_COLLECTOR_DOMAIN, azure.options(),
                             **kwargs)


def test_signature_matches_the_documented_example_form() -> None:
    """The string to sign is VERB, byte length, content type, x-ms-date and the resource, one per line."""
    import hashlib
    import hmac

    key = base64.b64encode(b"k" * 64).decode()
    date = "Mon, 04 Apr 2016 08:00:00 GMT"
    expected = base64.b64encode(hmac.new(
        b"k" * 64, b"POST\n1024\napplication/json\nx-ms-date:Mon, 04 Apr 2016 08:00:00 GMT\n/api/logs", hashlib.sha256
    ).digest()).decode()
    assert signature(base64.b64decode(key), date, 1024) == expected


def test_data_collector_signs_the_utf8_byte_length_with_non_ascii_names(azure: AzureFakes) -> None:
    sink = collector_sink(azure)
    rows = [key_row(1, "jürgen"), key_row(2, "山田"), key_row(3, "zoë 🚀"), key_row(4, "lone \ud800 surrogate")]
    sink.send(KEYS_TABLE, rows)
    sink.send(RUNS_TABLE, [{"RunId": "run-1", "Status": "Succeeded"}])
    sink.close()
    assert azure.collector.bad_signatures == 0
    assert azure.collector.rows("AwsIamAccessKeys") == rows
    assert azure.collector.rows("AwsIamKeyCollectorRuns") == [{"RunId": "run-1", "Status": "Succeeded"}]
    (post, _) = azure.collector.requests
    body = post.body.decode("utf-8")
    assert len(post.body) > len(body)  # the signed length is in bytes, not characters
    assert "jürgen" in body and "山田" in body  # sent as UTF-8, not \\u escapes
    assert post.headers["host"] == f"{WORKSPACE_ID}.{DATA_COLLECTOR_DOMAIN}"


def test_data_collector_wrong_key_is_refused_once_with_a_hint(azure: AzureFakes) -> None:
    wrong = base64.b64encode(b"w" * 64).decode()
    sink = DataCollectorSink(WORKSPACE_ID, wrong, DATA_COLLECTOR_DOMAIN, azure.options(), sleep=Sleeps())
    with pytest.raises(SinkError) as caught:
        sink.send(KEYS_TABLE, [key_row(1), key_row(2)])
    sink.close()
    assert azure.collector.bad_signatures == 1  # not retried
    assert caught.value.undelivered == 2
    message = str(caught.value)
    assert "HTTP 403" in message and "InvalidAuthorization" in message
    assert "LOG_ANALYTICS_WORKSPACE_KEY_SECRET" in message
    assert wrong not in message
    assert "retired" not in message  # a refused signature is not the API's retirement


def test_data_collector_splits_bodies_under_the_limit(azure: AzureFakes) -> None:
    sink = collector_sink(azure, max_post_bytes=2000)
    rows = [key_row(i, "山田", pad=100) for i in range(40)]
    sink.send(KEYS_TABLE, rows)
    sink.close()
    posts = azure.collector.posts
    assert len(posts) > 3 and all(p.body_bytes <= 2000 for p in posts)
    assert azure.collector.rows("AwsIamAccessKeys") == rows and azure.collector.bad_signatures == 0


def test_data_collector_at_the_real_30_mb_limit(azure: AzureFakes) -> None:
    sink = collector_sink(azure)
    rows = [key_row(i, pad=3000) for i in range(10_500)]  # about 32 MB of JSON
    sink.send(KEYS_TABLE, rows)
    sink.close()
    sizes = [p.body_bytes for p in azure.collector.posts]
    assert len(sizes) == 2 and max(sizes) <= MAX_POST_BYTES and sizes[0] > MAX_POST_BYTES - 4000
    assert len(azure.collector.rows("AwsIamAccessKeys")) == len(rows)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=30), max_size=4), max_size=25),
    limit=st.integers(min_value=60, max_value=600),
)
def test_split_bodies_keeps_every_row_in_order_under_the_limit(rows: list[dict[str, str]], limit: int) -> None:
    sizes = [len(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()) + 2 for r in rows]
    if any(size > limit for size in sizes):  # a row no body can carry is an error, never dropped
        with pytest.raises(SinkError):
            list(split_bodies(rows, limit))
        return
    bodies = list(split_bodies(rows, limit))
    assert all(len(body) <= limit for body, _ in bodies)
    assert [r for body, _ in bodies for r in json.loads(body.decode("utf-8"))] == rows
    assert [len(json.loads(body)) for body, _ in bodies] == [count for _, count in bodies]


def test_data_collector_row_larger_than_a_post_is_an_error(azure: AzureFakes) -> None:
    sink = collector_sink(azure, max_post_bytes=500)
    rows = [key_row(1), key_row(2), key_row(3), key_row(4, pad=600), key_row(5)]
    with pytest.raises(SinkError) as caught:
        sink.send(KEYS_TABLE, rows)
    sink.close()
    delivered = azure.collector.rows("AwsIamAccessKeys")
    assert delivered == rows[: len(delivered)] and len(delivered) < 3
    assert caught.value.undelivered == len(rows) - len(delivered)  # counted exactly, nothing dropped silently
    assert "row 3 is" in str(caught.value) and "more than one post may carry (500)" in str(caught.value)


def test_data_collector_honours_retry_after_then_succeeds(azure: AzureFakes) -> None:
    azure.collector.faults.add(
        Response.json(429, {"Error": "TooManyRequests", "Message": "throttled"}, {"Retry-After": "7"}),
        Response.json(503, {"Error": "ServiceUnavailable", "Message": "busy"}),
        Response.json(500, {"Error": "InternalError", "Message": "oops"}, {"Retry-After": "3600"}),
    )
    sleeps = Sleeps()
    sink = collector_sink(azure, sleep=sleeps)
    sink.send(KEYS_TABLE, [key_row(1)])
    sink.close()
    assert sleeps == [7.0, 2.0, 60.0]  # Retry-After; exponential backoff without it; a long Retry-After capped
    assert azure.collector.rows("AwsIamAccessKeys") == [key_row(1)]
    assert azure.collector.bad_signatures == 0  # each attempt re-signed


def test_data_collector_gives_up_after_bounded_attempts(azure: AzureFakes) -> None:
    azure.collector.faults.add(*[Response.json(503, {"Error": "ServiceUnavailable", "Message": "busy"})] * 6)
    sleeps = Sleeps()
    sink = collector_sink(azure, sleep=sleeps)
    with pytest.raises(SinkError) as caught:
        sink.send(RUNS_TABLE, [{"RunId": "run-1"}])
    sink.close()
    assert len(sleeps) == 4 and len(azure.collector.requests) == 5
    assert caught.value.undelivered == 1 and "after 5 attempt(s)" in str(caught.value)


def test_data_collector_warns_that_the_api_is_retired(azure: AzureFakes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    collector_sink(azure).close()
    (record,) = [r for r in caplog.records if r.name == "shared.delivery.data_collector_sink"]
    assert record.levelno == logging.WARNING
    assert "retired on 2026-09-14" in record.getMessage() and "LOG_SINK=logs_ingestion" in record.getMessage()


# How the endpoint answers once it is retired is not documented: 410 Gone, or an error whose message says so.
RETIRED_ANSWERS = [
    Response.json(410, {"Error": "Gone", "Message": "This endpoint is no longer available."}),
    Response.json(403, {"Error": "Forbidden",
                        "Message": "The HTTP Data Collector API has been retired.\nUse the Logs Ingestion API."}),
    Response(404, b"The HTTP Data Collector API is deprecated and was retired on 14 September 2026.\nSee aka.ms/x",
             {"Content-Type": "text/plain"}),
]


@pytest.mark.parametrize("answer", RETIRED_ANSWERS, ids=["410", "403-retired", "404-deprecated"])
def test_data_collector_retired_answer_says_so_in_one_line(azure: AzureFakes, answer: Response) -> None:
    azure.collector.faults.add(answer)
    sink = collector_sink(azure, sleep=Sleeps())
    with pytest.raises(SinkError) as caught:
        sink.send(KEYS_TABLE, [key_row(1)])
    sink.close()
    assert len(azure.collector.requests) == 1  # not retried: the API is gone
    (line,) = str(caught.value).splitlines()
    assert f"HTTP {answer.status}" in line
    assert "Data Collector API is retired (Microsoft retired it on 2026-09-14)" in line
    assert line.endswith("set LOG_SINK=logs_ingestion")
    assert "LOG_ANALYTICS_WORKSPACE_KEY_SECRET" not in line  # not the signature hint


def test_data_collector_retirement_reaches_the_runs_outcome(azure: AzureFakes, tmp_path: Path) -> None:
    """Through the outbox wrapper, as a run delivers: the rows are kept for the next run (which, after LOG_SINK is
    changed, delivers them through logs_ingestion) and the run's last delivery error is the one retirement line."""
    azure.collector.faults.add(RETIRED_ANSWERS[0])
    reliable = ReliableSink(collector_sink(azure, sleep=Sleeps()), FileOutbox(tmp_path), 1000, timedelta(hours=48))
    reliable.send(RUNS_TABLE, [{"RunId": "run-1", "Status": "Succeeded"}])
    assert reliable.stats.deferred == 1
    (line,) = reliable.stats.last_error.splitlines()
    assert "retired (Microsoft retired it on 2026-09-14)" in line and "LOG_SINK=logs_ingestion" in line


def test_an_ordinary_error_is_not_called_a_retirement(azure: AzureFakes) -> None:
    """The broken copy of the check: a 404 for a wrong workspace id keeps its hint and says nothing of retirement."""
    azure.collector.faults.add(Response.json(404, {"Error": "NotFound", "Message": "workspace not found"}))
    sink = collector_sink(azure, sleep=Sleeps())
    with pytest.raises(SinkError) as caught:
        sink.send(KEYS_TABLE, [key_row(1)])
    sink.close()
    assert "retired" not in str(caught.value) and "LOG_ANALYTICS_WORKSPACE_ID" in str(caught.value)


def test_data_collector_key_that_is_not_base64(azure: AzureFakes) -> None:
    with pytest.raises(SinkError) as caught:
        DataCollectorSink(WORKSPACE_ID, "not base64 at all!", DATA_COLLECTOR_DOMAIN, azure.options())
    assert "not base64" in str(caught.value) and "not base64 at all!" not in str(caught.value)


def test_a_partial_upload_keeps_only_the_failed_chunks_rows_in_the_outbox(azure: AzureFakes, tmp_path: Path) -> None:
    rows = [key_row(i, pad=1000) for i in range(2600)]
    rejected: list[dict[str, Any]] = []

    def reject(stream: str, chunk: list[dict[str, Any]]) -> Response | None:
        if any(r["AgeDays"] == 1500 for r in chunk):
            rejected.extend(chunk)
            return Response.json(400, {"error": {"code": "InvalidStream", "message": "schema mismatch"}})
        return None

    azure.ingestion.reject = reject
    reliable = ReliableSink(ingestion_sink(azure), FileOutbox(tmp_path), 100_000, timedelta(hours=48))
    reliable.send(KEYS_TABLE, rows)
    reliable.close()
    delivered = azure.ingestion.rows(KEYS_STREAM)
    assert 0 < len(rejected) < len(rows) and len(delivered) + len(rejected) == len(rows)
    assert reliable.stats.deferred == len(rejected)  # RecordsDeferred counts only what was not delivered
    kept = [r for item in FileOutbox(tmp_path).items() for r in decode_rows((tmp_path / item.name).read_bytes())]
    assert kept == rejected  # exactly the failed chunk's rows, none of the delivered ones


# ---------------------------------------------------------------------------------------------- the run's deadline


def test_logs_ingestion_against_an_endpoint_that_never_answers_ends_by_the_deadline(azure: AzureFakes) -> None:
    """A hung upload ends within its own bound (a quarter of the run's delivery window here), long before the
    deadline, whatever azure-core's read timeout (production's 60 s) and retries would wait: the breaker opens in
    time for the rest of the run to go to the outbox. azure-core's ``timeout`` alone cuts only the connect timeout."""
    from shared.deadline import Deadline

    azure.ingestion.reject = lambda stream, rows: Response(204, delay=120)  # accepts, never answers in time
    credential = build_credential(None, azure.options())
    deadline = Deadline.after(9, reserve=1)  # an 8 s delivery window: one upload may use 2 s of it
    sink = LogsIngestionSink(azure.ingestion.url, RULE_ID, KEYS_STREAM, RUNS_STREAM, credential, azure.options(),
                             deadline=deadline)
    rows = [key_row(i, pad=1000) for i in range(2600)]  # three chunks: the later ones must not wait again
    started = time.monotonic()
    with pytest.raises(SinkError) as caught:
        sink.send(KEYS_TABLE, rows)
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"the upload took {elapsed:.1f} s; its bound was 2 s of an 8 s delivery window"
    assert "no answer within the upload's time bound" in str(caught.value)
    assert caught.value.undelivered == len(rows)
    assert caught.value.rows is None or len(caught.value.rows) == len(rows)
    assert len(azure.ingestion.requests) <= 2  # the first chunk's attempts, cut to the bound; no later chunk tried
    sink.close()
    late = LogsIngestionSink(azure.ingestion.url, RULE_ID, KEYS_STREAM, RUNS_STREAM, credential, azure.options(),
                             deadline=Deadline.after(0.5, reserve=1))
    started = time.monotonic()
    with pytest.raises(SinkError, match="no time left in the run"):  # past the window: not even tried
        late.send(RUNS_TABLE, [{"RunId": "r"}])
    assert time.monotonic() - started < 0.5
    late.close()


def test_data_collector_against_an_endpoint_that_never_answers_ends_by_the_deadline(azure: AzureFakes) -> None:
    from shared.deadline import Deadline

    azure.collector.faults.add(*[Response(200, delay=120) for _ in range(10)])
    sink = DataCollectorSink(WORKSPACE_ID, azure.collector.shared_key, DATA_COLLECTOR_DOMAIN, azure.options(),
                             deadline=Deadline.after(9, reserve=1))  # an 8 s delivery window: 2 s for one batch
    started = time.monotonic()
    with pytest.raises(SinkError, match="time bound passed") as caught:
        sink.send(KEYS_TABLE, [key_row(1)])
    assert time.monotonic() - started < 3.5  # the bound, and at most one attempt's shortest wait (1 s) past it
    assert caught.value.undelivered == 1
    sink.close()
