import json

import numpy as np
import pandas as pd
import pytest
import torch

from medassist.exceptions import BundleError, ConfigError
from medassist.featurizers.tabular import TabularFeaturizer
from medassist.models import build_model
from medassist.registry.bundle import ModelBundle, load_bundle, save_bundle
from medassist.types import TaskSchema


def _bundle():
    df = pd.DataFrame({"age": [50, 60, 70, np.nan], "sex": ["F", "M", "F", "M"]})
    f = TabularFeaturizer().fit(df)
    model, spec = build_model("mlp", size="small", n_features=len(f.feature_names_), n_outputs=2)
    schema = TaskSchema(input_schema=f.input_schema(), output_schema={"dx": "binary"}, classes=["no", "yes"], positive_class="yes")
    return ModelBundle(model=model, model_spec=spec, featurizer=f, schema=schema, calibration={"temperature": 1.5}), df


def test_round_trip_gives_identical_predictions_without_pickle(tmp_path):
    b, df = _bundle()
    out = save_bundle(b, tmp_path / "b", attachments={"report.html": b"<html></html>"})
    files = {p.name for p in out.iterdir()}
    assert {"bundle.json", "model.safetensors", "featurizer.json", "schema.json", "report.html"} <= files
    assert not any(name.endswith((".pt", ".pkl", ".pth")) for name in files)
    loaded = load_bundle(out)
    x = torch.from_numpy(b.featurizer.transform(df).values)
    b.model.eval()
    torch.testing.assert_close(b.model(x), loaded.model(torch.from_numpy(loaded.featurizer.transform(df).values)))
    assert loaded.schema.positive_class == "yes" and loaded.calibration["temperature"] == 1.5
    assert len(loaded.bundle_id) == 16


def test_tampered_weights_are_refused(tmp_path):
    b, _ = _bundle()
    out = save_bundle(b, tmp_path / "b")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(out)


def test_incomplete_bundle_names_missing_file(tmp_path):
    b, _ = _bundle()
    out = save_bundle(b, tmp_path / "b")
    (out / "schema.json").unlink()
    with pytest.raises(BundleError, match="schema.json is missing"):
        load_bundle(out)
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle(tmp_path / "nothing")


def test_existing_out_dir_is_not_overwritten_unless_asked(tmp_path):
    b, _ = _bundle()
    out = save_bundle(b, tmp_path / "b")
    with pytest.raises(ConfigError, match="already exists"):
        save_bundle(b, out)
    save_bundle(b, out, overwrite=True)
    (tmp_path / "notabundle").mkdir()
    with pytest.raises(ConfigError, match="not a model bundle"):
        save_bundle(b, tmp_path / "notabundle", overwrite=True)


def test_failed_write_leaves_nothing_behind(tmp_path):
    b, _ = _bundle()
    with pytest.raises(ConfigError):
        save_bundle(b, tmp_path / "b", attachments={"../escape": b"x"})
    assert list(tmp_path.iterdir()) == []


def test_bundle_json_records_versions_and_checksums(tmp_path):
    b, _ = _bundle()
    out = save_bundle(b, tmp_path / "b")
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["format"] == 1 and meta["model"]["name"] == "mlp" and "model.safetensors" in meta["files"]
