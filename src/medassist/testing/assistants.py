"""Test toolkit for the imaging, treatment and screening plugins (ships with the package; used by
tests and the load benchmark, never by the demo): tiny bundles trained in seconds and valid
inputs for each.

Example:
    >>> bundles = shared_assistant_bundles(tmp)       # {"imaging": Path, "treatment": Path, "screening": Path}
    >>> png = example_png()                           # a synthetic 28×28 lesion picture
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: A small screening library: valid molecules, one invalid SMILES and one repeated structure.
EXAMPLE_SMILES = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "CCN(CC)CC", "c1ccncc1", "OCC(O)CO",
                  "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "not_a_smiles", "OCC"]


def build_imaging_bundle(out: Path, *, epochs: int = 1, n: int = 64, seed: int = 0) -> Path:
    from medassist.assistants.imaging import synthetic_image_set, train_image_diagnosis

    return train_image_diagnosis(synthetic_image_set(n=n, size=28, seed=seed), out=out, epochs=epochs, seed=seed, size="small",
                                 overwrite=True, progress=False).bundle_dir


def build_treatment_bundle(out: Path, *, dataset: str = "colon", epochs: int = 3, seed: int = 0) -> Path:
    from medassist.assistants.treatment import train_treatment_model

    return train_treatment_model(dataset, out=out, epochs=epochs, ensemble=2, seed=seed, overwrite=True, progress=False).bundle_dir


def build_screening_bundle(out: Path, *, dataset: str = "solubility", epochs: int = 3, seed: int = 0) -> Path:
    from medassist.assistants.screening import train_screening_model

    return train_screening_model(dataset, out=out, model="fpmlp", epochs=epochs, ensemble=2, seed=seed, overwrite=True,
                                 progress=False, n_boot=50).bundle_dir


def build_prognosis_bundle(out: Path, *, epochs: int = 2, n: int = 300, seed: int = 0) -> Path:
    """A survival bundle (``train --task survival``) on the first ``n`` GBSG2 rows, with a patient ID."""
    import tempfile

    from medassist.assistants.prognosis import train_prognosis
    from medassist.pipeline.survival import sksurv_case_frame

    df = sksurv_case_frame("gbsg2").reset_index(drop=True).iloc[:n]
    df.insert(0, "pid", [f"GB{i:04d}" for i in range(len(df))])
    with tempfile.TemporaryDirectory() as tmp:
        df.to_csv(Path(tmp) / "gbsg2.csv", index=False)
        outcome, _, _ = train_prognosis(Path(tmp) / "gbsg2.csv", out=out, time="time", event="event", id_column="pid", epochs=epochs,
                                        ensemble=2, seed=seed, overwrite=True, progress=False)
    return outcome.bundle_dir


def example_survival_row(bundle: Path) -> dict:
    """A valid prognosis row: training medians (on the patient's scale) and each category's first level."""
    state = json.loads((bundle / "featurizer.json").read_text())["state"]
    info = json.loads((bundle / "schema.json").read_text())["extras"]["survival"]
    row = {}
    for c in info["covariates"]:
        if c in state["numeric_"]:
            m = state["median_"][c]
            row[c] = float(f"{np.expm1(m):.10g}") if c in info.get("log_columns", []) else m
        else:
            row[c] = next(v for v in state["categories_"][c] if not v.startswith("__"))
    return row


def shared_assistant_bundles(base: Path) -> dict[str, Path]:
    """The tiny bundles once per test session, in one folder (reused when already there)."""
    root = Path(base) / "shared-assistant-bundles"
    builders: dict[str, Callable[[Path], Path]] = {"imaging": build_imaging_bundle, "treatment": build_treatment_bundle, "screening": build_screening_bundle,
                "prognosis": build_prognosis_bundle}
    out: dict[str, Path] = {}
    for name, build in builders.items():
        path = root / name
        if not (path / "bundle.json").is_file():
            build(path)
        out[name] = path
    return out


def example_png(*, seed: int = 3, lesion: bool = True) -> bytes:
    """A synthetic picture like those the tiny imaging bundle was trained on."""
    from PIL import Image

    from medassist.data.synthetic_images import synthetic_images

    imgs, y, _ = synthetic_images(n=8, size=28, task="binary", seed=seed)
    k = int(np.flatnonzero(y == (1 if lesion else 0))[0])
    buf = io.BytesIO()
    Image.fromarray(np.asarray(imgs[k][0], dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def example_patient(bundle: Path) -> dict:
    """A valid treatment-form row: training medians and each categorical covariate's first level."""
    state = json.loads((bundle / "featurizer.json").read_text())["state"]
    meta = json.loads((bundle / "schema.json").read_text()) if (bundle / "schema.json").is_file() else None
    covariates = (meta or {}).get("extras", {}).get("treatment", {}).get("covariates") or state["columns_"]
    row = {}
    for c in covariates:
        if c in state["numeric_"]:
            row[c] = state["median_"][c]
        else:
            row[c] = next(v for v in state["categories_"][c] if not v.startswith("__"))
    return row


def example_library(kind: str = "smi") -> bytes:
    """``EXAMPLE_SMILES`` as a .smi list or a .csv table (with a name column)."""
    names = [f"mol{i + 1}" for i in range(len(EXAMPLE_SMILES))]
    if kind == "smi":
        return ("\n".join(f"{s} {n}" for s, n in zip(EXAMPLE_SMILES, names)) + "\n").encode()
    return ("smiles,name\n" + "\n".join(f"{s},{n}" for s, n in zip(EXAMPLE_SMILES, names)) + "\n").encode()


def example_sdf() -> bytes:
    from rdkit import Chem

    out = []
    for i, s in enumerate(EXAMPLE_SMILES[:5]):
        mol = Chem.MolFromSmiles(s)
        mol.SetProp("_Name", f"mol{i + 1}")
        out.append(Chem.MolToMolBlock(mol) + f">  <id>\nM{i + 1}\n\n$$$$\n")
    return "".join(out).encode()
