"""Bearer tokens of the internal endpoints: the metrics ports of the orchestrator, workers and
rag-ingest (``CADENZA_METRICS_TOKEN``, the operators' scraper) and rag-ingest's search API
(``CADENZA_RETRIEVAL_SEARCH_TOKEN``, the gateway and workers).

The rule, as for the gateway's dev mode: an endpoint without a token may only listen on a
loopback address (a laptop, `cadenza infra up`); anywhere else it refuses to start, because
metrics carry tenant ids in labels and the search API acts for whichever tenant it is told.
"""

from __future__ import annotations

import hmac
from ipaddress import ip_address


class InsecureEndpoint(ValueError):
    """An internal endpoint would listen beyond loopback without a token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def require_token_off_loopback(host: str, token: str, *, what: str, variable: str) -> None:
    """Refuse ``host`` without ``token`` unless it is a loopback address."""
    if not token and not is_loopback(host):
        raise InsecureEndpoint(
            f"{what} on {host} without a token: anyone who can reach it could read it; "
            f"set {variable} (and send it as a bearer token) or listen on 127.0.0.1"
        )


def bearer_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time. No token = open."""
    if not token:
        return True
    scheme, _, sent = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode())
