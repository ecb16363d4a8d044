"""Bring-your-own provider keys on the worker: an agent's `<name>:<model>` runs on the run's
tenant's own endpoint and key (decrypted with the master key), never another tenant's, and
the key shows up in no result, error, run event or log line.

The provider is a fake OpenAI-compatible server on 127.0.0.1 that answers only a key it
knows, and says whose key it was."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from cadenza_llm import LLMSettings, ProviderRegistry
from cadenza_state import (
    AgentRecord,
    EnvelopeCipher,
    SecretsSettings,
    delete_provider_key,
    put_provider_key,
)
from cadenza_workflow import AgentSpec
from worker_support import BOTH_STACKS, Stack, metric

MASTER = base64.b64encode(os.urandom(32)).decode()
KEYS = {"sk-acme-0123456789": "acme", "sk-globex-9876543210": "globex"}


@dataclass
class FakeOpenAI:
    """POST /v1/chat/completions: 401 unless the bearer key is one of ``KEYS``; the answer
    names the tenant whose key it was."""

    port: int = 0
    seen: list[str] = field(default_factory=list)  # the Authorization headers received

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, value = line.decode().split(":", 1)
                headers[name.strip().lower()] = value.strip()
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            authorization = headers.get("authorization", "")
            self.seen.append(authorization)
            owner = KEYS.get(authorization.removeprefix("Bearer "))
            assert request_line.startswith("POST /v1/chat/completions ")
            if owner is None:
                status = 401
                payload: dict[str, Any] = {"error": {"message": "Incorrect API key provided"}}
            else:
                status = 200
                payload = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"answered for {owner}"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()


@pytest_asyncio.fixture(loop_scope="function")
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()


def secrets() -> SecretsSettings:
    return SecretsSettings(master_key=MASTER, master_key_id="k1")  # type: ignore[arg-type]


async def store_key(stack: Stack, tenant: str, base_url: str, api_key: str) -> None:
    async with stack.resources.sessions() as session, session.begin():
        await put_provider_key(
            session=session,
            cipher=EnvelopeCipher(secrets()),
            tenant_id=tenant,
            name="byok",
            base_url=base_url,
            api_key=api_key,
        )


async def register(stack: Stack, tenant: str) -> str:
    spec = AgentSpec.model_validate(
        {"name": "asker", "system_prompt": "Answer.", "model": "byok:gpt-test", "tools": []}
    )
    async with stack.resources.sessions() as session, session.begin():
        session.add(AgentRecord(tenant_id=tenant, name="asker", version=1, spec=spec.model_dump()))
    return "asker@1"


async def run_agent(stack: Stack, tenant: str) -> Any:
    task = await stack.add_task("asker@1", {"prompt": "who pays?"}, kind="agent", tenant_id=tenant)
    await stack.dispatch(task)
    return await stack.result(task, timeout=30)


@BOTH_STACKS
async def test_each_run_uses_its_own_tenants_key_and_the_key_never_leaks(
    stack: Stack, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cadenza")
    for tenant in ("acme", "globex", "initech"):
        await register(stack, tenant)
    await store_key(stack, "acme", fake_openai.base_url, "sk-acme-0123456789")
    await store_key(stack, "globex", fake_openai.base_url, "sk-globex-9876543210")
    # The deployment knows no provider called `byok`: only tenants' own keys can answer.
    llm = ProviderRegistry(LLMSettings(providers={}))
    await stack.start_worker(llm=llm, secrets=secrets())
    before = metric("cadenza_agent_provider_resolutions_total", source="tenant")

    acme, globex = await asyncio.gather(run_agent(stack, "acme"), run_agent(stack, "globex"))
    assert (acme.status, acme.output) == ("succeeded", "answered for acme"), acme.error
    assert (globex.status, globex.output) == ("succeeded", "answered for globex"), globex.error
    assert sorted(fake_openai.seen) == ["Bearer sk-acme-0123456789", "Bearer sk-globex-9876543210"]
    assert metric("cadenza_agent_provider_resolutions_total", source="tenant") - before >= 2

    # A tenant without a key of that name does not borrow anyone's.
    initech = await run_agent(stack, "initech")
    assert initech.status == "failed"
    assert initech.error is not None
    assert initech.error.code == "llm_unknown_provider"
    assert len(fake_openai.seen) == 2

    leaked = [
        text
        for text in (
            json.dumps([e.payload.model_dump(mode="json") for e in stack.results]),
            json.dumps([e.payload.model_dump(mode="json") for e in stack.events]),
            caplog.text,
        )
        if any(key in text for key in KEYS)
    ]
    assert not leaked


@pytest.mark.unit
async def test_a_rejected_key_fails_the_task_without_echoing_it_and_a_new_one_takes_over(
    stack: Stack, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cadenza")
    await register(stack, "acme")
    wrong = "sk-wrong-key-for-acme-555"
    await store_key(stack, "acme", fake_openai.base_url, wrong)
    llm = ProviderRegistry(LLMSettings(providers={}))
    await stack.start_worker(llm=llm, secrets=secrets(), provider_key_cache_s=0)

    failed = await run_agent(stack, "acme")
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "llm_auth"
    assert wrong not in json.dumps(failed.model_dump(mode="json"))
    assert wrong not in caplog.text
    assert fake_openai.seen == [f"Bearer {wrong}"]

    # Rotated by the tenant: the next run uses the new key (cache lifetime 0 here).
    await store_key(stack, "acme", fake_openai.base_url, "sk-acme-0123456789")
    rotated = await run_agent(stack, "acme")
    assert (rotated.status, rotated.output) == ("succeeded", "answered for acme"), rotated.error

    # Deleted: back to the deployment's providers, which have no `byok`.
    async with stack.resources.sessions() as session, session.begin():
        assert await delete_provider_key(session=session, tenant_id="acme", name="byok")
    gone = await run_agent(stack, "acme")
    assert gone.error is not None
    assert gone.error.code == "llm_unknown_provider"


@pytest.mark.unit
async def test_a_key_sealed_under_another_master_key_is_an_auth_error(
    stack: Stack, fake_openai: FakeOpenAI
) -> None:
    await register(stack, "acme")
    await store_key(stack, "acme", fake_openai.base_url, "sk-acme-0123456789")
    other = SecretsSettings(
        master_key=base64.b64encode(os.urandom(32)).decode(),  # type: ignore[arg-type]
        master_key_id="k2",
    )
    await stack.start_worker(llm=ProviderRegistry(LLMSettings(providers={})), secrets=other)

    result = await run_agent(stack, "acme")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "llm_auth"
    assert "'byok'" in result.error.message
    assert "k1" in result.error.message
    assert fake_openai.seen == []
