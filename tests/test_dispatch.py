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

from dlproxy.proxy.hookindex import IndexedAddonManager


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
                    result = event()
                    if asyncio.iscoroutine(result):
                        await result
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

    from dlproxy.proxy.master import DLPMaster

    async def go():
        stock = DumpMaster(options.Options(), with_termlog=False)
        stock_names = [addonmanager._get_name(a) for a in stock.addons.chain]
        ours = DLPMaster(options.Options(), with_termlog=False)
        assert type(ours.addons) is IndexedAddonManager
        names = [addonmanager._get_name(a) for a in ours.addons.chain]
        assert names[:len(stock_names)] == stock_names  # mitmproxy's own addons first, all of them
        assert "profilestate" in names and "dlp-request-inspector" in names

    asyncio.run(go())


def test_an_addon_appended_during_an_event_still_gets_it():
    """mitmproxy walks the live chain: an addon added by an earlier addon's hook is visited in the same event."""

    class Adder:
        name = "adder"

        def __init__(self, log, manager_box):
            self.log = log
            self.box = manager_box

        def request(self, flow):
            self.log.append(("adder", "request"))
            if not self.box.get("added"):
                self.box["added"] = True
                self.box["m"].addons.add(Recorder("late", self.log))

    box: dict = {}

    def events(flow, m, log):
        box.clear()
        box["m"] = m
        yield HttpRequestHook(flow)
        yield HttpRequestHook(flow)

    log = both(lambda log: [Adder(log, box), Recorder("b", log)], events)
    assert log == [("adder", "request"), ("b", "request"), ("late", "request"),
                   ("adder", "request"), ("b", "request"), ("late", "request")]


def test_a_hook_set_up_in_configure_or_running_is_not_missed():
    """An addon may attach hooks while it configures or starts; the index is rebuilt after those events."""
    from mitmproxy import hooks as mhooks

    class Lazy:
        name = "lazy"

        def __init__(self, log):
            self.log = log

        def running(self):
            self.request = lambda flow: self.log.append(("lazy", "request"))

    def events(flow, m, log):
        yield HttpRequestHook(flow)  # indexes `request` before Lazy has it
        yield lambda: m.addons.trigger_event(mhooks.RunningHook())
        yield HttpRequestHook(flow)

    assert both(lambda log: [Lazy(log)], events) == [("lazy", "request")]


def test_addons_that_resolve_attributes_dynamically_are_always_visited():
    class Dynamic:
        name = "dynamic"

        def __init__(self, log):
            self.log = log
            self.on = False

        def __getattr__(self, attr):
            if attr == "request" and self.on:
                return lambda flow: self.log.append(("dynamic", "request"))
            raise AttributeError(attr)

    box: dict = {}

    def events(flow, m, log):
        yield HttpRequestHook(flow)
        yield lambda: setattr(box["d"], "on", True)
        yield HttpRequestHook(flow)

    def build(log):
        box["d"] = Dynamic(log)
        return [box["d"]]

    assert both(build, events) == [("dynamic", "request")]


def test_dlproxy_hooks_are_methods_of_their_classes():
    """The index reads hooks once per event name: dlproxy's own addons must not attach hooks at run time."""
    from mitmproxy import hooks as mhooks
    from mitmproxy.proxy.layers import http as _http_hooks  # noqa: F401 - registers the HTTP hook names
    from mitmproxy.proxy.layers import websocket as _ws_hooks  # noqa: F401

    from dlproxy.proxy.wiring import make_addons

    for addon in make_addons():
        for name in mhooks.all_hooks:
            if name in vars(addon):
                raise AssertionError(f"{type(addon).__name__}.{name} is an instance attribute")
        assert not hasattr(type(addon), "__getattr__")
