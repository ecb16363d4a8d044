"""`http_request`: one HTTP call to a public address, with a capped time and response size.

The target is resolved and checked first, then the connection goes to the checked address
(URL host replaced by the IP, `Host` header and TLS SNI/verification kept on the name), so
a second DNS answer cannot smuggle the request to an internal address (DNS rebinding).
Redirects are returned, not followed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from cadenza_events import NonRetryableError, RetryableError
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidParamsError, parse_params
from ..settings import WorkerSettings
from .base import ToolContext
from .netguard import IPAddress, resolve_allowed

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Reads. Writes count as not idempotent — even PUT and DELETE, which HTTP calls idempotent:
# "delete the newest order" twice deletes two (an effect in doubt is for a person to judge).
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Overloaded or throttled servers ask to be retried; other client errors are final.
_RETRYABLE_4XX = frozenset({408, 425, 429})


class HttpRequestParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    url: str = Field(min_length=1, max_length=8192, description="http:// or https:// URL.")
    method: str = Field(default="GET", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    json_body: Any = Field(default=None, alias="json", description="JSON request body.")
    body: str | None = Field(default=None, description="Raw request body (text).")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Time limit; capped by CADENZA_WORKER_HTTP_TIMEOUT_S."
    )


class HttpStatusError(RetryableError):
    """The server answered with an error status (5xx retryable, 4xx not)."""

    code = "http_status"

    def __init__(self, status: int, message: str) -> None:
        retryable = status >= 500 or status in _RETRYABLE_4XX
        super().__init__(message, code=f"http_{status}", retryable=retryable)
        self.status = status


class ResponseTooLargeError(NonRetryableError):
    code = "response_too_large"


class HttpRequestTool:
    """See docs/tools.md. Output: `{status, headers, json}` or `{status, headers, body}`."""

    name = "http_request"
    side_effects = True
    description = (
        "Make one HTTP request to a public http(s) URL and get back its status, headers "
        "and body (JSON parsed when the response is JSON)."
    )
    params_model = HttpRequestParams

    @staticmethod
    def is_idempotent(params: dict[str, Any]) -> bool:
        return str(params.get("method", "GET")).upper() in _READ_METHODS

    def __init__(self, settings: WorkerSettings) -> None:
        self._allow_private = settings.http_allow_private
        self._max_bytes = settings.http_max_response_bytes
        self._timeout_cap = settings.http_timeout_s
        # trust_env=False: a proxy from the environment would resolve names itself and
        # bypass the address check.
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        p: HttpRequestParams = parse_params(HttpRequestParams, params, self.name)
        method = p.method.upper()
        if method not in _METHODS:
            raise InvalidParamsError(f"http_request: unsupported method {p.method!r}")
        if "json_body" in p.model_fields_set and p.body is not None:  # both given
            raise InvalidParamsError("http_request: give either `json` or `body`, not both")
        url = _parse_url(p.url)
        timeout = min(p.timeout_s or self._timeout_cap, self._timeout_cap)
        addresses = await resolve_allowed(
            url.host, url.port or _DEFAULT_PORTS[url.scheme], allow_private=self._allow_private
        )
        headers = {k: v for k, v in p.headers.items() if k.lower() != "host"}
        headers["Host"] = url.netloc.decode("ascii")
        extensions: dict[str, Any] = {}
        if url.scheme == "https":
            extensions["sni_hostname"] = url.host  # certificate checked against the name
        has_json = "json_body" in p.model_fields_set

        def build(ip: IPAddress) -> httpx.Request:
            return self._client.build_request(
                method,
                url.copy_with(host=str(ip)),
                headers=headers,
                json=p.json_body if has_json else None,
                content=p.body.encode() if p.body is not None else None,
                timeout=httpx.Timeout(timeout),
                extensions=extensions,
            )

        try:
            async with asyncio.timeout(timeout):
                for ip in addresses[:-1]:
                    try:
                        return await self._send(build(ip), p.url)
                    except httpx.ConnectError:
                        continue  # refused or unreachable: try the next address
                return await self._send(build(addresses[-1]), p.url)
        except TimeoutError as exc:
            raise RetryableError(
                f"http_request: {method} {p.url} took longer than {timeout}s", code="http_timeout"
            ) from exc
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"http_request: {method} {p.url} timed out ({type(exc).__name__})",
                code="http_timeout",
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableError(
                f"http_request: {method} {p.url} failed: {type(exc).__name__}: {exc}",
                code="http_connection",
            ) from exc

    async def _send(self, request: httpx.Request, shown_url: str) -> dict[str, Any]:
        response = await self._client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_bytes:
                raise self._too_large(shown_url)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise self._too_large(shown_url)
        finally:
            await response.aclose()
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if response.status_code >= 400:
            raise HttpStatusError(
                response.status_code,
                f"http_request: {request.method} {shown_url} answered "
                f"{response.status_code} {response.reason_phrase}: {text[:500]}",
            )
        out: dict[str, Any] = {"status": response.status_code, "headers": dict(response.headers)}
        if "json" in response.headers.get("content-type", "").lower():
            try:
                out["json"] = json.loads(body)
                return out
            except ValueError:
                pass  # mislabelled: hand it back as text
        out["body"] = text
        return out

    def _too_large(self, shown_url: str) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"http_request: response of {shown_url} exceeds {self._max_bytes} bytes "
            "(CADENZA_WORKER_HTTP_MAX_RESPONSE_BYTES)"
        )


def _parse_url(raw: str) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise InvalidParamsError(f"http_request: invalid url {raw!r}: {exc}") from exc
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        raise InvalidParamsError(f"http_request: url must be http(s)://host/…, got {raw!r}")
    if url.userinfo:
        raise InvalidParamsError(
            "http_request: credentials in the url are not allowed; use headers"
        )
    return url
