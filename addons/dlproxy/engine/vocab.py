"""The words dlproxy decides and reports in: directions, actions, verdicts, reasons.

Every value here is a public string: a profile key or value, a Prometheus label value, or a field of the
incident JSON (docs/contracts.md). They are StrEnums, so each member *is* its string: it compares equal to the
plain text read from a YAML file, formats as its value and serializes to JSON unchanged. Renaming a value
breaks dashboards and profiles; tests/test_vocab.py pins every one of them.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    """Which message is inspected (also the per-direction keys of an entry's `action`)."""

    REQUEST = "request"
    RESPONSE = "response"
    WEBSOCKET = "websocket"


class Action(StrEnum):
    """What policy does with one finding: a profile action, or one of the two outcomes policy adds."""

    BLOCK = "block"
    REDACT = "redact"
    LOG = "log"
    ALLOW = "allow"  # sent to one of its own issuers
    BELOW_MIN_MATCHES = "below_min_matches"  # fewer distinct credentials than settings.min_matches


PROFILE_ACTIONS = (Action.BLOCK, Action.REDACT, Action.LOG)  # what a profile entry or default_action may say

# Several findings in one message: the strongest action is applied to the message.
ACTION_STRENGTH = {Action.LOG: 1, Action.REDACT: 2, Action.BLOCK: 3}


class Enforcement(StrEnum):
    """What the proxy does to the message (dry-run always passes)."""

    PASS = "pass"
    REDACT = "redact"
    BLOCK = "block"


class Verdict(StrEnum):
    """What policy decided about a message (in dry-run: what it would have done); flows_total's label."""

    CLEAN = "clean"
    BLOCKED = "blocked"
    REDACTED = "redacted"
    LOGGED = "logged"
    ALLOWED = "allowed"
    SKIPPED = "skipped"  # something could not be inspected, and policy let it through
    ERROR = "error"  # the inspection itself failed
    DRY_RUN = "dry_run"  # flows_total only: would have been blocked or redacted, passed under --dry-run


VERDICT_OF_ACTION = {Action.BLOCK: Verdict.BLOCKED, Action.REDACT: Verdict.REDACTED, Action.LOG: Verdict.LOGGED,
                     Action.ALLOW: Verdict.ALLOWED}

# A streamed flow takes several decisions but is counted once in flows_total: with the most severe verdict.
VERDICT_SEVERITY = {Verdict.CLEAN: 0, Verdict.SKIPPED: 1, Verdict.ALLOWED: 2, Verdict.LOGGED: 3,
                    Verdict.REDACTED: 4, Verdict.ERROR: 5, Verdict.BLOCKED: 6}


class Reason(StrEnum):
    """Why (part of) a message was not inspected: unscannable_total's and inspection_errors_total's label.

    An inspection that raised is counted under its exception type name instead (a bounded set: our code's)."""

    TOO_LARGE = "too_large"  # the per-message decoded-byte budget (max_inspect_bytes) ran out
    BOMB = "bomb"  # a decoder's output grew past max_expansion_ratio x its input
    DEPTH = "depth"  # nesting past max_archive_depth / max_base64_depth / max_json_depth / coding layers
    MEMBERS = "members"  # an archive or multipart body with more members than max_archive_members
    ENCRYPTED = "encrypted_archive"  # an encrypted archive member
    CORRUPT_ENCODING = "corrupt_encoding"  # compressed or transfer-encoded data that does not decode
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # a Content-Encoding or zip method we cannot decode
    TRUNCATED = "truncated"  # a stream, archive or multipart body that ends early
    MALFORMED = "malformed"  # a container (zip, tar, multipart) whose structure is broken
    ERROR = "error"  # an unexpected exception inside an extractor (a bug): never escapes, always reported
    NOT_READY = "not_ready"  # no profile loaded yet


# The size reasons follow the profile's on_oversize; every other reason follows on_error.
OVERSIZE_REASONS = frozenset({Reason.TOO_LARGE, Reason.BOMB, Reason.DEPTH, Reason.MEMBERS})

