"""IndexedAddonManager dispatches exactly like mitmproxy's AddonManager, minus the visits that cannot do anything.

Each scenario runs the same chain under the stock manager and the indexed one and compares what the addons saw.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import addonmanager, exceptions, master, options
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import tflow

from dlproxy.dispatch import IndexedAddonManager


class Recorder:
    """A leaf addon that records the hooks it sees; `fail`/`halt` make its request hook raise."""

    def __init__(self, name: str, log: list, fail: bool = False, halt: bool = False, is_async: bool = False):
        self.name = name
        self.log = log
        self.fail = fail
        self.halt = halt
        if is_async:
            self.request = self._async_request

    def request(self, flow) -> None:
        self.log.append((self.name, "request"))
        if self.halt:
            raise exceptions.AddonHalt()
        if self.fail:
            raise RuntimeError("boom")

    async def _async_request(self, flow) -> None:
        await asyncio.sleep(0)
        self.log.append((self.name, "request-async"))

    def response(self, flow) -> None:
        self.log.append((self.name, "response"))


class Quiet:
    """No flow hooks at all: the indexed manager never visits it for them."""

    name = "quiet"

    def __init__(self, log: list):
        self.log = log

    def __getattribute__(self, attr):
        if attr in ("request", "response", "update"):
            object.__getattribute__(self, "log").append(("quiet", "looked up " + attr))
        return object.__getattribute__(self, attr)


class Composite:
    """Children that change at run time, like mitmproxy's script loader."""

    def __init__(self, name: str, children: list):
        self.name = name
        self.addons = children


def run_chain(indexed: bool, build, events) -> list:
    """Build a master's chain with `build(log)`, fire `events(flow)`, return the log."""
    log: list = []

    async def go():
        m = master.Master(options.Options())
        if indexed:
            IndexedAddonManager.upgrade(m.addons)
        for addon in build(log):
            m.addons.add(addon)
        flow = tflow.tflow(resp=True)
        try:
            for event in events(flow, m, log):
                if callable(event):
                    event()
                else:
                    await m.addons.handle_lifecycle(event)
        finally:
            m._legacy_log_events.uninstall()  # its log handler would outlive this event loop
        return log

    return asyncio.run(go())


def both(build, events) -> list:
    stock = run_chain(False, build, events)
    indexed = run_chain(True, build, events)
    without_lookups = [e for e in stock if not e[1].startswith("looked up")]
    assert [e for e in indexed if not e[1].startswith("looked up")] == without_lookups
    return indexed


def test_order_sync_and_async_hooks_match_mitmproxy():
    def build(log):
        return [Recorder("a", log), Quiet(log), Recorder("b", log, is_async=True),
                Composite("group", [Recorder("c", log), Recorder("d", log)]), Recorder("e", log)]

    log = both(build, lambda f, m, log: [HttpRequestHook(f), HttpResponseHook(f)] * 3)
    assert [e for e in log if e[0] != "quiet"] == 3 * [
        ("a", "request"), ("b", "request-async"), ("c", "request"), ("d", "request"), ("e", "request"),
        ("a", "response"), ("b", "response"), ("c", "response"), ("d", "response"), ("e", "response")]
    # the index asks once per hook name; mitmproxy's own walk asks on every event (and for `update` after each)
    assert sorted(e[1] for e in log if e[0] == "quiet") == ["looked up request", "looked up response",
                                                             "looked up update"]
    stock = run_chain(False, build, lambda f, m, log: [HttpRequestHook(f), HttpResponseHook(f)] * 3)
    assert len([e for e in stock if e[0] == "quiet"]) == 12


def test_an_exception_is_logged_and_the_next_top_level_addon_still_runs(caplog):
    def build(log):
        return [Recorder("a", log, fail=True), Composite("group", [Recorder("c", log, fail=True),
                                                                  Recorder("d", log)]), Recorder("e", log)]

    with caplog.at_level(logging.ERROR):
        log = both(build, lambda f, m, log: [HttpRequestHook(f)])
    # one safecall per top-level addon: "d" is skipped after its sibling "c" raised, "e" runs
    assert log == [("a", "request"), ("c", "request"), ("e", "request")]
    assert caplog.text.count("Addon error: boom") == 4  # two per manager


def test_addon_halt_stops_the_event():
    def build(log):
        return [Recorder("a", log), Recorder("b", log, halt=True), Recorder("c", log)]

    log = both(build, lambda f, m, log: [HttpRequestHook(f), HttpResponseHook(f)])
    assert log == [("a", "request"), ("b", "request"), ("a", "response"), ("b", "response"), ("c", "response")]


def test_index_follows_add_remove_and_changing_children():
    group_children: list = []

    def build(log):
        return [Recorder("a", log), Composite("group", group_children)]

    def events(flow, m, log):
        yield HttpRequestHook(flow)  # builds the index
        late = Recorder("late", log)
        yield lambda: m.addons.add(late)
        yield HttpRequestHook(flow)
        yield lambda: group_children.append(Recorder("child", log))  # a script (re)loaded: no add() call
        yield HttpRequestHook(flow)
        yield lambda: m.addons.remove(m.addons.get("a"))
        yield HttpRequestHook(flow)

    group_children.clear()
    stock = run_chain(False, build, events)
    group_children.clear()
    indexed = run_chain(True, build, events)
    assert indexed == stock == [
        ("a", "request"),
        ("a", "request"), ("late", "request"),
        ("a", "request"), ("child", "request"), ("late", "request"),
        ("child", "request"), ("late", "request")]


def test_update_hook_after_a_flow_hook_reaches_update_addons():
    class Updater:
        name = "updater"

        def __init__(self, log):
            self.log = log

        def update(self, flows):
            self.log.append(("updater", f"update {len(flows)}"))

    log = both(lambda log: [Recorder("a", log), Updater(log)], lambda f, m, log: [HttpRequestHook(f)])
    assert log == [("a", "request"), ("updater", "update 1")]


def test_upgrade_refuses_anything_but_mitmproxys_own_manager():
    async def go():
        m = master.Master(options.Options())
        IndexedAddonManager.upgrade(m.addons)
        with pytest.raises(TypeError):
            IndexedAddonManager.upgrade(m.addons)
        assert isinstance(m.addons, addonmanager.AddonManager)

    asyncio.run(go())


def test_dlproxy_master_uses_the_index_and_keeps_every_builtin_addon():
    from mitmproxy.tools.dump import DumpMaster

    from dlproxy.master import DLPMaster

    async def go():
        stock = DumpMaster(options.Options(), with_termlog=False)
        stock_names = [addonmanager._get_name(a) for a in stock.addons.chain]
        ours = DLPMaster(options.Options(), with_termlog=False)
        assert type(ours.addons) is IndexedAddonManager
        names = [addonmanager._get_name(a) for a in ours.addons.chain]
        assert names[:len(stock_names)] == stock_names  # mitmproxy's own addons first, all of them
        assert "profilestate" in names and "dlp-request-inspector" in names

    asyncio.run(go())
