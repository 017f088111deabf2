"""FHIR R4 files read as a stream: a Bundle (``.json``), one NDJSON file of a bulk-data
``$export`` (``Observation.ndjson``: one resource per line) or a folder of them, in memory that
does not grow with the file.

The case store wants one case per patient with all of that patient's resources, but a Bundle
may list them in any order and an export scatters them over one file per resource type. So
reading takes two passes:

1. **index**: resources are decoded one at a time (a Bundle's ``entry`` array element by
   element with the C JSON decoder on a bounded text buffer; NDJSON line by line). Types the
   reader does not read are counted; a Patient is checked and kept; any other resource is kept
   with the reference to its subject. "Kept" means written as its JSON text to a spool: a
   temporary SQLite file in a private (0700) directory, deleted when the source is closed. It
   holds what the source file holds, no more, for no longer than the import. Then references
   are resolved in SQL (``fullUrl`` or ``Patient/<id>``) and a dangling one is refused, naming
   its file and line or entry.
2. **cases**: :meth:`FhirSource.cases` yields the patients in the order they came, each with its
   resources (an index on the patient id): one case in memory at a time.

Memory is bounded by the largest single resource (at most ``MAX_RESOURCE_CHARS``) plus what
SQLite caches. JSON nested deeper than Python's decoder goes is refused as a DataError naming
the file and entry or line. (ijson was measured and not used: its C backend builds a prefix
string per nesting level, so a 50,000-deep entry took over 3 GB before failing.)

Example:
    >>> with open_fhir("export/") as src:           # Patient.ndjson, Observation.ndjson, ...
    ...     store.import_records(src.cases(), source="export", source_kind="fhir", total=src.n_cases,
    ...                          file_sha256=src.sha256, skipped=src.skipped)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from medassist.data.case_records import CaseRecord
from medassist.data.io.fhir import _MALFORMED, READ_TYPES, _add, _Bad, _case, _entry_error, _patient
from medassist.exceptions import DataError, DataFileNotFoundError

#: One resource (a Bundle entry or an NDJSON line) larger than this is refused.
MAX_RESOURCE_CHARS = 64 * 2**20
_CHUNK = 1 << 20
_BATCH = 5000
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def is_fhir_path(path: str | Path) -> bool:
    """A ``.json`` or ``.ndjson`` file, or a folder holding ``.ndjson`` files."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.ndjson"))
    return path.suffix.lower() in (".json", ".ndjson")


def open_fhir(path: str | Path, *, source: str | None = None, spool_dir: str | Path | None = None) -> FhirSource:
    """A :class:`FhirSource` for a Bundle, an NDJSON file or a folder of NDJSON files; use it in
    a ``with`` block (the index pass runs on entering, the spool is deleted on leaving)."""
    return FhirSource(path, source=source, spool_dir=spool_dir)


class _Hashing(io.RawIOBase):
    """A binary file that feeds what is read through SHA-256 (the import's idempotency key)."""

    def __init__(self, fh: BinaryIO, sha) -> None:
        self._fh, self._sha = fh, sha

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._fh.read(len(b))
        self._sha.update(data)
        b[:len(data)] = data
        return len(data)


class _Malformed(Exception):
    """The file is not JSON (or not a Bundle's shape) at some point; the message says where."""


