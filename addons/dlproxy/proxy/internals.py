"""Every use of mitmproxy's private API, in one place. mitmproxy is pinned to 12.3.x; tests/test_stream_guard.py
and tests/test_dispatch.py pin what these functions rely on, so an upgrade breaks a test, not the proxy.

    swap_addon_manager  turn the master's AddonManager into a subclass, in place (hookindex.IndexedAddonManager)
    close_upstream      close a flow's upstream connection from inside a stream callable (a block mid-stream)
    close_websocket     have the WebSocket layer close both sides with a code and a reason
    proxy_listening     is the proxy server up and listening (/readyz)

Why they are needed: mitmproxy ignores `flow.kill()` while a body streams and for WebSocket messages, and has no
public API for a close frame; its public API neither says whether the proxy server listens.
"""

from __future__ import annotations

import asyncio
import struct

from mitmproxy import addonmanager, ctx, http

POLICY_VIOLATION = 1008  # WebSocket close code
MAX_REASON = 123  # bytes: a close frame's payload is at most 125, two of them the code

_tasks: set[asyncio.Task] = set()


def swap_addon_manager(manager: addonmanager.AddonManager, cls: type) -> None:
    """Make `manager` an instance of `cls` (a subclass adding no state but what it creates lazily): the same
    object, so every reference to it (master, commands, options signals) stays valid."""
    if type(manager) is not addonmanager.AddonManager:
        raise TypeError(f"expected mitmproxy's AddonManager, not {type(manager).__name__}")
    manager.__class__ = cls


def _proxyserver():
    return ctx.master.addons.get("proxyserver")


def _connection_handler(flow: http.HTTPFlow):
    """The ConnectionHandler serving this flow's client: `Proxyserver.connections[client id]`."""
    ps = _proxyserver()
    return ps.connections.get(flow.client_conn.id) if ps is not None else None


def close_upstream(flow: http.HTTPFlow) -> bool:
    """Close the flow's upstream connection now; safe from inside a stream callable. The handler's
    `close_connection(conn)` marks the connection closed and cancels its reader task: the upstream stops
    generating, an HTTP/1 client sees the body end early, an HTTP/2 client sees only this stream reset."""
    handler = _connection_handler(flow)
    conn = flow.server_conn
    if handler is None or conn is None or conn not in handler.transports:
        return False
    handler.close_connection(conn)
    return True


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked (server-to-client) close frame."""
    payload = struct.pack("!H", code) + reason.encode("utf-8")[:MAX_REASON]
    return bytes([0x88, len(payload)]) + payload


def close_websocket(flow: http.HTTPFlow, code: int, reason: str) -> bool:
    """Have mitmproxy's WebSocket layer close both sides with `code` and `reason`.

    The layer is fed a close frame *as if the upstream had sent it* (a `DataReceived` event for the server
    connection, through the handler's `server_event`: the path `inject.websocket` uses). It then runs its own
    close handling: close(code, reason) to the client, echoed to the upstream, both connections closed,
    `websocket_end` fired."""
    from mitmproxy.proxy import events

    handler = _connection_handler(flow)
    if handler is None or flow.server_conn is None:
        return False
    event = events.DataReceived(flow.server_conn, close_frame(code, reason))
    task = asyncio.get_running_loop().create_task(handler.server_event(event), name="dlp-websocket-close")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return True


def proxy_listening() -> str:
    """"" when mitmproxy's proxy server runs and listens, else why not (for /readyz)."""
    ps = _proxyserver()
    if ps is None or not ps.is_running:
        return "proxy not running"
    try:
        if not ps.listen_addrs():
            return "proxy not listening"
    except Exception:  # a server instance in an odd state: not ready, never a 500
        return "proxy not listening"
    return ""
