"""ProviderRegistry, settings, price table, request validation and telemetry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cadenza_llm import (
    BadRequestError,
    CassetteMissError,
    ChatRequest,
    LLMSettings,
    LocalProvider,
    PriceTable,
    ProviderRegistry,
    UnknownModelError,
    UnknownProviderError,
    Usage,
)
from cadenza_llm.cassette import RecordingProvider, ReplayProvider
from cadenza_llm.openai_compatible import OpenAICompatibleProvider
from cadenza_llm.settings import Price
from llm_support import SECRET, FakeOpenAI, completion
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from pydantic import ValidationError

pytestmark = pytest.mark.unit

OPENAI = {"openai": {"base_url": "http://fake-openai.test/v1", "api_key": SECRET}}


def settings(**values: object) -> LLMSettings:
    return LLMSettings.model_validate({"providers": OPENAI, **values})


def ask(model: str, text: str = "hi") -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}])


def unwrap(provider: object) -> object:
    while hasattr(provider, "inner"):
        provider = provider.inner
    return provider


# -- settings ------------------------------------------------------------------------------


def test_settings_from_env_nested_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_LLM_PROVIDERS__VLLM__BASE_URL", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("CADENZA_LLM_PROVIDERS__VLLM__API_KEY", SECRET)
    monkeypatch.setenv(
        "CADENZA_LLM_PRICES", json.dumps({"vllm:*": {"input_per_mtok": 1, "output_per_mtok": 2}})
    )
    monkeypatch.setenv("CADENZA_LLM_CASSETTE_MODE", "replay")
    loaded = LLMSettings()
    assert loaded.providers["vllm"].base_url == "http://127.0.0.1:8000/v1"
    assert loaded.providers["vllm"].api_key is not None
    assert loaded.providers["vllm"].api_key.get_secret_value() == SECRET
    assert SECRET not in repr(loaded)
    assert SECRET not in str(loaded.model_dump())
    assert loaded.prices["vllm:*"] == Price(input_per_mtok=1, output_per_mtok=2)
    assert loaded.cassette_mode == "replay"


def test_every_setting_is_described() -> None:
    missing = [name for name, f in LLMSettings.model_fields.items() if not f.description]
    assert missing == []


@pytest.mark.parametrize("name", ["local", "replay", "a:b"])
def test_reserved_or_bad_provider_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="not a valid provider name"):
        LLMSettings.model_validate({"providers": {name: {"base_url": "http://x/v1"}}})


def test_bad_base_url_names_the_field() -> None:
    with pytest.raises(ValidationError, match="base_url"):
        LLMSettings.model_validate({"providers": {"x": {"base_url": "ftp://x"}}})


def test_cassette_dir_means_a_file_inside(tmp_path: Path) -> None:
    assert settings(cassette_path=tmp_path).cassette_file() == tmp_path / "cassette.json"
    assert settings(cassette_path=tmp_path / "a.json").cassette_file() == tmp_path / "a.json"


# -- resolve -------------------------------------------------------------------------------


def test_resolve_builds_lazily_and_caches() -> None:
    registry = ProviderRegistry(settings())
    assert registry._providers == {}
    local, model = registry.resolve("local:smollm2-135m")
    assert model == "smollm2-135m"
    assert local.name == "local"
    assert isinstance(unwrap(local), LocalProvider)
    assert registry.resolve("local:other")[0] is local
    openai, model = registry.resolve("openai:gpt-4o-mini")
    assert (openai.name, model) == ("openai", "gpt-4o-mini")
    assert isinstance(unwrap(openai), OpenAICompatibleProvider)
    assert registry.provider_names == ["local", "openai", "replay"]


def test_unknown_provider_error_names_it_and_the_known_ones() -> None:
    registry = ProviderRegistry(settings())
    with pytest.raises(UnknownProviderError) as caught:
        registry.resolve("antrhopic:claude")
    message = str(caught.value)
    assert "'antrhopic'" in message
    assert "local, openai, replay" in message
    assert caught.value.code == "llm_unknown_provider"
    assert not caught.value.retryable


@pytest.mark.parametrize("spec", ["gpt-4o", ":gpt", "openai:", ""])
def test_malformed_spec_is_a_bad_request(spec: str) -> None:
    with pytest.raises(BadRequestError, match="must be 'provider:model'"):
        ProviderRegistry(settings()).resolve(spec)


async def test_unknown_local_model_lists_available_ones() -> None:
    provider, model = ProviderRegistry(settings()).resolve("local:gpt-5")
    with pytest.raises(UnknownModelError, match=r"'gpt-5'.*smollm2-135m"):
        await provider.chat(ask(model))


def test_replay_mode_answers_every_spec_from_the_cassette(tmp_path: Path) -> None:
    registry = ProviderRegistry(settings(cassette_mode="replay", cassette_path=tmp_path))
    for spec in ("local:smollm2-135m", "openai:smollm2-135m", "replay:local:smollm2-135m"):
        provider, model = registry.resolve(spec)
        assert isinstance(unwrap(provider), ReplayProvider), spec
        assert model == "smollm2-135m"
    with pytest.raises(UnknownProviderError):
        registry.resolve("nope:x")


async def test_record_mode_wraps_providers_and_replay_reads_it_back(tmp_path: Path) -> None:
    fake = FakeOpenAI().script(completion("recorded answer"))
    recording = ProviderRegistry(
        settings(cassette_mode="record", cassette_path=tmp_path), transport=fake.transport()
    )
    provider, model = recording.resolve("openai:gpt-4o-mini")
    assert isinstance(provider.inner, RecordingProvider)  # type: ignore[attr-defined]
    original = await provider.chat(ask(model))
    await recording.aclose()

    replaying = ProviderRegistry(settings(cassette_mode="replay", cassette_path=tmp_path))
    provider, model = replaying.resolve("openai:gpt-4o-mini")
    assert await provider.chat(ask(model)) == original
    with pytest.raises(CassetteMissError):
        await provider.chat(ask(model, "something else"))
    assert len(fake.requests) == 1


# -- prices --------------------------------------------------------------------------------


def test_price_table_defaults_overrides_and_wildcards() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    table = PriceTable()
    assert table.cost("local", "smollm2-135m", usage) == 0.0
    assert table.cost("openai", "gpt-4o-mini", usage) == pytest.approx(0.15 + 0.30)
    assert table.cost("unknown", "model", usage) == 0.0
    custom = PriceTable(
        {
            "openai:gpt-4o-mini": Price(input_per_mtok=1, output_per_mtok=2),
            "vllm:*": Price(input_per_mtok=0.5, output_per_mtok=0.5),
        }
    )
    assert custom.cost("openai", "gpt-4o-mini", usage) == pytest.approx(2.0)
    assert custom.cost("vllm", "llama", Usage(input_tokens=2000, output_tokens=0)) == pytest.approx(
        0.001
    )
    assert custom.cost("openai", "gpt-4o", usage) == pytest.approx(2.5 + 5.0)


def test_registry_cost_uses_settings_prices() -> None:
    registry = ProviderRegistry(
        settings(prices={"openai:tiny": {"input_per_mtok": 10, "output_per_mtok": 20}})
    )
    assert registry.cost("openai", "tiny", Usage(input_tokens=100, output_tokens=50)) == (
        pytest.approx(0.002)
    )


# -- request validation --------------------------------------------------------------------


def test_request_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"messages\[1\]\.role"):
        ChatRequest(model="m", messages=[{"role": "user"}, {"role": "robot"}])
    with pytest.raises(ValidationError, match="tool_choice"):
        ChatRequest(model="m", messages=[{"role": "user"}], tool_choice="required")
    with pytest.raises(ValidationError, match="duplicate tool names"):
        ChatRequest.model_validate(
            {"model": "m", "messages": [{"role": "user"}], "tools": [{"name": "a"}, {"name": "a"}]}
        )


# -- telemetry -----------------------------------------------------------------------------


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_spans_and_metrics_follow_genai_conventions_without_the_key() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake = FakeOpenAI().script(
        completion("secret-free answer", model="gpt-telemetry-2024"),
        completion("second"),
    )
    labels = {"provider": "openai", "model": "gpt-telemetry"}
    before_ok = metric("cadenza_llm_requests_total", outcome="ok", **labels)
    before_in = metric("cadenza_llm_tokens_total", direction="input", **labels)

    registry = ProviderRegistry(
        settings(), transport=fake.transport(), tracer=tracer_provider.get_tracer("t")
    )
    provider, model = registry.resolve("openai:gpt-telemetry")
    await provider.chat(
        ChatRequest(
            model=model,
            messages=[{"role": "user", "content": "private prompt"}],
            temperature=0.2,
            max_tokens=30,
        )
    )
    span = exporter.get_finished_spans()[0]
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-telemetry"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-telemetry"
    assert attributes["gen_ai.response.model"] == "gpt-telemetry-2024"
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.max_tokens"] == 30
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 7
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.input.messages" not in attributes  # content capture is off by default
    assert SECRET not in json.dumps({k: str(v) for k, v in attributes.items()})
    assert metric("cadenza_llm_requests_total", outcome="ok", **labels) == before_ok + 1
    assert metric("cadenza_llm_tokens_total", direction="input", **labels) == before_in + 11
    assert metric("cadenza_llm_request_duration_seconds_count", **labels) >= 1

    capturing = ProviderRegistry(
        settings(capture_content=True),
        transport=fake.transport(),
        tracer=tracer_provider.get_tracer("t"),
    )
    provider, model = capturing.resolve("openai:gpt-telemetry")
    await provider.chat(ask(model, "private prompt"))
    attributes = dict(exporter.get_finished_spans()[1].attributes or {})
    assert "private prompt" in str(attributes["gen_ai.input.messages"])
    assert "second" in str(attributes["gen_ai.output.messages"])


async def test_failed_call_sets_error_type_and_outcome_metric() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = ProviderRegistry(settings(), tracer=tracer_provider.get_tracer("t"))
    before = metric(
        "cadenza_llm_requests_total", provider="local", model="nope", outcome="llm_unknown_model"
    )
    provider, model = registry.resolve("local:nope")
    with pytest.raises(UnknownModelError):
        await provider.chat(ask(model))
    span = exporter.get_finished_spans()[0]
    assert (span.attributes or {})["error.type"] == "llm_unknown_model"
    assert not span.status.is_ok
    after = metric(
        "cadenza_llm_requests_total", provider="local", model="nope", outcome="llm_unknown_model"
    )
    assert after == before + 1
