"""Hot reload: the watcher notices file changes and SIGHUP, asks ProfileState to swap, and survives errors."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from dlproxy.engine.profile import ProfileError, load_profiles
from dlproxy.ops import reload as reload_mod
from dlproxy.ops.metrics import Metrics
from dlproxy.ops.reload import ProfileWatcher, file_signature

PROFILE = """\
profile: ops-test
name: Ops test
entries:
  - id: ops-test-token
    name: Ops Test Token
    severity: high
    prefixes: ["opstest_"]
    pattern: "[A-Za-z0-9]{24}"
"""
SECOND_ENTRY = """\
  - id: ops-other-token
    name: Ops Other Token
    severity: high
    prefixes: ["opsother_"]
    pattern: "[A-Za-z0-9]{24}"
"""
BAD = PROFILE.replace("severity: high", "severity: extreme")


class FakeState:
    """Stands in for proxy.addon.ProfileState, as ops/reload.py sees it (reload.Reloadable): load on configure,
    reload(reason) -> bool swaps atomically or logs every problem and keeps the old profile."""

    name = "profilestate"

    def __init__(self, metrics):
        self.metrics = metrics
        self.current = None
        self.reasons: list[str] = []

    def load(self, loader):
        from collections.abc import Sequence
        loader.add_option("dlp_profile", Sequence[str], [], "profile files")

    def configure(self, updated):
        from mitmproxy import ctx
        if "dlp_profile" in updated:
            self.current = load_profiles(ctx.options.dlp_profile)

    @property
    def ready(self):
        return self.current is not None

    def reload(self, reason):
        from mitmproxy import ctx
        self.reasons.append(reason)
        try:
            new = load_profiles(ctx.options.dlp_profile)
        except ProfileError as e:
            for p in e.problems:
                logging.getLogger("dlproxy.proxy.addon").error(f"dlproxy profile reload rejected: {p}")
            self.metrics.profile_reloads_total.labels(result="error").inc()
            return False
        self.current = new
        self.metrics.profile_reloads_total.labels(result="ok").inc()
        return True


def reloads(m: Metrics, result: str) -> float:
    return m.profile_reloads_total.labels(result=result)._value.get()


def write(path: Path, text: str) -> None:
    """Replace the file the way editors and ConfigMaps do: a new inode, renamed over the old name."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setattr(reload_mod, "SETTLE_SECONDS", 0.01)
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE)
    return path


def run_with_watcher(path, body, interval=0, incidents=None):
    async def main():
        m = Metrics()
        state = FakeState(m)
        watcher = ProfileWatcher(m, state, incidents)
        with taddons.context(state, watcher) as tctx:
            tctx.options.update(dlp_profile=[str(path)], dlp_reload_interval=interval)
            watcher.running()
            try:
                await body(m, state, watcher)
            finally:
                watcher.done()

    asyncio.run(main())


