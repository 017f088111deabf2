"""``medassist cases deid`` and ``medassist cases code`` in real subprocesses."""

import json

import pandas as pd

from medassist.testing import one_line_error

NOTE = ("Patient: John Smith  MRN: 48213377\nSeen 03/12/2019 by Dr. Ann Lee. 92-year-old with type 2 diabetes mellitus with "
        "diabetic chronic kidney disease. No evidence of pneumonia. History of MI.\n")


def test_deid_and_code_a_text_note(tmp_path, cli):
    note = tmp_path / "note.txt"
    note.write_text(NOTE)
    out = tmp_path / "red" / "note.txt"
    proc = cli("cases", "deid", note, "--out", out)
    assert proc.returncode == 0, proc.stderr
    red = out.read_text()
    assert "Smith" not in red and "48213377" not in red and "[AGE>89]-year-old" in red and "diabetes" in red
    assert "NAME" in proc.stderr and "Smith" not in proc.stderr

    proc = cli("cases", "code", note, "--top", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    codes = {s["code"]: s for s in doc["suggestions"]}
    assert doc["suggestions"][0]["code"] == "E11.22"
    assert codes["J18.9"]["status"] == "excluded" and codes["I25.2"]["flags"] == ["historical"]


def test_csv_of_notes(tmp_path, cli):
    csv = tmp_path / "notes.csv"
    pd.DataFrame({"id": [1, 2], "note": ["Seen by Dr. Ann Lee on 2019-03-12. COPD.", "No evidence of pneumonia."]}).to_csv(csv, index=False)
    proc = cli("cases", "code", csv, "--text-column", "note")  # the table format
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("# ")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["row 2", "row 3"]
    assert blocks[0].splitlines()[1].split()[:2] == ["suggested", "J44.9"]
    assert blocks[1].splitlines()[1].split()[:2] == ["excluded", "J18.9"] and "[negated]" in blocks[1]
    proc = cli("cases", "deid", csv, "--text-column", "note", "--out", tmp_path / "red.csv")
    assert proc.returncode == 0, proc.stderr
    red = pd.read_csv(tmp_path / "red.csv")
    assert list(red["id"]) == [1, 2] and "Lee" not in red["note"][0] and "[DATE]" in red["note"][0]


def test_errors_are_one_line(tmp_path, cli):
    assert "file not found" in one_line_error(cli("cases", "code", tmp_path / "missing.txt"))
    csv = tmp_path / "n.csv"
    csv.write_text("a,b\n1,2\n")
    assert "--text-column" in one_line_error(cli("cases", "deid", csv))
    assert "no column 'text'" in one_line_error(cli("cases", "deid", csv, "--text-column", "text"))
