"""Metrics: the contract names and labels, the scrape, and the /metrics /healthz /readyz server."""

from __future__ import annotations

import asyncio
import collections
import logging
import re

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from dlproxy.engine.vocab import Direction, Verdict
from dlproxy.ops.metrics import Metrics, MetricsServer
from dlproxy.proxy.internals import proxy_listening

# docs/contracts.md "Metrics". Adding a metric here is fine; changing a line is a contract break.
CONTRACT = {
    "dlproxy_flows": ("counter", {"direction", "verdict"}),
    "dlproxy_detections": ("counter", {"entry", "direction", "action"}),
    "dlproxy_scanned_bytes": ("counter", {"direction"}),
    "dlproxy_scan_duration_seconds": ("histogram", {"direction"}),
    "dlproxy_inspection_errors": ("counter", {"reason"}),
    "dlproxy_profile_entries": ("gauge", {"profile"}),
    "dlproxy_profile_reloads": ("counter", {"result"}),
    "dlproxy_candidates": ("counter", {"entry", "result"}),
    "dlproxy_unscannable": ("counter", {"reason"}),
}
ADDITIVE = {
    "dlproxy_incidents": ("counter", {"action"}),
    "dlproxy_webhook_delivered": ("counter", set()),
    "dlproxy_webhook_dropped": ("counter", {"reason"}),
    "dlproxy_policy_decisions": ("counter", {"policy", "action"}),
    "dlproxy_principal_refusals": ("counter", {"source", "reason"}),
    "dlproxy_revocations": ("counter", {"revoker", "result"}),
    "dlproxy_revocation_queue_depth": ("gauge", set()),
    "dlproxy_dry_run": ("counter", {"direction", "verdict"}),
    "dlproxy_dry_run_enabled": ("gauge", set()),
}
ATTRIBUTES = ["flows_total", "detections_total", "scanned_bytes_total", "scan_duration_seconds",
              "inspection_errors_total", "profile_entries", "profile_reloads_total", "candidates_total",
              "unscannable_total"]


def families(m: Metrics) -> dict[str, tuple[str, set[str]]]:
    out = {}
    for fam in m.registry.collect():
        labels = set()
        for s in fam.samples:
            labels |= set(s.labels) - {"le"}
        out[fam.name] = (fam.type, labels)
    return out


def test_names_types_and_labels_are_the_contract():
    m = Metrics()
    m.detections_total.labels(entry="github-pat", direction="request", action="block").inc()
    m.inspection_errors_total.labels(reason="decode").inc()
    m.set_profile("credentials-and-secrets", 3)
    m.count_candidates({("github-pat", "validated"): 1})
    m.unscannable_total.labels(reason="encrypted_archive").inc()
    m.policy_decisions_total.labels(policy="ci-publishes-to-npm", action="allow").inc()
    m.principal_refusals_total.labels(source="jwt-header", reason="expired").inc()
    m.revocations_total.labels(revoker="github", result="revoked").inc()
    got = families(m)
    for name, spec in {**CONTRACT, **ADDITIVE}.items():
        assert got.get(name) == spec, name
    assert set(got) == set(CONTRACT) | set(ADDITIVE), "a new metric? add it to ADDITIVE (never rename)"


def test_attribute_names_map_to_prometheus_names():
    m = Metrics()
    for attr in ATTRIBUTES:
        metric = getattr(m, attr)
        assert metric._name in ("dlproxy_" + attr, "dlproxy_" + attr.removesuffix("_total"))


def test_scrape_has_preinitialised_zeros_and_no_created_series():
    text = Metrics().render().decode()
    for d in Direction:
        for v in Verdict:
            assert f'dlproxy_flows_total{{direction="{d}",verdict="{v}"}} 0.0' in text
        assert f'dlproxy_scanned_bytes_total{{direction="{d}"}} 0.0' in text
        assert f'dlproxy_scan_duration_seconds_count{{direction="{d}"}} 0.0' in text
    assert 'dlproxy_profile_reloads_total{result="ok"} 0.0' in text
    assert 'dlproxy_profile_reloads_total{result="error"} 0.0' in text
    assert "_created" not in text
    assert "# TYPE dlproxy_scan_duration_seconds histogram" in text


def test_values_move():
    m = Metrics()
    m.flows_total.labels(direction="request", verdict="blocked").inc()
    m.scanned_bytes_total.labels(direction="request").inc(1234)
    m.scan_duration_seconds.labels(direction="request").observe(0.003)
    m.count_candidates(collections.Counter({("github-pat", "checksum_failed"): 2, ("github-pat", "validated"): 0}))
    text = m.render().decode()
    assert 'dlproxy_flows_total{direction="request",verdict="blocked"} 1.0' in text
    assert 'dlproxy_scanned_bytes_total{direction="request"} 1234.0' in text
    assert 'dlproxy_scan_duration_seconds_count{direction="request"} 1.0' in text
    assert 'dlproxy_candidates_total{entry="github-pat",result="checksum_failed"} 2.0' in text
    assert 'result="validated"' not in text  # zero tallies are not turned into series


def test_profile_gauge_keeps_one_series():
    m = Metrics()
    m.set_profile("a", 3)
    m.set_profile("b", 5)
    text = m.render().decode()
    assert 'dlproxy_profile_entries{profile="b"} 5.0' in text
    assert 'profile="a"' not in text


