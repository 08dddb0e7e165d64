"""Hot reload: poll the profile files, and reload on SIGHUP.

`ProfileWatcher` stats the files named by `dlp_profile` every `dlp_reload_interval` seconds (mtime, size,
inode: an editor's save, a `mv` over the file and a Kubernetes ConfigMap symlink swap all show up) and asks
`ProfileState.reload("file-change")` for an atomic swap. SIGHUP does the same with reason "sighup" and also
reopens the incident log (for logrotate). A bad file is rejected by ProfileState, which logs every
`FILE:LINE: field: message` and keeps the old profile; the proxy stays ready and keeps protecting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Protocol

from .metrics import Metrics

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 0.2  # a change must hold this long before we reload (editors write in several steps)

Signature = tuple[tuple[str, int, int, int] | tuple[str, None, None, None], ...]


def file_signature(paths) -> Signature:
    """(path, mtime_ns, size, inode) per file, following symlinks; a missing file shows as Nones."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append((str(p), None, None, None))
        else:
            out.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class Reloadable(Protocol):
    """The profile state (proxy.addon.ProfileState): re-reads its files, True when the new profile is in use."""

    def reload(self, reason: str) -> bool: ...


class Reopenable(Protocol):
    """The incident log (incidents.IncidentLog): reopens its file (logrotate moved it away)."""

    def reopen(self) -> None: ...


class ProfileWatcher:
    """Addon: option `dlp_reload_interval` (seconds, 0 = no polling); SIGHUP → reload + reopen incident log."""

    name = "dlp-profile-watcher"

    def __init__(self, metrics: Metrics | None = None, state: Reloadable | None = None,
                 incidents: Reopenable | None = None) -> None:
        self.metrics = metrics
        self.state = state
        self.incidents = incidents
        self._sig: Signature = ()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sighup = False

    def load(self, loader) -> None:
        loader.add_option("dlp_reload_interval", int, 2,
                          "Seconds between checks of the profile files for changes (0 = do not poll; "
                          "SIGHUP still reloads).")

    def configure(self, updated) -> None:
        from mitmproxy import ctx, exceptions

        if "dlp_reload_interval" in updated:
            if ctx.options.dlp_reload_interval < 0:
                raise exceptions.OptionsError("dlp_reload_interval must be >= 0 (0 = no polling)")
            if self._task is not None:
                self._stop_polling()
                self._start_polling()
        if "dlp_profile" in updated:
            # ProfileState loads the new files in this same configure round: they are the baseline.
            self._sig = file_signature(self._paths())

    def running(self) -> None:
        # Sync on purpose: a `-s` script reload calls running() through invoke_addon_sync.
        self._loop = asyncio.get_running_loop()
        self._start_polling()
        self._install_sighup()

    def done(self) -> None:
        self._stop_polling()
        if self._sighup and self._loop is not None:
            try:
                self._loop.remove_signal_handler(signal.SIGHUP)
            except (RuntimeError, ValueError):
                pass
        self._sighup = False

    # --- internals ---
    @staticmethod
    def _paths() -> list[str]:
        from mitmproxy import ctx

        paths = list(ctx.options.dlp_profile) if "dlp_profile" in ctx.options else []
        return [p for p in paths if p != "builtin"]

    def _start_polling(self) -> None:
        from mitmproxy import ctx

        interval = ctx.options.dlp_reload_interval
        if interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(interval))

    def _stop_polling(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None

    def _install_sighup(self) -> None:
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None or self._loop is None:
            return
        try:
            self._loop.add_signal_handler(sighup, self.on_sighup)
            self._sighup = True
        except (RuntimeError, ValueError, NotImplementedError) as e:  # not the main thread, or no signals here
            logger.debug(f"dlproxy: no SIGHUP handler ({e})")

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._settle_and_reload()
            except Exception:  # the watcher must outlive any single bad check
                logger.exception("dlproxy profile watcher failed")

    def check(self) -> bool:
        """True when the profile files differ from what was last loaded."""
        return file_signature(self._paths()) != self._sig

    async def _settle_and_reload(self) -> None:
        first = file_signature(self._paths())
        if first == self._sig:
            return
        await asyncio.sleep(SETTLE_SECONDS)
        if file_signature(self._paths()) != first:
            return  # still being written: look again at the next poll
        if first == self._sig:
            return  # a SIGHUP during the settle time already reloaded these files
        changed = [item[0] for item in first if item not in self._sig]
        self._sig = first
        logger.info(f"dlproxy profile changed on disk ({', '.join(changed) or 'profile files'}): reloading")
        self.reload("file-change")

    def on_sighup(self) -> None:
        logger.info("dlproxy got SIGHUP: reloading the profile and reopening the incident log")
        incidents = self.incidents
        if incidents is not None:
            incidents.reopen()
        self._sig = file_signature(self._paths())
        self.reload("sighup")

    def reload(self, reason: str) -> bool:
        """Ask ProfileState for an atomic swap. It logs problems, keeps the old profile and counts the result."""
        state = self.state
        if state is None:
            logger.error("dlproxy: no profile state to reload")
            return False
        try:
            return bool(state.reload(reason))
        except Exception:  # ProfileState.reload is meant not to raise; stay protected if it does
            logger.exception("dlproxy profile reload failed; keeping the current profile")
            if self.metrics is not None:
                self.metrics.profile_reloads_total.labels(result="error").inc()
            return False