def test_signature_sees_content_size_inode_and_missing_files(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("x")
    s0 = file_signature([p])
    write(p, "x")  # same content, new inode
    s1 = file_signature([p])
    assert s1 != s0
    with open(p, "a") as f:
        f.write("y")
    assert file_signature([p]) != s1
    p.unlink()
    assert file_signature([p]) == ((str(p), None, None, None),)


def test_valid_change_swaps(setup):
    async def body(m, state, watcher):
        old = state.current
        assert not watcher.check()
        write(setup, PROFILE + SECOND_ENTRY)
        assert watcher.check()
        await watcher._settle_and_reload()
        assert state.current is not old
        assert [e.id for e in state.current.entries] == ["ops-test-token", "ops-other-token"]
        assert state.reasons == ["file-change"] and reloads(m, "ok") == 1
        assert not watcher.check()
        await watcher._settle_and_reload()  # nothing changed: no second reload
        assert state.reasons == ["file-change"]

    run_with_watcher(setup, body)


def test_invalid_change_keeps_the_old_profile_and_logs_file_line(setup, caplog):
    async def body(m, state, watcher):
        old = state.current
        write(setup, BAD)
        await watcher._settle_and_reload()
        assert state.current is old
        assert reloads(m, "error") == 1 and reloads(m, "ok") == 0
        assert f"{setup}:6: entries[0].severity: must be one of" in caplog.text
        await watcher._settle_and_reload()  # the same bad file is not retried every interval
        assert reloads(m, "error") == 1
        write(setup, PROFILE + SECOND_ENTRY)  # fixed: taken
        await watcher._settle_and_reload()
        assert reloads(m, "ok") == 1 and len(state.current.entries) == 2

    run_with_watcher(setup, body)


def test_deleted_file_is_an_error_and_old_profile_stays(setup, caplog):
    async def body(m, state, watcher):
        old = state.current
        setup.unlink()
        await watcher._settle_and_reload()
        assert state.current is old and reloads(m, "error") == 1

    run_with_watcher(setup, body)


def test_a_file_still_being_written_waits_for_the_next_poll(setup, monkeypatch):
    monkeypatch.setattr(reload_mod, "SETTLE_SECONDS", 0.2)

    async def body(m, state, watcher):
        write(setup, PROFILE + SECOND_ENTRY)
        task = asyncio.ensure_future(watcher._settle_and_reload())
        await asyncio.sleep(0.05)
        with open(setup, "a") as f:  # still changing during the settle time
            f.write("# more\n")
        await task
        assert state.reasons == []
        await watcher._settle_and_reload()
        assert state.reasons == ["file-change"]

    run_with_watcher(setup, body)


def test_polling_task_reloads_on_its_own(setup):
    async def body(m, state, watcher):
        write(setup, PROFILE + SECOND_ENTRY)
        end = time.monotonic() + 5
        while not state.reasons:
            assert time.monotonic() < end, "the watcher did not reload"
            await asyncio.sleep(0.05)
        assert len(state.current.entries) == 2

    run_with_watcher(setup, body, interval=1)


def test_sighup_reloads_and_reopens_the_incident_log(setup):
    class Incidents:
        reopened = 0

        def reopen(self):
            self.reopened += 1

    incidents = Incidents()

    async def body(m, state, watcher):
        if not watcher._sighup:  # not the main thread: SIGHUP would kill this test process
            pytest.skip("no SIGHUP handler outside the main thread")
        os.kill(os.getpid(), signal.SIGHUP)
        end = time.monotonic() + 5
        while not state.reasons:
            assert time.monotonic() < end
            await asyncio.sleep(0.01)
        assert state.reasons == ["sighup"] and incidents.reopened == 1 and reloads(m, "ok") == 1

    run_with_watcher(setup, body, incidents=incidents)


def test_a_raising_state_counts_an_error_and_keeps_going(setup, caplog):
    async def body(m, state, watcher):
        def boom(reason):
            raise RuntimeError("boom")

        state.reload = boom
        assert watcher.reload("sighup") is False
        assert reloads(m, "error") == 1
        assert "keeping the current profile" in caplog.text

    run_with_watcher(setup, body)


def test_negative_interval_is_rejected(setup):
    async def main():
        watcher = ProfileWatcher(Metrics())
        with taddons.context(watcher) as tctx:
            with pytest.raises(exceptions.OptionsError):
                tctx.configure(watcher, dlp_reload_interval=-1)

    asyncio.run(main())


# --- with the real ProfileState -------------------------------------------------------------------

def run_with_real_state(path, body):
    from dlproxy.proxy.addon import ProfileState  # imports the engine and extractors

    async def main():
        m = Metrics()
        state = ProfileState(m)
        watcher = ProfileWatcher(m, state)
        with taddons.context(state, watcher) as tctx:
            tctx.configure(state, dlp_profile=[str(path)], dlp_backend="pyahocorasick", dlp_builtin=False)
            tctx.configure(watcher, dlp_reload_interval=0)
            watcher.running()
            try:
                await body(m, state, watcher)
            finally:
                watcher.done()

    asyncio.run(main())


def test_real_state_valid_change_swaps_atomically(setup):
    async def body(m, state, watcher):
        old = state.current
        assert old.detector.scan(b"x opsother_" + b"a1" * 12 + b" y") == []
        write(setup, PROFILE + SECOND_ENTRY)
        await watcher._settle_and_reload()
        new = state.current
        assert new is not old and new.generation == old.generation + 1
        assert [f.entry_id for f in new.detector.scan(b"x opsother_" + b"a1" * 12 + b" y")] == ["ops-other-token"]
        assert old.detector.scan(b"x opsother_" + b"a1" * 12 + b" y") == []  # in-flight flows keep theirs
        assert reloads(m, "ok") == 1
        assert b'dlproxy_profile_entries{profile="ops-test"} 2.0' in m.render()

    run_with_real_state(setup, body)


def test_real_state_invalid_change_is_rejected_with_file_line(setup, caplog):
    async def body(m, state, watcher):
        old = state.current
        write(setup, BAD)
        await watcher._settle_and_reload()
        assert state.current is old and state.ready
        assert reloads(m, "error") == 1 and reloads(m, "ok") == 0
        assert re.search(re.escape(f"{setup}:6: entries[0].severity: ") + "must be one of", caplog.text)

    run_with_real_state(setup, body)


def test_sighup_during_the_settle_time_reloads_once(setup, monkeypatch):
    monkeypatch.setattr(reload_mod, "SETTLE_SECONDS", 0.2)

    async def body(m, state, watcher):
        write(setup, PROFILE + SECOND_ENTRY)
        task = asyncio.ensure_future(watcher._settle_and_reload())
        await asyncio.sleep(0.05)
        watcher.on_sighup()
        await task
        assert state.reasons == ["sighup"]

    run_with_watcher(setup, body)
