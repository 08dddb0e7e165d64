"""Hook dispatch that skips addons without the hook: mitmproxy's own dispatch, minus its per-event walk.

mitmproxy's `AddonManager.trigger_event` visits every top-level addon for every event — about 36 in a dump
master — each under its own `safecall` context and `invoke_addon` coroutine, and `handle_lifecycle` repeats
the walk with an `update` event after each flow hook. A small HTTP flow fires four hooks, so close to
300 addon visits, of which fewer than thirty find a hook. For small requests that walk costs more CPU than
dlproxy's own inspection (bench/proxy.py measures the master with and without this dispatch; the README has
the figures).

`IndexedAddonManager` keeps mitmproxy's semantics and its addons — every built-in feature and `-s` script still
works — and only skips the visits that cannot do anything: per hook name it remembers which top-level addons have
that hook (an attribute of that name, mitmproxy's own test). Always visited, because what they answer can change
at run time: composites, which have an `addons` list (the script loader), and addons whose class resolves
attributes dynamically (`__getattr__`). The index is rebuilt after `add`, `remove` and `clear`, and after the
lifecycle events in which an addon may still set up its hooks (`configure`, `running`); an addon that assigns a
hook method to itself in any other hook would be missed, which no mitmproxy or dlproxy addon does (a test checks
dlproxy's hooks are methods of their classes). When the chain changes during an event, the rest of that event
follows mitmproxy's own walk over the list it started with, so an addon appended by a hook still gets the event.
Order, one `safecall` per top-level addon, `AddonHalt`, sync and async hooks are mitmproxy's (its `safecall` and
`_iter_hooks` are used); the hook's arguments are built once per event instead of once per addon. mitmproxy is
pinned to 12.3.x; tests/test_dispatch.py compares call logs with the stock manager.
"""

from __future__ import annotations

import inspect

from mitmproxy import addonmanager, exceptions, hooks

from . import internals


class IndexedAddonManager(addonmanager.AddonManager):
    """An AddonManager whose `trigger_event` visits only the top-level addons that can handle the event."""

    _takers: dict[str, list] | None = None
    _version = 0  # bumped whenever the chain changes

    @classmethod
    def upgrade(cls, manager: addonmanager.AddonManager) -> IndexedAddonManager:
        """Turn the manager mitmproxy's Master built for itself into this class, in place (same object, so every
        reference to it — master, commands, options signals — stays valid). Adds no state but the index."""
        internals.swap_addon_manager(manager, cls)
        return manager  # type: ignore[return-value]

    def takers(self, name: str) -> list:
        """Top-level addons, in chain order, that have hook `name` or may have it through their children."""
        index = self._takers
        if index is None:
            index = self._takers = {}
        found = index.get(name)
        if found is None:
            found = index[name] = [a for a in self.chain if _may_take(a, name)]
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        chain = self.chain  # the list mitmproxy's own walk would iterate (an `add` appends to it)
        takers = self.takers(event.name)
        if takers:
            args = event.args()  # once per event: `Hook.args()` walks the dataclass fields every time
            version = self._version
            for addon in takers:
                if not await self._visit(addon, event, args):
                    break
                if self._version != version:  # the chain changed in this hook: walk the rest as mitmproxy does
                    for later in chain[chain.index(addon) + 1:]:
                        if _may_take(later, event.name) and not await self._visit(later, event, args):
                            break
                    break
        if event.name in _SETUP_EVENTS:
            self._takers = None  # addons may have set up their hooks in it

    async def _visit(self, addon, event: hooks.Hook, args: list) -> bool:
        """mitmproxy's per-addon step of `trigger_event`; False when an addon halted the event."""
        try:
            with addonmanager.safecall():
                for _addon, func in self._iter_hooks(addon, event):
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
        except exceptions.AddonHalt:
            return False
        return True

    def trigger(self, event: hooks.Hook) -> None:
        super().trigger(event)
        if event.name in _SETUP_EVENTS:
            self._takers = None

    def add(self, *addons) -> None:
        try:
            super().add(*addons)
        finally:
            self._changed()

    def remove(self, addon) -> None:
        try:
            super().remove(addon)
        finally:
            self._changed()

    def clear(self) -> None:
        try:
            super().clear()
        finally:
            self._changed()

    def _changed(self) -> None:
        self._takers = None
        self._version += 1


_SETUP_EVENTS = frozenset({"load", "configure", "running"})


def _may_take(addon, name: str) -> bool:
    """Might a visit of `addon` for hook `name` call anything? (mitmproxy's own test is `getattr(a, name)`.)"""
    return hasattr(addon, "addons") or hasattr(type(addon), "__getattr__") or bool(getattr(addon, name, None))
