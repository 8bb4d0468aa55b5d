"""Typed results decoded by the clients (`Job.result_as`), `codec=` on enqueue_many
(Client, SyncClient, Producer, InlineQueue) and `jobqueue wait ID --result --codec`:
real clients, a real server and worker."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pydantic
import pytest

from jobqueue import Producer
from jobqueue.client import Client, SyncClient
from jobqueue.codecs import DecodeError, JsonCodec
from jobqueue.model import EnqueueRequest, Job, JobStatus
from jobqueue.settings import Settings
from jobqueue.testing import InlineQueue
from jobqueue.worker import Worker

from .conftest import eventually, status_is
from .harness import Harness
from .test_cli import jobqueue
from .test_worker import running


@dataclasses.dataclass
class Greeting:
    name: str


@dataclasses.dataclass
class Receipt:
    hello: str
    letters: int


class Order(pydantic.BaseModel):
    id: int
    items: list[str]


async def greet(greeting: Greeting) -> Receipt | None:
    return None if greeting.name == "nobody" else Receipt(greeting.name, len(greeting.name))


async def place(order: Order) -> Order:
    return Order(id=order.id + 1, items=[*order.items, "done"])


def worker(settings: Settings, job_type: str, handler: object, **options: object) -> Worker:
    return Worker(job_type, handler, settings=settings, heartbeat_s=0.1, lease_s=5.0, **options)  # type: ignore[arg-type]


async def test_every_client_enqueues_many_with_a_codec_and_decodes_the_results(
    store: Harness, settings: Settings, server_url: str
) -> None:
    names = ["Ada", "Grace", "nobody"]
    async with (
        running(worker(settings, "greet", greet)),
        running(worker(settings, "order", place, codec="msgpack")),
    ):
        async with Client(server_url, timeout_s=20) as client:
            by_client = await client.enqueue_many(
                [EnqueueRequest("greet", Greeting(n)) for n in names], codec="json"
            )
            receipts = [(await client.wait(job.id, 20)).result_as(Receipt) for job in by_client]
        with SyncClient(server_url, timeout_s=20) as sync:
            by_sync = await asyncio.to_thread(
                sync.enqueue_many, [EnqueueRequest("order", Order(id=1, items=["a"]))], codec="msgpack"
            )
            (ordered,) = [await asyncio.to_thread(sync.wait, job.id, 20) for job in by_sync]
        async with Producer.connect(settings) as producer:
            (by_producer,) = await producer.enqueue_many(
                [EnqueueRequest("greet", {"name": "Lin"})], codec=JsonCodec()
            )
            await eventually(status_is(store, by_producer.id, JobStatus.COMPLETED), what="completion")
            read = await producer.get(by_producer.id)
    assert receipts == [Receipt("Ada", 3), Receipt("Grace", 5), None]  # None: it returned nothing
    assert ordered.result_as(Order, "msgpack") == Order(id=2, items=["a", "done"])
    assert ordered.result_as(None, "msgpack") == {"id": 2, "items": ["a", "done"]}  # plain data
    assert read.result_as(dict) == {"hello": "Lin", "letters": 3}
    assert read.result_as(None, "bytes") == b'{"hello":"Lin","letters":3}'
    # What does not fit is told, not guessed.
    with pytest.raises(DecodeError, match="Invalid JSON"):
        ordered.result_as(Order)  # msgpack bytes read as JSON (pydantic's own message)
    with pytest.raises(DecodeError, match="unexpected keyword argument"):
        read.result_as(Greeting)


async def test_a_job_that_did_not_complete_has_no_result_to_decode(store: Harness) -> None:
    job = await store.enqueue("greet", b"")
    with pytest.raises(ValueError, match=f"job {job.id} is PENDING: only a COMPLETED job has a result"):
        (await store.get(job.id)).result_as(Receipt)


async def test_a_payload_a_codec_cannot_encode_stores_no_job(store: Harness, server_url: str) -> None:
    requests = [EnqueueRequest("greet", Greeting("a")), EnqueueRequest("greet", object())]
    async with Client(server_url) as client:
        with pytest.raises(TypeError, match=r"requests\[1\]\.payload: .*object is not encodable"):
            await client.enqueue_many(requests, codec="json")
        with pytest.raises(TypeError, match=r"requests\[0\]\.payload"):  # no codec: bytes or str, as ever
            await client.enqueue_many(requests[:1])
    assert await store.redis.llen(store.keys.queue("greet").ready) == 0


async def test_the_inline_queue_takes_a_codec_for_many_and_decodes_results() -> None:
    queue = InlineQueue(Worker("greet", greet))
    jobs = await queue.enqueue_many([EnqueueRequest("greet", Greeting("Ada"))], codec="json")
    assert [job.result_as(Receipt) for job in jobs] == [Receipt("Ada", 3)]
    failing = InlineQueue(Worker("greet", greet))
    (bad,) = await failing.enqueue_many([EnqueueRequest("greet", b"not json")])
    assert bad.status is JobStatus.FAILED
    with pytest.raises(ValueError, match="is FAILED"):
        bad.result_as(Receipt)


async def test_jobqueue_wait_prints_a_decoded_result(
    store: Harness, settings: Settings, server_url: str
) -> None:
    async with (
        running(worker(settings, "greet", greet)),
        running(worker(settings, "order", place, codec="msgpack")),
        Client(server_url) as client,
    ):
        greeted, ordered = [
            *(await client.enqueue_many([EnqueueRequest("greet", Greeting("Ada"))], codec="json")),
            await client.enqueue("order", Order(id=7, items=[]), codec="msgpack"),
        ]
        for job in (greeted, ordered):
            await client.wait(job.id, 20)
    url = ("--url", server_url)
    as_json = await asyncio.to_thread(jobqueue, "wait", greeted.id, "--result", "--codec", "json", *url)
    assert (as_json.returncode, as_json.stdout) == (0, '{"hello": "Ada", "letters": 3}\n')
    packed = await asyncio.to_thread(jobqueue, "wait", ordered.id, "--result", "--codec", "msgpack", *url)
    assert json.loads(packed.stdout) == {"id": 8, "items": ["done"]}
    wrong = await asyncio.to_thread(jobqueue, "wait", ordered.id, "--result", "--codec", "json", *url)
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert (
        f"jobqueue: job {ordered.id}: its result does not decode with codec 'json': not JSON" in wrong.stderr
    )
    usage = await asyncio.to_thread(jobqueue, "wait", greeted.id, "--codec", "json", *url)
    assert usage.returncode == 2 and "--codec decodes the result: give --result too" in usage.stderr


def test_result_as_reads_a_job_as_the_clients_return_it() -> None:
    job = Job("i", "t", b"", JobStatus.COMPLETED, 0, 0, 0, result=b'{"id": 1, "items": []}')
    assert job.result_as(Order) == Order(id=1, items=[])
    assert job.result_as() == {"id": 1, "items": []}
