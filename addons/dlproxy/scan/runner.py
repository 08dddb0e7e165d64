"""Scanning files and added lines: every occurrence located by file (or archive member), line and column.

A file is read in bounded pieces: files up to 32 MiB and containers whole (up to `max_file_bytes`), larger text
files in chunks that overlap by more than the longest token, so memory stays bounded and a token across a chunk
border is still seen whole. Whatever could not be fully scanned becomes an `Unscanned` entry, never a silent
"clean"; only bytes actually scanned count in `scanned_bytes`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..engine.detector import Detector
from ..engine.findings import Finding
from ..extract import Limits, extract_file
from ..extract.encoding import sniff_container

WHOLE = 32 * 1024 * 1024  # files up to this are read whole: every decoded view (JSON escapes, XML) is exact
CHUNK = 8 * 1024 * 1024  # larger text files are scanned in chunks of this size
HEAD = 8192
INLINE_ALLOW = b"dlproxy:allow"


@dataclass(slots=True)
class Result:
    """One occurrence of a credential. `path` names the file (`archive.zip!member` inside an archive)."""

    entry: str
    name: str
    severity: str
    path: str
    line: int
    column: int
    end_column: int
    masked: str
    fingerprint: str
    validated: str
    member: str | None = None
    commit: str | None = None
    author_date: str | None = None
    suppressed: str | None = None  # "inline" | "baseline" | "profile: <reason>"
    inline_allow: bool = field(default=False, repr=False)

    def as_json(self) -> dict:
        out = {"entry": self.entry, "name": self.name, "path": self.path, "line": self.line, "column": self.column,
               "masked": self.masked, "fingerprint": self.fingerprint, "validated": self.validated}
        if self.commit:
            out.update(commit=self.commit, author_date=self.author_date)
        if self.suppressed:
            out["suppressed"] = self.suppressed
        return out


@dataclass(frozen=True, slots=True)
class Unscanned:
    path: str
    reason: str


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)
    unscanned: list[Unscanned] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): left out by choice
    scanned_bytes: int = 0
    files: int = 0


def _line_col(data: bytes, start: int, end: int) -> tuple[int, int, int, bytes]:
    """1-based line, column and end column in Unicode code points, and the text of the line."""
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", start)
    if line_end == -1:
        line_end = len(data)
    line = data.count(b"\n", 0, start) + 1
    column = len(data[line_start:start].decode("utf-8", "replace")) + 1
    end_column = column + len(data[start:end].decode("utf-8", "replace"))
    return line, column, end_column, data[line_start:line_end]


class Scanner:
    """A detector plus the scan's limits; collects results into an Outcome."""

    def __init__(self, detector: Detector, limits: Limits, max_file_bytes: int, outcome: Outcome | None = None,
                 progress: Callable[[str, int], None] | None = None):
        self.detector = detector
        self.max_file_bytes = max_file_bytes
        # One file is one "message": the extraction budget is at least the file limit.
        self.limits = replace(limits, max_inspect_bytes=max(limits.max_inspect_bytes, max_file_bytes))
        self.out = outcome or Outcome()
        self.overlap = max(int(detector.max_token_len), 1024) + 256
        self.progress = progress

    # -- files ----------------------------------------------------------------------------------------

    def scan_path(self, display: str, path: str | Path) -> None:
        try:
            with open(path, "rb") as fh:
                size = _size(fh)
                if size > self.max_file_bytes:
                    self.out.unscanned.append(Unscanned(display, f"too_large: {size} bytes > --max-file-bytes "
                                                                 f"{self.max_file_bytes}"))
                    return
                head = fh.read(HEAD)
                container = sniff_container(head) is not None
                if b"\x00" in head and not container:
                    self.out.skipped.append((display, "binary"))
                    return
                if container or size <= WHOLE:
                    self.scan_bytes(display, head + fh.read())
                else:
                    self._scan_chunks(display, head, fh)
        except OSError as exc:
            self.out.unscanned.append(Unscanned(display, f"unreadable: {exc.strerror or type(exc).__name__}"))

    def scan_bytes(self, display: str, data: bytes) -> None:
        self.out.files += 1
        found = self._extract(display, data, 0, 0)
        self.out.results.extend(found)
        if self.progress:
            self.progress(display, len(data))

    def _scan_chunks(self, display: str, head: bytes, fh) -> None:
        """A large text file in overlapping chunks: findings kept once, by the chunk where they start."""
        self.out.files += 1
        buf, base, lines_before, decided = head + fh.read(CHUNK - len(head)), 0, 0, 0
        while True:
            more = fh.read(CHUNK)
            final = not more
            cut = base + len(buf) if final else base + len(buf) - self.overlap
            for r in self._extract(display, buf, base, lines_before, keep=(decided, cut)):
                self.out.results.append(r)
            if self.progress:
                self.progress(display, cut - decided)
            if final:
                return
            keep_from = cut - base - 256  # a little context before the cut for the boundary rule
            lines_before += buf.count(b"\n", 0, keep_from)
            buf, base, decided = buf[keep_from:] + more, base + keep_from, cut

    def _extract(self, display: str, data: bytes, base: int, lines_before: int,
                 keep: tuple[int, int] | None = None) -> list[Result]:
        extraction = extract_file(display, data, self.limits)
        self.out.scanned_bytes += len(data) if keep is None else keep[1] - keep[0]
        for item in extraction.unscannable:
            self.out.unscanned.append(Unscanned(_member_path(display, item.location), item.reason))
        results: list[Result] = []
        raw_fps: set[tuple[str | None, str]] = set()
        views: list[tuple[str | None, object, Finding]] = []
        for segment in extraction.segments:
            member, view = _split_location(display, segment.location)
            for finding in self.detector.scan(segment.data):
                if view:
                    views.append((member, segment, finding))
                    continue
                if keep is not None and not keep[0] <= base + finding.start < keep[1]:
                    continue
                raw_fps.add((member, finding.fingerprint))
                results.append(self._result(display, member, segment.data, finding, lines_before))
        seen: set[tuple[str | None, str, int]] = set()
        for member, segment, finding in views:  # a decoded view (JSON escapes, base64) of the same bytes
            if (member, finding.fingerprint) in raw_fps:
                continue
            r = self._result(display, member, segment.data, finding, lines_before)
            if (member, finding.fingerprint, r.line) not in seen:
                seen.add((member, finding.fingerprint, r.line))
                results.append(r)
        return results

    def _result(self, display: str, member: str | None, data: bytes, finding: Finding, lines_before: int) -> Result:
        line, column, end_column, text = _line_col(data, finding.start, finding.end)
        path = f"{display}!{member}" if member else display
        return Result(finding.entry_id, finding.name, finding.severity, path, line + lines_before, column,
                      end_column, finding.masked, finding.fingerprint, finding.validated, member=member,
                      inline_allow=INLINE_ALLOW in text)

    # -- added lines (diffs, history) -----------------------------------------------------------------

    def scan_lines(self, lines: list[bytes], where: list[tuple[str, int, str | None, str | None]]) -> None:
        """Scan added lines as one buffer; `where[i]` = (file, line number, commit, author date) of lines[i]."""
        if not lines:
            return
        data = b"\n".join(lines)
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        self.out.scanned_bytes += len(data)
        extraction = extract_file("diff", data, self.limits)
        raw: set[str] = set()
        late: list[Finding] = []
        for segment in extraction.segments:
            _, view = _split_location("diff", segment.location)
            for finding in self.detector.scan(segment.data):
                if view:
                    late.append(finding)
                    continue
                i = bisect.bisect_right(starts, finding.start) - 1
                raw.add(finding.fingerprint)
                self._add_line_result(finding, lines[i], finding.start - starts[i], where[i])
        if late and any(f.fingerprint not in raw for f in late):
            self._views_by_line(lines, where, raw)
        for item in extraction.unscannable:
            self.out.unscanned.append(Unscanned(f"added lines of {where[0][0]} and after", item.reason))

    def _views_by_line(self, lines: list[bytes], where, raw: set[str]) -> None:
        """A token seen only decoded (base64, escapes): find its line by extracting lines one by one."""
        for line, loc in zip(lines, where, strict=True):
            if len(line) < 16:
                continue
            for segment in extract_file("line", line, self.limits).segments:
                if segment.location == "line":
                    continue
                for finding in self.detector.scan(segment.data):
                    if finding.fingerprint not in raw:
                        raw.add(finding.fingerprint)
                        self._add_line_result(finding, line, None, loc)

    def _add_line_result(self, finding: Finding, line: bytes, offset: int | None, loc) -> None:
        file, number, commit, date = loc
        if offset is None:
            column, end_column = 1, len(line.decode("utf-8", "replace")) + 1
        else:
            column = len(line[:offset].decode("utf-8", "replace")) + 1
            end_column = column + len(line[offset:offset + finding.end - finding.start].decode("utf-8", "replace"))
        self.out.results.append(Result(
            finding.entry_id, finding.name, finding.severity, file, number, column, end_column, finding.masked,
            finding.fingerprint, finding.validated, commit=commit, author_date=date,
            inline_allow=INLINE_ALLOW in line))


def _size(fh) -> int:
    try:
        import os

        return os.fstat(fh.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return 0


def _split_location(display: str, location: str) -> tuple[str | None, bool]:
    """(archive member or None, is a decoded view) of an extraction location of file `display`."""
    rest = location[len(display):] if location.startswith(display) else ":" + location
    if not rest:
        return None, False
    if rest.startswith(":"):
        return None, True
    member = rest[1:]
    view = ":" in member
    return (member.split(":", 1)[0] if view else member), view


def _member_path(display: str, location: str) -> str:
    member, _ = _split_location(display, location)
    return f"{display}!{member}" if member else display
