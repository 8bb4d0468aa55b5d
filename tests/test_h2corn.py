"""The optional h2corn server runs the same app: gRPC (h2c), Connect JSON, reflection, health."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from .conftest import jobqueue_server
from .harness import Harness
from .test_api import SERVICE, grpcurl, grpcurl_json, post_json

pytestmark = pytest.mark.skipif(shutil.which("h2corn") is None, reason="h2corn is not installed")


@pytest.fixture(scope="module")
def h2corn_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("h2corn") / "server.log"
    with jobqueue_server(redis_url, log, server="h2corn") as url:
        yield url


async def test_grpc_and_reflection(h2corn_url: str, store: Harness) -> None:
    listed = await grpcurl(h2corn_url, "list")
    assert SERVICE in listed.out and "grpc.health.v1.Health" in listed.out
    job = grpcurl_json(
        await grpcurl(h2corn_url, f"{SERVICE}/EnqueueJob", data={"type": "h2", "payload": "aGk="})
    )
    assert (await store.get(job["job"]["id"])).payload == b"hi"
    health = grpcurl_json(await grpcurl(h2corn_url, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}


async def test_connect_json_and_errors(h2corn_url: str) -> None:
    created = await post_json(h2corn_url, "EnqueueJob", json.dumps({"type": "h2"}))
    assert created.status == 200 and created.json()["job"]["type"] == "h2"
    missing = await post_json(
        h2corn_url, "GetJob", json.dumps({"id": "00000000-0000-4000-8000-000000000000"})
    )
    assert missing.status == 404 and missing.json()["code"] == "not_found"
