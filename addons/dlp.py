"""`mitmdump -s addons/dlp.py --set dlp_profile=FILE`: the dlproxy addons as a mitmproxy script.

A two-line shim over the installed package: mitmdump re-executes a script when it changes, so a reload of this
file only re-creates the addons (with a fresh metrics registry) instead of re-executing the engine. Prefer
`dlproxy run`: with `-s`, a bad `--set dlp_*` value makes mitmdump drop the script silently (exit 0, no
inspection, /readyz down), where `dlproxy run` refuses to start.
"""

from dlproxy.proxy.wiring import make_addons

addons = make_addons()
