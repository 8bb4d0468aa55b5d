"""Typed payloads (jobqueue.codecs, jobqueue/worker/typed.py): the real clients encode, a real
worker decodes into its handler's annotation; bytes stay the default."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

import msgpack
import pydantic
import pytest

from jobqueue import Producer
from jobqueue.client import Client, SyncClient
from jobqueue.codecs import DecodeError, JsonCodec, MsgpackCodec, encode_payload, get_codec
from jobqueue.events import Event
from jobqueue.model import Job, JobStatus
from jobqueue.settings import Settings
from jobqueue.worker import Worker

from .conftest import ROOT, eventually, status_is
from .harness import Harness
from .test_api import b64, post_json
from .test_worker import running


@dataclasses.dataclass
class Email:
    to: str
    subject: str
    tags: list[str] = dataclasses.field(default_factory=list)


class Order(pydantic.BaseModel):
    id: int
    items: list[str]


class Point(TypedDict):
    x: int
    y: int


EMAIL = Email("ada@example.com", "hello, žluť", ["a", "b"])


def typed_worker(
    settings: Settings, job_type: str, handler: Callable[..., Awaitable[None]], **options: Any
) -> Worker:
    return Worker(job_type, handler, settings=settings, heartbeat_s=0.1, lease_s=5.0, **options)


class Received:
    """What a handler was given, and an event set when it was."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.jobs: list[Job] = []
        self.arrived = asyncio.Event()

    def add(self, value: Any, job: Job | None = None) -> None:
        self.values.append(value)
        if job is not None:
            self.jobs.append(job)
        self.arrived.set()


# -- round trips: a real client enqueues, a real worker decodes ---------------------


async def test_a_dataclass_goes_through_the_client_as_json_and_arrives_with_its_job(
    store: Harness, settings: Settings, server_url: str
) -> None:
    got = Received()

    async def send(email: Email, job: Job) -> None:
        got.add(email, job)

    worker = typed_worker(settings, "typed-email", send)
    assert worker.codec.name == "json"  # inferred from the annotation
    async with running(worker), Client(server_url, timeout_s=20) as client:
        queued = await client.enqueue("typed-email", EMAIL, codec="json")
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    assert got.values == [EMAIL] and type(got.values[0]) is Email
    [job] = got.jobs
    assert job.id == queued.id and job.attempt == 1
    # Compact UTF-8 JSON on the wire and in Redis: what any language can read.
    assert job.payload == '{"to":"ada@example.com","subject":"hello, žluť","tags":["a","b"]}'.encode()


@dataclasses.dataclass(frozen=True)
class Case:
    into: Any  # the handler's annotation
    sent: Any  # what the client enqueues
    worker_codec: str | None  # None: inferred from the annotation
    client_codec: Any
    expected: Any


