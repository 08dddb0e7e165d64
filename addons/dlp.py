"""`mitmdump -s addons/dlp.py --set dlp_profile=FILE`: the dlproxy addons as a mitmproxy script.

A two-line shim over the installed package: mitmdump re-executes a script when it changes, so a reload of this
file only re-creates the addons (with a fresh metrics registry) instead of re-executing the engine. A bad or
unknown `--set dlp_*` value is caught by the addons (proxy/options.py): mitmdump exits 1 at startup, and should
the options ever be invalid while it runs, every flow is blocked (403, inspection_failed) and /readyz is 503
until they are fixed. `--set dlp_builtin=false` is `dlproxy run --no-builtin`. Prefer `dlproxy run`, which also
refuses unknown options of any name.
"""

from dlproxy.proxy.wiring import make_addons

addons = make_addons()
