"""``medassist cases import | list | show`` in real subprocesses, as a user runs them."""

from __future__ import annotations

import json
from datetime import date

from medassist.data.case_records import CaseRecord, OutcomeRecord, PatientRecord
from medassist.data.io.fhir import write_fhir_bundle
from medassist.testing import one_line_error


def test_import_list_show(cli, tmp_path, _isolated_home):
    env = {"MEDASSIST_HOME": str(_isolated_home)}
    bundle = write_fhir_bundle([
        CaseRecord(patient=PatientRecord(source_system="fhir", source_id=f"p{i}", mrn=f"MRN-{i:04d}", name=f"Pat Doe{i}",
                                         birth_date=date(1960, 1, 1 + i), sex="female"),
                   outcomes=(OutcomeRecord(name="death", time_days=100.0 + i, event=i % 2),))
        for i in range(4)
    ], tmp_path / "Ward 7.json")
    first = cli("cases", "import", bundle, "--no-progress", env=env)
    assert first.returncode == 0, first.stderr
    assert "ward_7: 4 cases read, 4 added" in first.stdout
    again = cli("cases", "import", bundle, "--json", "--no-progress", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["already_imported"] is True

    listed = cli("cases", "list", "--json", env=env)
    rows = json.loads(listed.stdout)
    assert len(rows) == 4 and {r["dataset"] for r in rows} == {"ward_7"} and "mrn" not in rows[0]
    plain = cli("cases", "list", env=env)
    assert "MRN-0001" not in plain.stdout and rows[0]["case_id"] in plain.stdout
    ident = cli("cases", "list", "--identified", env=env)
    assert "MRN-0001" in ident.stdout and "Pat Doe1" in ident.stdout

    by_mrn = json.loads(cli("cases", "show", "MRN-0002", "--json", env=env).stdout)
    by_id = json.loads(cli("cases", "show", "p2", "--json", "--identified", env=env).stdout)
    assert by_mrn["case_id"] == by_id["case_id"] and "name" not in by_mrn
    assert by_id["name"] == "Pat Doe2" and by_id["outcomes"][0]["time_days"] == 102.0
    shown = cli("cases", "show", by_id["case_id"], env=env)
    assert shown.returncode == 0 and "death: censored at 102 days" in shown.stdout

    assert "No stored case" in one_line_error(cli("cases", "show", "nobody", env=env))
    assert "did you mean 'whas500'" in one_line_error(cli("cases", "import", "whas50", env=env))
    csv = tmp_path / "c.csv"
    csv.write_text("id,t,e\n1,5,1\n")
    assert "--time-column" in one_line_error(cli("cases", "import", csv, env=env))
