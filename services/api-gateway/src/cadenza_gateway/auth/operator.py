"""Operator-only endpoints (``/metrics``): their labels name tenants, so no tenant's
credential reads them; an operator's scraper sends ``CADENZA_GATEWAY_AUTH_METRICS_TOKEN``."""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .problems import Unauthenticated
from .settings import AuthSettings

operator_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="operator",
    description="`Authorization: Bearer <CADENZA_GATEWAY_AUTH_METRICS_TOKEN>` (operators' "
    "scrapers only; tenants' API keys and tokens are refused).",
)


async def require_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(operator_bearer)],
) -> None:
    settings = cast(AuthSettings, request.app.state.settings.auth)
    token = settings.metrics_token.get_secret_value()
    if token:
        sent = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(sent.encode(), token.encode()):
            raise Unauthenticated("the metrics are for operators: send the metrics token")
        return
    if not settings.anonymous_access:
        raise Unauthenticated(
            "the metrics are for operators: set CADENZA_GATEWAY_AUTH_METRICS_TOKEN on the "
            "gateway and send it as a bearer token",
            error="",
        )
