"""The metrics ports of the orchestrator, workers and rag-ingest: behind the operators'
bearer token when one is set, and never beyond loopback without one (their metrics carry
tenant ids in labels)."""

from __future__ import annotations

import httpx
import pytest
from cadenza_runtime import InsecureEndpoint, MetricsSettings, bearer_matches, serve_metrics
from prometheus_client import Counter
from pydantic import SecretStr

pytestmark = pytest.mark.unit

PROBE = Counter("cadenza_test_internal_probe_total", "A metric the scrape must show.", ["tenant"])


def test_the_metrics_port_answers_only_the_operators_token() -> None:
    PROBE.labels("acme").inc()
    settings = MetricsSettings(token=SecretStr("ops-token-xyz"))
    server = serve_metrics(_free_port(), "127.0.0.1", settings=settings)
    assert server is not None
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "ops-token-xyz"}):
            refused = httpx.get(url, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "acme" not in refused.text
        health = httpx.get(url.replace("/metrics", "/healthz"))
        assert (health.status_code, health.text) == (200, "ok\n")  # probes need no token
        scraped = httpx.get(url, headers={"Authorization": "Bearer ops-token-xyz"})
        assert scraped.status_code == 200
        assert 'cadenza_test_internal_probe_total{tenant="acme"}' in scraped.text
    finally:
        server.shutdown()
        server.server_close()


def test_without_a_token_the_metrics_port_stays_on_loopback() -> None:
    with pytest.raises(InsecureEndpoint, match="CADENZA_METRICS_TOKEN"):
        serve_metrics(9, "0.0.0.0", settings=MetricsSettings())
    assert serve_metrics(0, "0.0.0.0", settings=MetricsSettings()) is None  # 0 = disabled
    open_server = serve_metrics(_free_port(), "127.0.0.1", settings=MetricsSettings())
    assert open_server is not None
    try:
        url = f"http://127.0.0.1:{open_server.server_port}/metrics"
        assert httpx.get(url).status_code == 200  # a laptop's Prometheus needs no token
    finally:
        open_server.shutdown()
        open_server.server_close()


def test_bearer_matching() -> None:
    assert bearer_matches("Bearer abc", "abc")
    assert bearer_matches("bearer abc", "abc")
    assert not bearer_matches("Bearer abcd", "abc")
    assert not bearer_matches(None, "abc")
    assert not bearer_matches("Basic abc", "abc")
    assert bearer_matches(None, "")  # no token configured: open (loopback only)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