CASES = {
    "pydantic-json": Case(Order, Order(id=7, items=["x"]), None, "json", Order(id=7, items=["x"])),
    "pydantic-msgpack": Case(Order, Order(id=7, items=["x"]), "msgpack", "msgpack", Order(id=7, items=["x"])),
    "dataclass-msgpack": Case(Email, EMAIL, "msgpack", "msgpack", EMAIL),
    "typeddict-json": Case(Point, {"x": 1, "y": 2}, None, "json", {"x": 1, "y": 2}),
    "dict-json": Case(dict[str, int], {"a": 1}, None, "json", {"a": 1}),
    "list-json": Case(list[Email], [EMAIL], None, "json", [dataclasses.asdict(EMAIL)]),
    "list-msgpack": Case(list, [1, "two", None], "msgpack", get_codec("msgpack"), [1, "two", None]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_payload_types_and_codecs_round_trip(
    store: Harness, settings: Settings, server_url: str, case: Case
) -> None:
    got = Received()

    async def handler(payload: Any) -> None:
        got.add(payload)

    handler.__annotations__["payload"] = case.into  # the annotation under test
    worker = typed_worker(settings, "typed-case", handler, codec=case.worker_codec)
    assert worker.codec.name == (case.worker_codec or "json")
    async with running(worker), Client(server_url, timeout_s=20) as client:
        queued = await client.enqueue("typed-case", case.sent, codec=case.client_codec)
        await eventually(status_is(store, queued.id, JobStatus.COMPLETED), what="completion")
    assert got.values == [case.expected]
    assert type(got.values[0]) is type(case.expected)


async def test_the_sync_client_and_the_producer_encode_with_the_same_codecs(
    store: Harness, settings: Settings, server_url: str
) -> None:
    got = Received()

    async def send(email: Email) -> None:
        got.add(email)

    async with running(typed_worker(settings, "typed-email", send)):
        with SyncClient(server_url, timeout_s=20) as sync_client:
            by_sync = await asyncio.to_thread(sync_client.enqueue, "typed-email", EMAIL, codec="json")
        async with Producer.connect(settings) as producer:
            by_producer = await producer.enqueue("typed-email", EMAIL, codec=JsonCodec())
        for job in (by_sync, by_producer):
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
    assert got.values == [EMAIL, EMAIL]


async def test_another_language_sends_json_bytes_over_connect_json(
    store: Harness, settings: Settings, server_url: str
) -> None:
    """The payload is bytes on the wire: a JSON document sent by any client decodes."""
    got = Received()

    async def place(order: Order) -> None:
        got.add(order)

    async with running(typed_worker(settings, "typed-order", place)):
        body = json.dumps({"type": "typed-order", "payload": b64(b'{"id": 3, "items": ["a"]}')})
        reply = await post_json(server_url, "EnqueueJob", body)
        assert reply.status == 200, reply
        job_id = reply.json()["job"]["id"]
        await eventually(status_is(store, job_id, JobStatus.COMPLETED), what="completion")
    assert got.values == [Order(id=3, items=["a"])]


# -- decode failures: failed at once, the error names the type and the codec ---------


@dataclasses.dataclass(frozen=True)
class Undecodable:
    annotation: Any
    codec: str | None
    payload: bytes
    error: str  # in the job's last_error


UNDECODABLE = {
    "not-json": Undecodable(
        Email,
        None,
        b"not json",
        "PayloadDecodeError: payload does not decode with codec 'json' into Email: not JSON: "
        "Expecting value: line 1 column 1 (char 0)",
    ),
    "missing-field": Undecodable(
        Email,
        None,
        b'{"to": "x"}',
        "PayloadDecodeError: payload does not decode with codec 'json' into Email: "
        "Email.__init__() missing 1 required positional argument: 'subject'",
    ),
    "not-an-object": Undecodable(Point, None, b"[1, 2]", "into Point: expected an object, got an array"),
    "missing-key": Undecodable(Point, None, b'{"x": 1}', "into Point: missing keys: y"),
    "invalid-model": Undecodable(
        Order, None, b'{"id": "seven", "items": []}', "into Order: 1 validation error for Order\nid\n"
    ),
    "not-msgpack": Undecodable(
        Order, "msgpack", b'{"id": 1}', "decode with codec 'msgpack' into Order: not MessagePack: "
    ),
}


@pytest.mark.parametrize("bad", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_a_payload_that_does_not_decode_fails_at_once_naming_type_and_codec(
    store: Harness, settings: Settings, server_url: str, bad: Undecodable
) -> None:
    ran = asyncio.Event()
    dead: list[Job] = []

    async def handler(value: Any) -> None:
        ran.set()

    handler.__annotations__["value"] = bad.annotation
    worker = typed_worker(
        settings,
        "typed-bad",
        handler,
        codec=bad.codec,
        max_attempts=3,
        observers=[lambda event, job, *_: dead.append(job) if event is Event.DEAD_LETTERED else None],
    )
    async with running(worker), Client(server_url, timeout_s=20) as client:
        queued = await client.enqueue("typed-bad", bad.payload)  # bytes: sent as they are
        await eventually(status_is(store, queued.id, JobStatus.FAILED), what="the failure")
        await eventually(lambda: asyncio.sleep(0, bool(dead)), what="the dead-letter event")
        failed = await client.get(queued.id)
    assert not ran.is_set()
    assert failed.attempt == 1  # not retried: it would not decode the next time either
    assert bad.error in failed.last_error
    assert failed.last_error.startswith("jobqueue.worker.errors.PayloadDecodeError: payload does not decode")
    assert [job.id for job in dead] == [queued.id]


# -- bytes stay the default ----------------------------------------------------------


async def test_plain_and_bytes_handlers_get_the_bytes_as_before(
    store: Harness, settings: Settings, server_url: str
) -> None:
    as_job, as_bytes = Received(), Received()

    async def plain(job: Job) -> None:
        as_job.add(job.payload)

    async def raw(payload: bytes, job: Job) -> None:
        as_bytes.add(payload, job)

    workers = [typed_worker(settings, "plain", plain), typed_worker(settings, "raw", raw)]
    assert [w.codec.name for w in workers] == ["bytes", "bytes"]
    assert workers[0].handler is plain  # a plain handler is not wrapped: nothing added per job
    async with running(workers[0]), running(workers[1]), Client(server_url, timeout_s=20) as client:
        jobs = [await client.enqueue("plain", b'{"not": "decoded"}'), await client.enqueue("raw", "text")]
        for job in jobs:
            await eventually(status_is(store, job.id, JobStatus.COMPLETED), what="completion")
        with pytest.raises(TypeError, match=r"^payload must be bytes or str, not Email$"):
            await client.enqueue("plain", EMAIL)  # no codec: no guessing
    assert as_job.values == [b'{"not": "decoded"}']
    assert as_bytes.values == [b"text"] and as_bytes.jobs[0].id == jobs[1].id


# -- inference and explicit codecs, when the worker is made --------------------------


async def _email(email: Email) -> None: ...


async def _job(job: Job) -> None: ...


async def _number(n: int) -> None: ...


async def _three(email: Email, job: Job, extra: int) -> None: ...


async def _second_not_job(email: Email, other: Email) -> None: ...


async def _unresolved(email: Unknown) -> None: ...  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize(
    ("handler", "codec", "error"),
    [
        (_job, "json", r"handler _job: its first parameter takes the Job \(payload bytes\); annotate it"),
        (_email, "bytes", r"handler _email: codec 'bytes' cannot decode into Email"),
        (_email, "yaml", r"unknown codec 'yaml' \(known: bytes, json, msgpack; or pass a Codec\)"),
        (
            _number,
            None,
            r"handler _number: its first parameter 'n' is annotated int; annotate it with Job, bytes",
        ),
        (_three, None, r"handler _three: a typed handler takes \(payload\) or \(payload, job\)"),
        (_second_not_job, None, r"handler _second_not_job: its second parameter 'other' receives the Job"),
        (
            _unresolved,
            None,
            r"handler _unresolved: the annotation 'Unknown' of its payload parameter does not",
        ),
    ],
    ids=[
        "job-with-json",
        "type-with-bytes",
        "unknown-codec",
        "int",
        "three-parameters",
        "second",
        "unresolved",
    ],
)
def test_a_handler_and_codec_that_do_not_fit_are_refused_when_the_worker_is_made(
    handler: Callable[..., Awaitable[None]], codec: str | None, error: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        Worker("t", handler, codec=codec)


def test_the_codec_is_inferred_unless_given() -> None:
    assert Worker("t", _email).codec.name == "json"
    assert Worker("t", _email, codec="msgpack").codec.name == "msgpack"
    assert Worker("t", _job).codec.name == "bytes"
    assert Worker("t", _job, codec="bytes").codec.name == "bytes"
    assert Worker("t", lambda job: _job(job)).codec.name == "bytes"  # noqa: PLW0108 - unannotated: the Job


def test_a_missing_msgpack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # what an environment without it imports
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'jobqueue\[msgpack\]'"):
        Worker("t", _email, codec="msgpack")
    with pytest.raises(ModuleNotFoundError, match=r"codec 'msgpack' needs the msgpack package"):
        encode_payload(EMAIL, "msgpack")


# -- the codecs themselves -------------------------------------------------------------


def test_objects_encode_at_any_depth_and_what_cannot_be_is_a_type_error() -> None:
    nested = {"email": EMAIL, "orders": [Order(id=1, items=[])]}
    plain = {"email": dataclasses.asdict(EMAIL), "orders": [{"id": 1, "items": []}]}
    assert json.loads(encode_payload(nested, "json")) == plain
    assert msgpack.unpackb(encode_payload(nested, "msgpack")) == plain
    assert JsonCodec().decode(encode_payload(nested, "json")) == plain
    assert MsgpackCodec().decode(encode_payload(nested, "msgpack")) == plain
    with pytest.raises(TypeError, match=r"^object is not encodable"):
        encode_payload({"x": object()}, "json")
    with pytest.raises(TypeError, match=r"^payload cannot be encoded as json: Out of range float"):
        encode_payload(float("nan"), "json")
    with pytest.raises(TypeError, match=r"^payload cannot be encoded as msgpack: .*not encodable"):
        encode_payload({1, 2}, "msgpack")
    with pytest.raises(DecodeError, match=r"^not MessagePack: "):
        MsgpackCodec().decode(b"\xc1")


def test_the_codec_benchmark_runs() -> None:
    """bench/codec_cost.py at a tiny size (its figures are in docs/performance.md, not checked here)."""
    ran = subprocess.run(
        [sys.executable, "bench/codec_cost.py", "--calls", "20", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "pydantic, msgpack" in ran.stdout and "plain handler (baseline)" in ran.stdout
