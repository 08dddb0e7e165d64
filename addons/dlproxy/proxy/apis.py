"""Which AI API a flow speaks, and a block in that API's own error format (so its client raises its own error).

    api_of(flow)                   openai | anthropic | gemini | ollama | vercel-data | vercel-ui | mcp | None
    jsonrpc_request(flow)          (id, method) of a JSON-RPC request body (MCP streamable HTTP), or None
    api_block_response(flow, ...)  enforce.block_response, shaped for the API:
        anthropic  {"type": "error", "error": {...}}: the block body plus Anthropic's top-level `type`
        gemini     the block body plus Google's `status: PERMISSION_DENIED`
        mcp        a JSON-RPC error response (HTTP 200, code -32001, the block body's error as `data`) to the
                   request's id: an agent gets a tool error it can handle, not a transport failure
        otherwise  the 403 block body of docs/contracts.md, unchanged
    Every shape keeps the incident id (and the X-DLP-Incident header).

Streams get the same APIs' error events from inspect/sse.error_event.
"""

from __future__ import annotations

import json

from mitmproxy import http

from ..engine.vocab import Direction
from ..inspect.policy import Decision
from ..inspect.sse import jsonrpc_error
from .enforce import block_response


def api_of(flow: http.HTTPFlow) -> str | None:
    """By the request (host, path, headers) and, once there, the response headers."""
    req = flow.request
    host = req.pretty_host.lower()
    path = req.path.split("?", 1)[0].rstrip("/")
    resp = flow.response
    if resp is not None:
        if "x-vercel-ai-data-stream" in resp.headers:
            return "vercel-data"
        if "x-vercel-ai-ui-message-stream" in resp.headers:
            return "vercel-ui"
    if "anthropic" in host or "anthropic-version" in req.headers or path.endswith("/messages"):
        return "anthropic"
    if "openai" in host or path.endswith(("/chat/completions", "/completions", "/responses")):
        return "openai"
    lower = path.lower()
    if ":streamgeneratecontent" in lower or ":generatecontent" in lower or "generativelanguage" in host:
        return "gemini"
    if path.endswith(("/api/chat", "/api/generate")):
        return "ollama"
    if jsonrpc_request(flow) is not None:
        return "mcp"
    return None


def jsonrpc_request(flow: http.HTTPFlow) -> tuple[object, str] | None:
    """(id, method) of a JSON-RPC 2.0 request body, None for anything else (or a streamed request)."""
    req = flow.request
    if req.stream or "json" not in req.headers.get("content-type", "").lower():
        return None
    try:
        body = json.loads(req.raw_content or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(body, dict) and body.get("jsonrpc") == "2.0" and isinstance(body.get("method"), str):
        return body.get("id"), body["method"]
    return None


def api_block_response(flow: http.HTTPFlow, decision: Decision, incident_id: str,
                       direction: str = Direction.REQUEST) -> http.Response:
    response = block_response(decision, incident_id, direction)
    try:
        api = api_of(flow)
        if api not in ("anthropic", "gemini", "mcp"):
            return response
        body = json.loads(response.content)
        if api == "anthropic":
            body = {"type": "error", **body}
        elif api == "gemini":
            body["error"]["status"] = "PERMISSION_DENIED"
        else:
            rpc = jsonrpc_request(flow)
            body = jsonrpc_error(body, rpc[0] if rpc else None)
            response.status_code = 200
        response.content = json.dumps(body, ensure_ascii=False).encode()
    except Exception:  # the contract's own 403 is always a correct answer
        return block_response(decision, incident_id, direction)
    return response