def test_two_instances_never_collide():
    # A `-s` script reload re-creates Metrics: with the global registry this raised DuplicateTimeseries.
    a, b = Metrics(), Metrics()
    a.flows_total.labels(direction="request", verdict="clean").inc()
    assert b'verdict="clean"} 0.0' in b.render()


# --- the HTTP server ---------------------------------------------------------------------------------

class FakeState:
    ready = False


class FakeProxyServer:
    name = "proxyserver"
    is_running = True
    addrs = [("127.0.0.1", 8080)]

    def listen_addrs(self):
        return self.addrs


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def started(server: MetricsServer) -> int:
    for _ in range(200):
        if server.address:
            return server.address[1]
        await asyncio.sleep(0.01)
    raise AssertionError("metrics server did not start")


def test_server_endpoints(caplog):
    caplog.set_level(logging.INFO)

    async def main():
        m, state, ps = Metrics(), FakeState(), FakeProxyServer()
        server = MetricsServer(m, state, proxy_listening)
        with taddons.context(server, ps) as tctx:
            tctx.configure(server, dlp_metrics_host="127.0.0.1", dlp_metrics_port=0)
            server.running()
            port = await started(server)
            m.flows_total.labels(direction="request", verdict="blocked").inc()

            status, headers, body = await get(port, "/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert b'dlproxy_flows_total{direction="request",verdict="blocked"} 1.0' in body
            assert (await get(port, "/healthz"))[0] == 200

            assert (await get(port, "/readyz"))[:3:2] == (503, b"not ready: profile not loaded\n")
            state.ready = True
            assert (await get(port, "/readyz"))[0] == 200
            ps.is_running = False
            assert (await get(port, "/readyz"))[0] == 503
            ps.is_running, ps.addrs = True, []
            assert (await get(port, "/readyz"))[2] == b"not ready: proxy not listening\n"
            ps.addrs = [("127.0.0.1", 8080)]

            status, _, body = await get(port, "/metrics", "HEAD")
            assert status == 200 and body == b""
            assert (await get(port, "/metrics", "POST"))[0] == 405
            assert (await get(port, "/nope"))[0] == 404
            assert (await get(port, "/metrics?x=1"))[0] == 200

            server.done()
            with pytest.raises(OSError):
                await get(port, "/healthz")
        return port

    port = asyncio.run(main())
    assert f"dlproxy metrics listening at 127.0.0.1:{port}" in caplog.text


def test_readyz_is_not_ready_until_wired():
    state = FakeState()
    state.ready = True
    assert MetricsServer(Metrics()).respond("GET", "/readyz")[:3:2] == (503, b"not ready: profile not loaded\n")
    assert MetricsServer(Metrics(), state).respond("GET", "/readyz")[2] == b"not ready: proxy not running\n"
    assert MetricsServer(Metrics(), state, lambda: "").respond("GET", "/readyz")[0] == 200


def test_garbage_and_slow_clients_do_not_hurt():
    async def main():
        server = MetricsServer(Metrics(), FakeState())
        server.READ_TIMEOUT = 0.2
        with taddons.context(server, FakeProxyServer()) as tctx:
            tctx.configure(server, dlp_metrics_port=0)
            server.running()
            port = await started(server)
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"NONSENSE\r\n\r\n")
            assert (await r.read()).startswith(b"HTTP/1.1 400")
            r, w = await asyncio.open_connection("127.0.0.1", port)  # says nothing: closed after the timeout
            assert await asyncio.wait_for(r.read(), 2) == b""
            assert (await get(port, "/healthz"))[0] == 200
            server.done()

    asyncio.run(main())


def test_port_minus_one_disables_and_bad_ports_are_rejected(caplog):
    caplog.set_level(logging.INFO)

    async def main():
        server = MetricsServer(Metrics())
        with taddons.context(server) as tctx:
            tctx.configure(server, dlp_metrics_port=-1)
            server.running()
            await asyncio.sleep(0.05)
            assert server.address is None and server.server is None
            with pytest.raises(exceptions.OptionsError):
                tctx.configure(server, dlp_metrics_port=70000)
            server.done()

    asyncio.run(main())
    assert "metrics server disabled" in caplog.text


def test_port_in_use_is_an_error_not_a_crash(caplog):
    async def main():
        blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = blocker.sockets[0].getsockname()[1]
        server = MetricsServer(Metrics())
        with taddons.context(server) as tctx:
            tctx.configure(server, dlp_metrics_port=port)
            server.running()
            await asyncio.sleep(0.1)
            assert server.address is None
            server.done()
        blocker.close()

    asyncio.run(main())
    assert re.search(r"metrics server could not listen at 127\.0\.0\.1:\d+", caplog.text)


def test_rebinds_when_the_port_option_changes():
    async def main():
        server = MetricsServer(Metrics(), FakeState())
        with taddons.context(server, FakeProxyServer()) as tctx:
            tctx.configure(server, dlp_metrics_port=0)
            server.running()
            first = await started(server)
            probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            free = probe.sockets[0].getsockname()[1]
            probe.close()
            await probe.wait_closed()
            tctx.configure(server, dlp_metrics_port=free)
            for _ in range(200):
                if server.address and server.address[1] == free:
                    break
                await asyncio.sleep(0.01)
            assert server.address == ("127.0.0.1", free) and free != first
            assert (await get(free, "/healthz"))[0] == 200
            server.done()

    asyncio.run(main())
