"""Case analysis through the CLI, in real subprocesses, on cases imported into a real SQLite store:
train the survival bundle, similar cases, cohort survival with plots, key factors, one patient."""

import json
import re

import pytest

from medassist.testing import one_line_error

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def home(tmp_path_factory, cli):
    home = tmp_path_factory.mktemp("cases_home")
    proc = cli("cases", "import", "whas500", "--no-progress", env={"MEDASSIST_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    return home


@pytest.fixture(scope="module")
def env(home):
    return {"MEDASSIST_HOME": str(home)}


@pytest.fixture(scope="module")
def dataset():
    return "whas500"


@pytest.fixture(scope="module")
def case_id(env, cli):
    proc = cli("cases", "list", env=env)
    assert proc.returncode == 0, proc.stderr
    return re.search(r"^(c[0-9a-f]{8,})\s", proc.stdout, re.M).group(1)


@pytest.fixture(scope="module")
def bundle(env, cli, dataset, home):
    proc = cli("cases", "train-survival", "--dataset", dataset, "--epochs", "6", "--members", "2", "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "C-index" in proc.stderr and "bundle:" in proc.stdout
    path = home / "bundles" / f"cases-survival-{dataset}"
    assert json.loads((path / "bundle.json").read_text())["task"] == "cases-survival"
    return path


def test_similar_cases_with_reasons_as_json_and_table(env, cli, bundle, case_id):
    proc = cli("cases", "similar", case_id, "--k", "4", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["case_id"] == case_id and len(res["neighbours"]) == 4
    assert all(n["case_id"] != case_id and n["reasons"] for n in res["neighbours"])
    table = cli("cases", "similar", case_id, "--k", "2", "--outcome-aware", env=env)
    assert table.returncode == 0, table.stderr
    assert res["neighbours"][0]["case_id"] not in ("",) and "why similar" in table.stdout


def test_cohort_prints_a_table_and_writes_plots(env, cli, dataset, tmp_path):
    proc = cli("cases", "cohort", "--dataset", dataset, "--where", "age > 50", "--by", "sex", "--out", tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "log-rank" in proc.stdout and "hazard ratio" in proc.stdout
    assert (tmp_path / "km.png").read_bytes()[:8] == PNG
    assert (tmp_path / "cohort_hazard_ratios.png").read_bytes()[:8] == PNG


def test_factors_for_the_cohort_and_for_one_patient(env, cli, dataset, bundle, case_id, tmp_path):
    proc = cli("cases", "factors", "--dataset", dataset, "--json", "--out", tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["hazard_ratios"] and res["attributions"]["factors"]
    one = cli("cases", "factors", "--dataset", dataset, "--case", case_id, "--out", tmp_path, env=env)
    assert one.returncode == 0, one.stderr
    assert "Top factors" in one.stdout and list(tmp_path.glob("risk_*.png"))


def test_bad_input_gives_one_error_line(env, cli, dataset):
    bad = one_line_error(cli("cases", "cohort", "--dataset", dataset, "--where", '__import__("os").system("id")', env=env))
    assert "unexpected character" in bad
    col = one_line_error(cli("cases", "cohort", "--dataset", dataset, "--by", "agee", env=env))
    assert "did you mean 'age'" in col and "Valid:" in col
    # --preset is a ModelSize choice: the CLI parser refuses it, naming the option and the valid sizes
    size = cli("cases", "train-survival", "--preset", "huge", env=env)
    assert size.returncode == 2 and "Traceback" not in size.stderr
    assert "'--preset'" in size.stderr and "'huge' is not one of 'small', 'large'" in size.stderr
