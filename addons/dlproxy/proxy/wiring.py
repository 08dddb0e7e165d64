"""One place that builds the dlproxy addons, for both entry points.

    mitmdump -s addons/dlp.py --set dlp_profile=FILE     (addons/dlp.py: `addons = make_addons()`)
    dlproxy run ...                                      (master.DLPMaster adds make_addons() to its chain)

Order matters only where hooks overlap: ProfileState comes first so the profile is loaded (and its option
errors raised) before any other addon configures; PrincipalSources names the client before anything
inspects the request; the buffered inspectors, then the stream and WebSocket
guards (which decide in requestheaders/responseheaders what streams; the inspectors skip what they stream).
"""

from __future__ import annotations

from ..ops import logscrub
from ..ops.incidents import IncidentLog
from ..ops.metrics import Metrics, MetricsServer
from ..ops.reload import ProfileWatcher
from ..ops.revocation import Revocations
from . import internals
from .addon import ProfileState, QuietFlowLog, RequestInspector, ResponseInspector
from .hostguard import HostGuard
from .options import OptionCheck
from .principals import PrincipalSources
from .streamguard import StreamGuard
from .websocket import WebSocketGuard


def make_addons(metrics: Metrics | None = None) -> list:
    """A fresh set of addons sharing one Metrics instance (its own registry, so a script reload is safe)."""
    metrics = metrics or Metrics()
    internals.carry_http1_trailers()  # else an HTTP/1 trailer section hangs the connection, uninspected
    state = ProfileState(metrics)
    logscrub.install(lambda: state.current.detector if state.current is not None else None)
    incidents = IncidentLog(metrics)
    revocations = Revocations(state, metrics, incidents)
    incidents.closer = revocations
    return [
        state,
        incidents,
        PrincipalSources(state, metrics),
        revocations,
        HostGuard(state, metrics, incidents),
        RequestInspector(state, metrics, incidents),
        ResponseInspector(state, metrics, incidents),
        StreamGuard(state, metrics, incidents),
        WebSocketGuard(state, metrics, incidents),
        MetricsServer(metrics, state, internals.proxy_listening),
        ProfileWatcher(metrics, state, incidents),
        QuietFlowLog(),
        OptionCheck(state),  # last: every dlp_* option is declared by then
    ]

