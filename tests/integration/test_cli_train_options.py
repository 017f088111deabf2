"""``medassist train`` keeps or refuses what it is told: every task declares the options it
accepts (a typed options class owned by its assistant); one it does not accept is refused by
name, and ``--dp-epsilon`` is either honoured (ε spent on the model card and in the privacy
ledger) or refused with the reason. ``--size`` is one ModelSize from the CLI to the spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medassist.assistants.diagnosis import DiagnosisTrainOptions
from medassist.assistants.imaging import ImageTrainOptions
from medassist.assistants.screening import ScreeningTrainOptions
from medassist.assistants.treatment import TreatmentTrainOptions
from medassist.cli.commands import TrainRequest, train_options
from medassist.data.synthetic_images import write_medmnist_npz
from medassist.exceptions import ConfigError
from medassist.options import ModelSize
from medassist.testing import one_line_error


def _req(task: str, **kw) -> TrainRequest:
    return TrainRequest(data="x.csv", out=Path("m"), task=task, **kw)


def test_an_option_the_task_does_not_accept_is_refused_by_name_with_the_accepted_ones():
    with pytest.raises(ConfigError) as e:
        train_options(_req("screening", time_column="t", event_column="e"), ScreeningTrainOptions)
    msg = str(e.value)
    assert msg.startswith("train --task screening does not accept --time, --event (accepted: --target, --smiles-column")
    with pytest.raises(ConfigError, match=r"does not accept --window \(accepted: "):
        train_options(_req("diagnosis", window="lung"), DiagnosisTrainOptions)
    with pytest.raises(ConfigError, match="does not accept --positive-class, --class-weight"):
        train_options(_req("treatment", positive_class="yes", class_weight="balanced"), TreatmentTrainOptions)
    with pytest.raises(ConfigError, match="--target does not apply to images"):
        train_options(_req("image", target="y"), ImageTrainOptions)


def test_accepted_options_arrive_typed_and_defaults_count_as_not_set():
    opts = train_options(_req("treatment", treatment_column="arm", time_column="t", event_column="e", size="LARGE"),
                         TreatmentTrainOptions)
    assert opts.size is ModelSize.LARGE and (opts.treatment_column, opts.time_column) == ("arm", "t")
    # every default the CLI fills in is accepted by every task
    for task, cls in [("diagnosis", DiagnosisTrainOptions), ("treatment", TreatmentTrainOptions),
                      ("image", ImageTrainOptions), ("screening", ScreeningTrainOptions)]:
        train_options(_req(task), cls)


def test_dp_settings_without_epsilon_are_refused_not_ignored():
    with pytest.raises(ConfigError, match="only apply to differentially private training; add --dp-epsilon"):
        train_options(_req("diagnosis", dp_delta=1e-6), DiagnosisTrainOptions)
    with pytest.raises(ConfigError, match="must be a number in"):
        train_options(_req("image", dp_epsilon=-1.0), ImageTrainOptions)


@pytest.mark.parametrize("task, data, extra", [
    ("screening", "freesolv", []),
    ("treatment", "actg175", []),
])
def test_dp_epsilon_is_refused_with_the_reason_where_no_epsilon_could_cover_the_bundle(task, data, extra, cli, tmp_path):
    line = one_line_error(cli("train", "--data", data, "--task", task, "--out", tmp_path / "m", "--dp-epsilon", "3", *extra))
    assert line.startswith(f"error: --dp-epsilon is not supported for task '{task}': ")
    assert "train without it" in line
    assert not (tmp_path / "m").exists()


def test_cli_refuses_an_option_of_another_task_before_reading_data(cli, tmp_path):
    line = one_line_error(cli("train", "--data", "freesolv", "--out", tmp_path / "m", "--time", "t", "--event", "e"))
    assert "train --task screening does not accept --time, --event (accepted:" in line


def test_image_training_honours_dp_epsilon_on_the_card_and_in_the_ledger(cli, tmp_path):
    npz = write_medmnist_npz(tmp_path / "pneumoniamnist.npz", n=60, size=28)
    home = tmp_path / "home"
    env = {"MEDASSIST_HOME": str(home), "MEDASSIST_PRIVACY_BUDGET_EPSILON": "4"}
    args = ["train", "--data", npz, "--size", "small", "--epochs", "1", "--no-progress", "--dp-epsilon", "3"]
    proc = cli(*args, "--out", tmp_path / "m", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "differential privacy: spent ε = 3" in proc.stderr
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert 0 < card["privacy"]["epsilon"] <= 3.001
    assert card["privacy"]["model_conversions"] == ["batchnorm_to_groupnorm", "clone_residual_branch"]
    assert json.loads((tmp_path / "m" / "featurizer.json").read_text())["params"]["standardize"] is False
    entries = json.loads((home / "privacy_ledger.json").read_text())["entries"]
    assert len(entries) == 1 and entries[0]["epsilon"] == card["privacy"]["epsilon"]
    # the bundle rebuilds its converted network and predicts
    picture = tmp_path / "x.png"
    Image.fromarray(np.load(npz)["test_images"][0]).save(picture)
    pred = cli("predict", tmp_path / "m", "--image", picture, "--no-explain", env=env)
    assert pred.returncode == 0, pred.stderr
    # a second run would take the image set past its budget of 4
    line = one_line_error(cli(*args, "--out", tmp_path / "m2", env=env))
    assert "Privacy budget exceeded" in line and not (tmp_path / "m2").exists()
    # class weights are counts of training labels, which DP-SGD does not cover
    line = one_line_error(cli(*args, "--class-weight", "balanced", "--out", tmp_path / "m3", env=env))
    assert "--class-weight balanced cannot be combined with --dp-epsilon" in line


def test_size_is_one_model_size_enum_from_cli_and_service_to_the_spec(cli, tmp_path):
    from medassist.pipeline.tabular import TabularSpec
    from medassist.service.research import TrainBody

    assert TrainBody(dataset="wdbc", size="large").size is ModelSize.LARGE
    assert TabularSpec(target="y", size="large").size is ModelSize.LARGE
    with pytest.raises(ConfigError, match="did you mean 'large'"):
        TabularSpec(target="y", size="lage")
    proc = cli("train", "--data", "wdbc", "--out", tmp_path / "m", "--size", "huge")
    assert proc.returncode != 0 and "'huge' is not one of 'small', 'base', 'large'" in proc.stderr
    assert not (tmp_path / "m").exists()
