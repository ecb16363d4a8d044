"""``provider:model`` -> a ready provider. Providers are built lazily from ``LLMSettings``, cached,
and wrapped with telemetry (and, in record mode, with a cassette recorder)."""

from __future__ import annotations

import threading

import httpx
from opentelemetry.trace import Tracer

from .cassette import Cassette, RecordingProvider, ReplayProvider
from .errors import BadRequestError, UnknownProviderError
from .local import LocalProvider
from .openai_compatible import OpenAICompatibleProvider
from .prices import PriceTable
from .provider import Provider
from .settings import LLMSettings, OpenAIProviderSettings
from .telemetry import InstrumentedProvider
from .types import Usage


class ProviderRegistry:
    """Resolves ``provider:model`` strings (an agent's ``model`` field).

    Providers: ``local`` (embedded model), ``replay`` (cassette) and every name under
    ``settings.providers`` (OpenAI-compatible). With ``cassette_mode=replay`` EVERY spec is
    answered by the replay provider, so agents keep their real ``model`` while tests replay;
    with ``cassette_mode=record`` every provider's answers are also written to the cassette."""

    def __init__(
        self,
        settings: LLMSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings or LLMSettings()
        self.prices = PriceTable(self.settings.prices)
        self._transport = transport
        self._tracer = tracer
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._cassette: Cassette | None = None

    @property
    def provider_names(self) -> list[str]:
        return sorted(["local", "replay", *self.settings.providers])

    def cassette(self) -> Cassette:
        """The cassette of record/replay mode (one per registry, shared by its providers)."""
        with self._lock:
            return self._cassette_unlocked()

    def resolve(self, spec: str) -> tuple[Provider, str]:
        """``"local:smollm2-135m"`` -> (provider, ``"smollm2-135m"``). The model name goes into
        ``ChatRequest.model``. Raises ``UnknownProviderError`` naming the known providers."""
        provider_name, sep, model = spec.partition(":")
        if not sep or not provider_name or not model:
            raise BadRequestError(
                f"model {spec!r} must be 'provider:model' (e.g. local:smollm2-135m)"
            )
        if provider_name not in self.provider_names:
            raise UnknownProviderError(
                f"model {spec!r}: unknown provider {provider_name!r} "
                f"(known: {', '.join(self.provider_names)}; configure more with CADENZA_LLM_PROVIDERS)"
            )
        if provider_name == "replay":
            # "replay:local:smollm2-135m" replays what "local:smollm2-135m" recorded.
            inner, sep, rest = model.partition(":")
            if sep and inner in self.provider_names:
                model = rest
        if self.settings.cassette_mode == "replay":
            provider_name = "replay"
        return self._provider(provider_name), model

    def _provider(self, name: str) -> Provider:
        with self._lock:
            provider = self._providers.get(name)
            if provider is None:
                provider = self._providers[name] = self._build(name)
            return provider

    @property
    def replays_everything(self) -> bool:
        """In replay mode every ``provider:model`` is answered from the cassette."""
        return self.settings.cassette_mode == "replay"

    def endpoint_provider(self, name: str, endpoint: OpenAIProviderSettings) -> Provider:
        """A provider for an endpoint that is not in the settings (a tenant's own, BYOK),
        instrumented (and recorded) like the configured ones. Not cached here: the caller
        owns it and closes it with ``aclose``."""
        with self._lock:
            return self._wrap(OpenAICompatibleProvider(name, endpoint, transport=self._transport))

    def _build(self, name: str) -> Provider:
        """Called under ``_lock``; constructing a provider is cheap (models load on first use)."""
        if name == "replay":
            return self._instrument(
                ReplayProvider(self._cassette_unlocked(), self.settings.replay_delay_s)
            )
        provider: Provider
        if name == "local":
            provider = LocalProvider(self.settings)
        else:
            provider = OpenAICompatibleProvider(
                name, self.settings.providers[name], transport=self._transport
            )
        return self._wrap(provider)

    def _wrap(self, provider: Provider) -> Provider:
        """Called under ``_lock``: record mode's recorder, then telemetry."""
        if self.settings.cassette_mode == "record":
            provider = RecordingProvider(provider, self._cassette_unlocked())
        return self._instrument(provider)

    def _instrument(self, provider: Provider) -> Provider:
        return InstrumentedProvider(
            provider, capture_content=self.settings.capture_content, tracer=self._tracer
        )

    def _cassette_unlocked(self) -> Cassette:
        if self._cassette is None:
            self._cassette = Cassette(self.settings.cassette_file())
        return self._cassette

    def cost(self, provider: str, model: str, usage: Usage) -> float:
        """USD of a call; pass the RESPONSE's provider and model (replay answers as recorded)."""
        return self.prices.cost(provider, model, usage)

    async def aclose(self) -> None:
        with self._lock:
            providers = list(self._providers.values())
            self._providers.clear()
        for provider in providers:
            await provider.aclose()
