"""`dlproxy run`: mitmdump with the dlproxy addons preloaded, and defaults fit for a DLP.

The addons are registered before the command line is parsed (their options exist when `--set` is applied), so `--set dlp_backend=nope`, a bad
type, or a profile that does not load stops the process with exit code 1 and the `FILE:LINE: field: message`
lines — instead of the `-s` script path, where mitmdump drops the addon silently and forwards everything.

Defaults changed from mitmdump's (every one can be overridden with `--set`):
- flow_detail=0: mitmdump's flow log prints URLs (query strings carry tokens) and, from level 2, headers;
  dlproxy logs its own one-line decisions with secrets masked instead.
- body_size_limit=64m: a body is buffered and scanned whole; anything larger is refused (413 to the client
  for requests, 502 for responses) and counted as blocked/too_large, never forwarded uninspected. Bodies
  between the profile's max_inspect_bytes (32 MiB decoded) and this limit follow `on_oversize`.
- http3=false: `reverse:https` would otherwise also serve HTTP/3 and dial the upstream over QUIC.
- rawtcp=false: non-HTTP bytes inside a CONNECT tunnel are not relayed uninspected.

Hook dispatch visits only the addons that have the hook (hookindex.IndexedAddonManager): same addons, same
order and error handling as mitmdump, without its walk over ~36 addons for every event of every flow.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from mitmproxy.tools import cmdline
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.main import run

from .hookindex import IndexedAddonManager
from .options import unknown_options
from .wiring import make_addons

logger = logging.getLogger(__name__)

DLP_DEFAULTS = {
    "flow_detail": 0,
    "body_size_limit": "64m",
    "http3": False,
    "rawtcp": False,
}


class DLPMaster(DumpMaster):
    """DumpMaster + the dlproxy addons (after mitmproxy's own, so they see what is really forwarded), with the
    indexed hook dispatch."""

    def __init__(self, options, loop=None, with_termlog: bool = True, with_dumper: bool = True) -> None:
        super().__init__(options, loop=loop, with_termlog=with_termlog, with_dumper=with_dumper)
        IndexedAddonManager.upgrade(self.addons)
        self.options.update(**DLP_DEFAULTS)
        self.addons.add(*self.dlp_addons())

    def dlp_addons(self) -> list:
        """The dlproxy addons this master runs (bench/proxy.py's "no-dlp" baseline overrides it to run none)."""
        return make_addons()

    async def run(self) -> None:
        """Refuse to start on a `--set` that no addon declared (a typo would otherwise be ignored silently)."""
        for problem in unknown_options(self.options):
            logger.error(f"dlproxy: {problem}")  # mitmproxy's startup check exits 1 on it
        await super().run()

    async def running(self) -> None:
        await super().running()
        metrics = self.addons.get("dlp-metrics-server")
        if metrics is not None and not await metrics.started():
            return  # its error is logged: mitmproxy's startup check exits 1, never "ready"
        hint = ca_hint(self.options.mode, os.path.join(os.path.expanduser(self.options.confdir),
                                                      "mitmproxy-ca-cert.pem"))
        logger.info(f"dlproxy ready{'; ' + hint if hint else ''}")


def ca_hint(modes, ca: str) -> str:
    """Who must trust the proxy's CA: nobody when every listener is a reverse proxy to a plain-HTTP upstream
    (the client speaks HTTP to it; the CA signs only certificates the proxy presents to clients)."""
    if all(m.startswith("reverse:http://") for m in modes):
        return ""
    if all(m.startswith("reverse:") for m in modes):
        return f"clients that connect to it with TLS must trust {ca}"
    return f"HTTPS clients must trust {ca}"


def _extra(args) -> dict:
    if args.filter_args:
        value = " ".join(args.filter_args)
        return {"save_stream_filter": value, "readfile_filter": value, "dumper_filter": value}
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run until shut down; the exit status (non-zero when options or the profile are bad)."""
    try:
        run(DLPMaster, cmdline.mitmdump, list(sys.argv[1:] if argv is None else argv), _extra)
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
