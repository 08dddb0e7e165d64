"""Option mistakes never mean "run uninspected".

`dlproxy run` registers its addons before the command line is parsed, so a bad value stops it at startup
already; what is left are names nobody declares (`--set dlp_scan_wrkers=2`): mitmproxy keeps an unknown `--set`
aside in case an addon declares it later, and otherwise ignores it. `unknown_options` lists them with the closest
valid name; DLPMaster refuses to start on any.

Under `mitmdump -s addons/dlp.py` the options are declared when the script loads, and mitmproxy then converts
the `--set` values it kept aside; one that does not parse (`--set dlp_dry_run=maybe`) makes it drop the whole
script silently, and traffic flows uninspected. `OptionCheck` (the last addon of the script) converts the
`dlp_*` values itself first, takes the bad ones out of mitmproxy's way and reports them to ProfileState, which
then blocks every flow (403, `inspection_failed`) and keeps /readyz at 503 until the options are valid. The
problem is logged as an error once per change; at startup that error also makes mitmdump exit 1.
"""

from __future__ import annotations

import difflib
import logging

from mitmproxy import exceptions

logger = logging.getLogger(__name__)

PREFIX = "dlp_"


def closest(name: str, known) -> str:
    """' (did you mean X?)' for the closest known option name, or ''."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def unknown_options(options) -> list[str]:
    """One message per `--set NAME=…` that no addon declared."""
    known = list(options.keys())
    return [f"unknown option {name}{closest(name, known)}" for name in sorted(options.deferred)]


class OptionCheck:
    """Addon: converts the `dlp_*` values mitmproxy kept aside, and reports bad or unknown ones to ProfileState."""

    name = "dlp-option-check"

    def __init__(self, state) -> None:
        self.state = state

    def load(self, loader) -> None:
        options = loader.master.options
        problems = []
        for name in sorted(n for n in options.deferred if n.startswith(PREFIX)):
            value = options.deferred[name]
            if name not in options:
                problems.append(f"unknown option {name}{closest(name, options.keys())}")
                continue
            raw = getattr(value, "val", None)
            if raw is None:
                continue
            try:
                options._parse_setval(options._options[name], raw)  # mitmproxy's own conversion, done early
            except exceptions.OptionsError as e:
                problems.append(f"{name}: {e}")
                del options.deferred[name]  # so mitmproxy does not drop the script over it
        self.state.set_option_problems(problems)

    def configure(self, updated) -> None:
        """A valid value set later for an option that was bad clears its problem (not the all-options configure
        that follows loading, which carries no new value)."""
        from mitmproxy import ctx

        if self.state.option_problems and not set(updated) >= set(ctx.options.keys()):
            left = [p for p in self.state.option_problems if p.split(":", 1)[0] not in updated]
            if left != self.state.option_problems:
                self.state.set_option_problems(left)
