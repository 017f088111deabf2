"""``medassist cases`` on hostile input, in real subprocesses: one ``error:`` line, no traceback."""

from __future__ import annotations

import json

from medassist.data.io.fhir import write_fhir_ndjson
from medassist.data.synthetic import synthetic_cases
from medassist.testing import one_line_error


def test_deeply_nested_json_import_is_one_line_naming_the_file(cli, tmp_path, _isolated_home):
    env = {"MEDASSIST_HOME": str(_isolated_home)}
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    line = one_line_error(cli("cases", "import", deep, "--no-progress", env=env))
    assert str(deep) in line and "expected a FHIR Bundle" in line
    nested = tmp_path / "nested.json"
    nested.write_text('{"resourceType": "Bundle", "entry": [{"resource": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}]}")
    line = one_line_error(cli("cases", "import", nested, "--no-progress", env=env))
    assert f"{nested}: entry 0: JSON nested too deeply" in line
    ndjson = tmp_path / "Patient.ndjson"
    ndjson.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    line = one_line_error(cli("cases", "import", ndjson, "--no-progress", env=env))
    assert f"{ndjson}: line 1: JSON nested too deeply" in line


def test_an_ndjson_export_imports_and_a_deep_cohort_filter_is_one_line(cli, tmp_path, _isolated_home):
    env = {"MEDASSIST_HOME": str(_isolated_home)}
    write_fhir_ndjson(synthetic_cases(n_patients=30, seed=4), tmp_path / "export")
    first = cli("cases", "import", tmp_path / "export", "--json", "--no-progress", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["cases_added"] == 30 and summary["dataset"] == "export" and summary["source_kind"] == "fhir"
    again = cli("cases", "import", tmp_path / "export", "--json", "--no-progress", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["already_imported"] is True
    for where in ("(" * 250 + "age > 60" + ")" * 250, "not " * 490 + "age > 60"):
        proc = cli("cases", "cohort", "--dataset", "export", "--where", where, "--out", tmp_path / "plots", env=env)
        line = one_line_error(proc)
        assert "nested more than 32 levels" in line and len(proc.stderr.splitlines()) <= 3
