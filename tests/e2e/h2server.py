"""A small HTTP/2-only TLS upstream (the `h2` library on plain sockets) for what the HTTP/1 test upstream cannot
do: HTTP/2 end to end through the proxy, request trailers that arrive as HTTP/2 trailers, and responses that end
in trailers (gRPC-style `grpc-status`/`grpc-message`) or stream without a length.

    server = H2Server(cert, key).start()          # ALPN h2 only; binds 127.0.0.1
    server.respond("/path", [b"part1", b"part2"], headers=[("content-type", "text/event-stream")],
                   trailers=[("grpc-status", "0")])
    server.received                               # [H2Received(method, path, headers, body, trailers), ...]
    server.url                                    # "https://localhost:PORT"

Each reply is sent as one DATA frame per piece (no content-length unless given), then the trailers, if any.

Clients for trailers, which HTTP client libraries do not send:
    h2_exchange(proxy_port, proxy_ca, target_port, method, path, body, headers, trailers) -> H2Result
    h1_chunked_post(proxy_port, url, trailers, body) -> the raw bytes the proxy answered
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class H2Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def carries(self, secret: str) -> bool:
        text = " ".join(f"{k}: {v}" for k, v in self.headers + self.trailers) + self.path
        return secret in text or secret.encode() in self.body


@dataclass
class _Reply:
    pieces: list[bytes]
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] | None = None


class H2Server:
    def __init__(self, cert: str, key: str):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.received: list[H2Received] = []
        self.routes: dict[str, _Reply] = {}
        self._closed = False

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def respond(self, path: str, pieces: list[bytes], status: int = 200, headers: list | None = None,
                trailers: list | None = None) -> None:
        self.routes[path] = _Reply(list(pieces), status, list(headers or []), trailers)

    def reset(self) -> None:
        self.received.clear()
        self.routes.clear()

    def start(self) -> H2Server:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def shutdown(self) -> None:
        self._closed = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as sock:
                sock.settimeout(30)
                self._h2(sock)
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass  # the proxy closed or reset the connection: what a cut does

    def _h2(self, sock: ssl.SSLSocket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                                                    validate_inbound_headers=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams: dict[int, H2Received] = {}
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    head = dict(event.headers)
                    streams[event.stream_id] = H2Received(head.get(":method", ""), head.get(":path", ""),
                                                          [(k, v) for k, v in event.headers if not k.startswith(":")])
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id].body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    streams[event.stream_id].trailers = list(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    request = streams.pop(event.stream_id)
                    self.received.append(request)
                    self._reply(sock, conn, event.stream_id, request)
            sock.sendall(conn.data_to_send())

    def _reply(self, sock: ssl.SSLSocket, conn: h2.connection.H2Connection, stream_id: int,
               request: H2Received) -> None:
        reply = self.routes.get(request.path.split("?")[0]) or _Reply([b'{"ok": true}'],
                                                                       headers=[("content-type", "application/json")])
        conn.send_headers(stream_id, [(":status", str(reply.status)), *reply.headers],
                          end_stream=not reply.pieces and not reply.trailers)
        sock.sendall(conn.data_to_send())
        time.sleep(0.005)
        for i, piece in enumerate(reply.pieces):
            last = i == len(reply.pieces) - 1 and not reply.trailers
            conn.send_data(stream_id, piece, end_stream=last)
            sock.sendall(conn.data_to_send())
            time.sleep(0.005)  # separate reads at the proxy: a real stream, not one buffer
        if reply.trailers:
            conn.send_headers(stream_id, reply.trailers, end_stream=True)
        sock.sendall(conn.data_to_send())


# --- the client side: one HTTP/2 exchange through a proxy's CONNECT tunnel ------------------------------------


class H2First(ssl.SSLContext):
    """httpcore offers ALPN ["http/1.1", "h2"] and mitmproxy honours the client's order; real clients (curl,
    browsers, Go, Node) offer h2 first. This context keeps the h2-first order whatever httpcore asks for."""

    def set_alpn_protocols(self, protocols):
        super().set_alpn_protocols(["h2", "http/1.1"])



@dataclass
class H2Result:
    status: int | None = None  # None: no response head (the stream was reset or the connection closed)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False  # the response ended cleanly (END_STREAM), not by a reset or a closed connection

    def text(self) -> str:
        """Everything the client received, as one string (for leak checks)."""
        fields = " ".join(f"{k}: {v}" for k, v in self.headers + self.trailers)
        return fields + " " + self.body.decode("latin-1")


def open_tunnel(proxy_port: int, authority: str) -> socket.socket:
    """A socket through the proxy's CONNECT tunnel to `authority` (host:port), its 200 read."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=30)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the proxy closed the tunnel"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def h2_exchange(proxy_port: int, proxy_ca: str, target_port: int | None, method: str, path: str, body: bytes = b"",
                headers: list | None = None, trailers: list | None = None) -> H2Result:
    """One HTTP/2 request (with request trailers when given) to https://localhost:`target_port` through the
    proxy's CONNECT tunnel (`target_port` None: to the proxy itself, a reverse listener), using the `h2` library
    on a raw socket (HTTP clients cannot send trailers)."""
    result = H2Result()
    authority = f"localhost:{target_port or proxy_port}"
    opened = open_tunnel(proxy_port, authority) if target_port else socket.create_connection(("127.0.0.1", proxy_port),
                                                                                           timeout=30)
    with opened as raw:
        context = ssl.create_default_context(cafile=proxy_ca)
        context.set_alpn_protocols(["h2"])
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "h2"
            conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
            conn.initiate_connection()
            conn.send_headers(1, [(":method", method), (":scheme", "https"), (":authority", authority),
                                  (":path", path), *(headers or [])], end_stream=not body and not trailers)
            if body:
                conn.send_data(1, body, end_stream=not trailers)
            if trailers:
                conn.send_headers(1, trailers, end_stream=True)
            sock.sendall(conn.data_to_send())
            while True:
                try:
                    data = sock.recv(65536)
                except (OSError, ssl.SSLError):
                    return result
                if not data:
                    return result
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        head = dict(event.headers)
                        result.status = int(head[":status"])
                        result.headers = [(k, v) for k, v in event.headers if not k.startswith(":")]
                    elif isinstance(event, h2.events.DataReceived):
                        result.body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        result.trailers = list(event.headers)
                    elif isinstance(event, h2.events.StreamEnded):
                        result.ended = True
                        return result
                    elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                        return result
                sock.sendall(conn.data_to_send())


def h1_chunked_post(proxy_port: int, url: str, trailers: list[tuple[str, str]], body: bytes = b"hello",
                    headers: list | None = None) -> bytes:
    """A chunked HTTP/1.1 POST to `url` (http://host:port/path, absolute form) through the proxy, ending in a
    trailer section, on a raw socket (curl's command line cannot send trailers). Returns all the proxy sent back
    until it closed the connection (a proxy that hangs makes this raise TimeoutError)."""
    parts = urllib.parse.urlsplit(url)
    names = ", ".join(k for k, _ in trailers)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers or [])
    head = (f"POST {url} HTTP/1.1\r\nHost: {parts.netloc}\r\nTransfer-Encoding: chunked\r\nTrailer: {names}\r\n"
            f"{extra}Connection: close\r\n\r\n")
    section = "".join(f"{k}: {v}\r\n" for k, v in trailers)
    wire = head.encode() + b"%x\r\n%s\r\n" % (len(body), body) + b"0\r\n" + section.encode() + b"\r\n"
    got = b""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as sock:
        sock.sendall(wire)
        while chunk := sock.recv(65536):
            got += chunk
    return got
