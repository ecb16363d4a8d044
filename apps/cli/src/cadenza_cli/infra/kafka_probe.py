"""A minimal Kafka wire-protocol probe: is the group coordinator available?

Only the events adapter may import a Kafka client library, so readiness is checked with a
hand-rolled FindCoordinator request (non-flexible v1). The first FindCoordinator also makes
the broker create ``__consumer_offsets``; doing it during ``infra up`` means the first consumer
group in a test does not pay for that.
"""

from __future__ import annotations

import socket
import struct

API_VERSIONS = 18
FIND_COORDINATOR = 10
NONE = 0


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def encode_request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """Size-prefixed request with header v1 (api key, version, correlation id, client id)."""
    header = struct.pack(">hhi", api_key, version, correlation_id) + _string("cadenza-infra")
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def _roundtrip(sock: socket.socket, request: bytes, correlation_id: int) -> bytes:
    sock.sendall(request)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    payload = _recv_exact(sock, size)
    (got,) = struct.unpack(">i", payload[:4])
    if got != correlation_id:
        raise ConnectionError(f"correlation id mismatch: {got} != {correlation_id}")
    return payload[4:]


def parse_api_versions(body: bytes) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 response body -> {api_key: (min_version, max_version)}."""
    error, count = struct.unpack(">hi", body[:6])
    if error != NONE:
        raise ConnectionError(f"ApiVersions error code {error}")
    out: dict[int, tuple[int, int]] = {}
    for i in range(count):
        key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i : 12 + 6 * i])
        out[key] = (lo, hi)
    return out


def parse_find_coordinator_v1(body: bytes) -> tuple[int, int]:
    """FindCoordinator v1 response body -> (error_code, coordinator node id)."""
    _throttle, error, msg_len = struct.unpack(">ihh", body[:8])
    pos = 8 + max(msg_len, 0)
    (node_id,) = struct.unpack(">i", body[pos : pos + 4])
    return error, node_id


def group_coordinator_ready(host: str, port: int, group: str = "cadenza-infra-probe") -> bool:
    """True once the broker answers FindCoordinator for ``group`` without error."""
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.settimeout(5)
        versions = parse_api_versions(_roundtrip(sock, encode_request(API_VERSIONS, 0, 1, b""), 1))
        lo, hi = versions.get(FIND_COORDINATOR, (-1, -1))
        if not lo <= 1 <= hi:
            raise ConnectionError(f"broker does not support FindCoordinator v1 ({lo}..{hi})")
        body = _string(group) + struct.pack(">b", 0)  # key_type 0 = consumer group
        error, node_id = parse_find_coordinator_v1(
            _roundtrip(sock, encode_request(FIND_COORDINATOR, 1, 2, body), 2)
        )
        return error == NONE and node_id >= 0