class _TextStream:
    """JSON values decoded one at a time from a text file through a bounded buffer."""

    def __init__(self, fh) -> None:
        self.fh, self.buf, self.pos, self.eof = fh, "", 0, False

    def _fill(self, want: int = _CHUNK) -> bool:
        chunk = self.fh.read(want)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the file)."""
        while True:
            m = _WS.match(self.buf, self.pos)  # always matches (possibly empty)
            self.pos = m.end() if m else self.pos
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise _Malformed(f"expected {what}, got {c!r}" if c else f"expected {what}, got the end of the file")
        self.pos += 1
        return c

    def value(self) -> tuple[Any, str]:
        """Decode the next JSON value: (the value, its JSON text)."""
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.eof or len(self.buf) - self.pos > MAX_RESOURCE_CHARS:
                    if not self.eof:
                        raise _Malformed(f"a value longer than {MAX_RESOURCE_CHARS // 2**20} MiB or not JSON ({e.msg})") from None
                    raise _Malformed(f"not JSON ({e.msg})") from None
                self._fill(max(_CHUNK, len(self.buf) - self.pos))  # a value cut by the buffer's end: read on
                continue
            except RecursionError:
                raise _Malformed("JSON nested too deeply to read (thousands of levels of [ or {)") from None
            if end == len(self.buf) and not self.eof and self._fill():
                continue  # a number may go on past the buffer's end ("12" of "123"): decode again
            raw = self.buf[self.pos:end]
            self.pos = end
            return obj, raw


class FhirSource:
    """A FHIR file or export folder, indexed into a spool (see the module docstring).

    Attributes (after entering): ``where`` (the name used in messages), ``sha256`` (of the file,
    or of the folder's file names and hashes), ``n_cases`` (patients), ``skipped`` (resources
    left out by type; "Observation without a value" is counted while :meth:`cases` runs).
    """

    def __init__(self, path: str | Path, *, source: str | None = None, spool_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.where = source or str(self.path)
        self.spool_dir = spool_dir
        self.sha256: str | None = None
        self.n_cases = 0
        self.skipped: dict[str, int] = defaultdict(int)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._db: sqlite3.Connection | None = None
        self._bundle = False

    @property
    def _spool(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("FhirSource: the spool is open only inside a 'with' block.")
        return self._db

    # ------------------------------------------------------------------------- pass 1: index
    def __enter__(self) -> FhirSource:
        if not self.path.exists():
            raise DataFileNotFoundError(f"{self.path}: file not found (expected a FHIR R4 Bundle in JSON, an NDJSON "
                                        "export file or a folder of them).")
        self._tmp = tempfile.TemporaryDirectory(prefix="medassist-fhir-", dir=self.spool_dir)
        try:
            self._db = sqlite3.connect(Path(self._tmp.name) / "spool.db")
            self._db.executescript("""
                PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16000;
                CREATE TABLE patients (seq INTEGER PRIMARY KEY, pid TEXT UNIQUE, loc TEXT, raw TEXT);
                CREATE TABLE refs (ref TEXT PRIMARY KEY, pid TEXT);
                CREATE TABLE res (seq INTEGER PRIMARY KEY, ref TEXT, pid TEXT, loc TEXT, raw TEXT);
            """)
            self._index()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _index(self) -> None:
        self._rows: dict[str, list] = {"patients": [], "refs": [], "res": []}
        if self.path.is_dir():
            files = sorted(self.path.glob("*.ndjson"))
            if not files:
                raise DataError(f"{self.where}: a folder without .ndjson files (expected a FHIR bulk-data export: "
                                "Patient.ndjson, Observation.ndjson, ...).")
            # Patients first: the spool keeps the order patients came in, which is the cases' order.
            files.sort(key=lambda f: (f.stem != "Patient", f.name))
            digest = hashlib.sha256()
            for f in files:
                sha = hashlib.sha256()
                self._read_ndjson(f, sha, f"{self.where.rstrip('/')}/{f.name}")
                digest.update(f"{f.name}\0{sha.hexdigest()}\n".encode())
            self.sha256 = digest.hexdigest()
        else:
            sha = hashlib.sha256()
            if self.path.suffix.lower() == ".ndjson":
                self._read_ndjson(self.path, sha, self.where)
            else:
                self._bundle = True
                self._read_bundle(self.path, sha)
            self.sha256 = sha.hexdigest()
        self._flush()
        self._resolve()
        self.n_cases = self._spool.execute("SELECT count(*) FROM patients").fetchone()[0]

    def _read_ndjson(self, path: Path, sha, where: str) -> None:
        with path.open("rb") as fh:
            for n, line in enumerate(fh, start=1):
                sha.update(line)
                if not line.strip():
                    continue
                loc = f"{where}: line {n}"
                if len(line) > MAX_RESOURCE_CHARS:
                    raise DataError(f"{loc}: a resource larger than {MAX_RESOURCE_CHARS // 2**20} MiB.")
                try:
                    text = line.decode("utf-8-sig" if n == 1 else "utf-8")
                    res = json.loads(text)
                except UnicodeDecodeError as e:
                    raise DataError(f"{loc}: not UTF-8 text ({e.reason} at byte {e.start}).") from None
                except json.JSONDecodeError as e:
                    raise DataError(f"{loc}: not JSON ({e.msg} at column {e.colno}); expected one FHIR resource per "
                                    "line.") from None
                except RecursionError:
                    raise DataError(f"{loc}: JSON nested too deeply to read (thousands of levels of [ or {{).") from None
                self._keep(loc, res, None, text.strip())

    def _read_bundle(self, path: Path, sha) -> None:
        with path.open("rb") as raw:
            text = io.TextIOWrapper(io.BufferedReader(_Hashing(raw, sha), _CHUNK), encoding="utf-8-sig")
            stream = _TextStream(text)
            i, at = 0, None  # at: the entry being decoded, for messages
            try:
                if stream.peek() != "{":
                    got = "nothing" if not stream.peek() else "a JSON " + {"[": "list"}.get(stream.peek(), "value")
                    raise DataError(f"{self.where}: expected a FHIR Bundle (resourceType 'Bundle'), got {got}.")
                stream.expect("{", "'{'")
                kind = None
                while stream.peek() != "}":
                    key, _ = stream.value()
                    if not isinstance(key, str):
                        raise _Malformed(f"expected a key in double quotes, got {key!r}")
                    stream.expect(":", "':'")
                    if key == "entry" and stream.peek() == "[":
                        stream.expect("[", "'['")
                        while stream.peek() != "]":
                            at = i
                            entry, raw_entry = stream.value()
                            res = entry.get("resource") if isinstance(entry, dict) else None
                            url = entry.get("fullUrl") if isinstance(entry, dict) else None
                            self._keep(f"{self.where}: entry {i}", res, url if isinstance(url, str) else None, raw_entry)
                            i, at = i + 1, None
                            if stream.expect(",]", "',' or ']' after an entry") == "]":
                                stream.pos -= 1
                        stream.expect("]", "']'")
                    else:
                        value, _ = stream.value()
                        if key == "entry" and value is not None:
                            raise DataError(f"{self.where}: Bundle.entry must be a list.")
                        if key == "resourceType":
                            kind = value
                            if kind != "Bundle":
                                raise DataError(f"{self.where}: expected a FHIR Bundle (resourceType 'Bundle'), got {kind!r}.")
                    if stream.expect(",}", "',' or '}'") == "}":
                        stream.pos -= 1
                stream.expect("}", "'}'")
                if stream.peek():
                    raise _Malformed("text after the Bundle's closing '}'")
            except UnicodeDecodeError as e:
                raise DataError(f"{self.where}: not UTF-8 text ({e.reason}); expected a FHIR R4 Bundle in JSON.") from None
            except _Malformed as e:
                raise DataError(f"{self.where}: entry {at}: {e}; expected a FHIR R4 Bundle in JSON." if at is not None else
                                f"{self.where}: {e}; expected a FHIR R4 Bundle in JSON.") from None
            if kind != "Bundle":
                raise DataError(f"{self.where}: expected a FHIR Bundle (resourceType 'Bundle'), got {kind!r}.")

    def _keep(self, loc: str, res: Any, full_url: str | None, raw: str) -> None:
        """Check one resource enough to index it, and spool it."""
        try:
            rt = res.get("resourceType") if isinstance(res, dict) else None
            if not isinstance(res, dict) or not isinstance(rt, str):
                raise _Bad("resource", "an object with a resourceType")
            if rt not in READ_TYPES:
                self.skipped[rt] += 1
                return
            if rt == "Patient":
                pid = _patient(res).source_id
                self._rows["patients"].append((pid, loc, raw))
                self._rows["refs"].append((f"Patient/{pid}", pid))
                if full_url:
                    self._rows["refs"].append((full_url, pid))
            else:
                subject = res.get("subject") or res.get("patient")
                ref = subject.get("reference") if isinstance(subject, dict) else None
                if not isinstance(ref, str) or not ref:
                    raise _Bad("subject.reference", "a reference to a Patient of this bundle (Patient/<id>)")
                self._rows["res"].append((ref, loc, raw))
        except _MALFORMED as e:
            raise _entry_error(loc, res, e) from None
        if len(self._rows["res"]) + len(self._rows["patients"]) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        db, rows = self._spool, self._rows
        for pid, loc, raw in rows["patients"]:
            try:
                db.execute("INSERT INTO patients (pid, loc, raw) VALUES (?, ?, ?)", (pid, loc, raw))
            except sqlite3.IntegrityError:
                res = json.loads(raw)
                raise _entry_error(loc, res.get("resource", res) if self._bundle else res,
                                   _Bad("id", f"a Patient id unique in the bundle; '{pid}' appears twice")) from None
        db.executemany("INSERT OR IGNORE INTO refs (ref, pid) VALUES (?, ?)", rows["refs"])
        db.executemany("INSERT INTO res (ref, loc, raw) VALUES (?, ?, ?)", rows["res"])
        for k in rows:
            rows[k] = []

    def _resolve(self) -> None:
        """Each resource's patient from its reference; a dangling reference is refused."""
        db = self._spool
        db.execute("""UPDATE res SET pid = COALESCE((SELECT pid FROM refs WHERE refs.ref = res.ref),
                      CASE WHEN substr(res.ref, 1, 8) = 'Patient/' THEN substr(res.ref, 9) END)""")
        bad = db.execute("""SELECT res.ref, res.pid, res.loc, res.raw FROM res LEFT JOIN patients ON patients.pid = res.pid
                            WHERE patients.pid IS NULL ORDER BY res.seq LIMIT 1""").fetchone()
        if bad is not None:
            ref, pid, loc, raw = bad
            what = (f"a reference to a Patient of this bundle, got {ref!r}" if pid is None
                    else f"a Patient of this bundle, got 'Patient/{pid}'")
            raise _entry_error(loc, self._resource(raw), _Bad("subject.reference", what))
        db.execute("CREATE INDEX res_pid ON res (pid, seq)")
        db.commit()

    def _resource(self, raw: str) -> Any:
        doc = json.loads(raw)
        return doc.get("resource") if self._bundle and isinstance(doc, dict) else doc

    # ------------------------------------------------------------------------- pass 2: cases
    def cases(self) -> Iterator[CaseRecord]:
        """One case per Patient, in the order the Patients came, built one at a time."""
        if self._db is None:
            raise RuntimeError("FhirSource.cases() needs the source opened in a 'with' block.")
        db = self._db
        for loc, raw in db.execute("SELECT loc, raw FROM patients ORDER BY seq"):
            res = self._resource(raw)
            try:
                patient = _patient(res)
            except _MALFORMED as e:
                raise _entry_error(loc, res, e) from None
            parts: dict[str, list] = defaultdict(list)
            age = None
            for rloc, rraw in db.execute("SELECT loc, raw FROM res WHERE pid = ? ORDER BY seq", (patient.source_id,)):
                r = self._resource(rraw)
                try:
                    a = _add(r["resourceType"], r, parts, self.skipped)
                except _MALFORMED as e:
                    raise _entry_error(rloc, r, e) from None
                if a is not None:
                    age = a
            yield _case(patient, parts, age)
