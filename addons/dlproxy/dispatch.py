"""Hook dispatch that skips addons without the hook: mitmproxy's own dispatch, minus its per-event walk.

mitmproxy's `AddonManager.trigger_event` visits every top-level addon for every event — about 36 in a dump
master — each under its own `safecall` context and `invoke_addon` coroutine, and `handle_lifecycle` repeats
the walk with an `update` event after each flow hook. A small HTTP flow fires four hooks, so 288 addon visits,
of which 27 find a hook (`request` has 14 takers, `update` none). That walk is about a third of mitmdump's CPU
per small request (bench/proxy.py: the same master with this dispatch serves ≈ 1.6× the small requests/s), as
much again as dlproxy's own inspection.

`IndexedAddonManager` keeps mitmproxy's semantics and its addons — every built-in feature and `-s` script still
works — and only skips the visits that cannot do anything: per hook name it remembers which top-level addons have
that hook (an attribute of that name, mitmproxy's own test). Composites, which have an `addons` list such as the
script loader, are always visited: their children change at run time. Order, one `safecall` per top-level addon,
`AddonHalt`, sync and async hooks are mitmproxy's (its `safecall` and `_iter_hooks` are used); the hook's
arguments are built once per event instead of once per addon. The index is rebuilt after `add`, `remove` or
`clear`. mitmproxy is pinned to 12.3.x; tests/test_dispatch.py compares call logs with the stock manager.
"""

from __future__ import annotations

import inspect

from mitmproxy import addonmanager, exceptions, hooks


class IndexedAddonManager(addonmanager.AddonManager):
    """An AddonManager whose `trigger_event` visits only the top-level addons that can handle the event."""

    _takers: dict[str, list] | None = None

    @classmethod
    def upgrade(cls, manager: addonmanager.AddonManager) -> IndexedAddonManager:
        """Turn the manager mitmproxy's Master built for itself into this class, in place (same object, so every
        reference to it — master, commands, options signals — stays valid). Adds no state but the index."""
        if type(manager) is not addonmanager.AddonManager:
            raise TypeError(f"expected mitmproxy's AddonManager, not {type(manager).__name__}")
        manager.__class__ = cls
        return manager  # type: ignore[return-value]

    def takers(self, name: str) -> list:
        """Top-level addons, in chain order, that have hook `name` or may have it through their children."""
        index = self._takers
        if index is None:
            index = self._takers = {}
        found = index.get(name)
        if found is None:
            found = index[name] = [a for a in self.chain if hasattr(a, "addons") or getattr(a, name, None)]
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        takers = self.takers(event.name)
        if not takers:
            return
        args = event.args()  # once per event: `Hook.args()` walks the dataclass fields every time
        for addon in takers:
            try:
                with addonmanager.safecall():
                    await self._invoke(addon, event, args)
            except exceptions.AddonHalt:
                return

    async def _invoke(self, addon, event: hooks.Hook, args: list) -> None:
        """mitmproxy's `invoke_addon`, with the arguments given."""
        for _addon, func in self._iter_hooks(addon, event):
            result = func(*args)
            if result is not None and inspect.isawaitable(result):
                await result

    def add(self, *addons) -> None:
        self._takers = None
        try:
            super().add(*addons)
        finally:
            self._takers = None

    def remove(self, addon) -> None:
        self._takers = None
        try:
            super().remove(addon)
        finally:
            self._takers = None

    def clear(self) -> None:
        self._takers = None
        try:
            super().clear()
        finally:
            self._takers = None
