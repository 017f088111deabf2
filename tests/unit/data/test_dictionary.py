"""Data dictionaries: REDCap and plain CSV, YAML, bad rows named, bundled ones for every data set."""

from __future__ import annotations

import pytest

from medassist.data.catalog import list_datasets
from medassist.data.dictionary import (
    ColumnRole,
    ColumnType,
    DataDictionary,
    bundled_dictionary,
    dictionary_for,
    find_dictionary_beside,
    read_dictionary,
)
from medassist.exceptions import DataError

REDCAP = '''"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number","Text Validation Min","Text Validation Max"
record_id,baseline,,text,Record ID,,,,,
sex,baseline,,radio,Sex,"1, Male | 2, Female",,,,
sbp,baseline,,text,"Systolic blood
pressure",,mm Hg,integer,60,260
smoker,baseline,,yesno,Current smoker,,,,,
intro,baseline,,descriptive,Please fill in,,,,,
symptoms,baseline,,checkbox,Symptoms,"1, Chest pain | 2, Dyspnoea",,,,
stage,baseline,,dropdown,Stage,"1, I | 2, II | 3, III",,,,
'''


def test_redcap_data_dictionary(tmp_path):
    path = tmp_path / "study.dictionary.csv"
    path.write_text(REDCAP)
    d = read_dictionary(path)
    assert d.entry("record_id").type is ColumnType.ID and d.role("record_id") is ColumnRole.ID
    assert d.entry("sex").type is ColumnType.BINARY and d.meaning("sex", 2) == "Female" and d.meaning("sex", "1.0") == "Male"
    sbp = d.entry("sbp")
    assert sbp.label_with_unit == "Systolic blood pressure (mm Hg)" and (sbp.min, sbp.max) == (60, 260)
    assert d.describe("sbp", 140.0) == "140 mm Hg"
    assert d.meaning("smoker", 1) == "yes" and d.meaning("smoker", 0) == "no"
    assert "intro" not in d.columns
    assert d.label("symptoms___1") == "Symptoms: Chest pain" and d.entry("symptoms___2").type is ColumnType.BINARY
    assert d.entry("stage").type is ColumnType.CATEGORICAL and d.meaning("stage", 3) == "III"


@pytest.mark.parametrize("row, message", [
    ('bp,baseline,,radio,Blood pressure,"1 Male | 2, Female",,,,', r"row 3 \('bp'\).*'1 Male' is not 'CODE, meaning'"),
    ('bp,baseline,,text,BP,,mm Hg,integer,high,260', r"row 3 \('bp'\): min must be a number, got 'high'"),
    ('bp,baseline,,text,BP,,mm Hg,integer,300,260', r"row 3 \('bp'\): min \(300\) is above max \(260\)"),
    ('bp,baseline,,matrix,BP,,,,,', r"row 3 \('bp'\): unknown REDCap field type 'matrix'"),
    (',baseline,,text,BP,,,,,', r"row 3: 'Variable / Field Name' is empty"),
])
def test_a_bad_redcap_row_gets_one_clear_error_naming_it(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    path.write_text(REDCAP.splitlines()[0] + "\nrecord_id,baseline,,text,Record ID,,,,,\n" + row + "\n")
    with pytest.raises(DataError, match=message) as e:
        read_dictionary(path)
    assert str(path) in str(e.value)


def test_plain_csv_and_yaml_dictionaries(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("column,label,unit,type,codes,min,max,description,role\n"
                        "chol,Serum cholesterol,mg/dL,numeric,,85,600,,\n"
                        "hosp,Hospital,,site,\"A, Addenbrooke's | B, Bart's\",,,,\n"
                        "exang,Exercise angina,,binary,\"1, yes | 0, no\",,,,\n")
    d = read_dictionary(csv_path)
    assert d.label_with_unit("chol") == "Serum cholesterol (mg/dL)" and d.role("hosp") is ColumnRole.SITE
    assert d.role_note("hosp") == "site of care — not a clinical factor" and d.meaning("exang", True) == "yes"
    yaml_path = tmp_path / "d.yaml"
    yaml_path.write_text("title: Ward sepsis\ncolumns:\n  lactate: {label: Lactate, unit: mmol/L, min: 0, max: 30}\n"
                         "  sex: {label: Sex, type: binary, codes: {1: male, 2: female}}\n")
    y = read_dictionary(yaml_path)
    assert y.title == "Ward sepsis" and y.describe("lactate", 2.5) == "2.5 mmol/L" and y.meaning("sex", 2.0) == "female"
    assert DataDictionary.from_dict(y.to_dict()).to_dict() == y.to_dict()
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns:\n  lactate: {label: Lactate, colour: red}\n")
    with pytest.raises(DataError, match=r"bad.yaml, column 'lactate': unknown key\(s\) colour"):
        read_dictionary(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,meaning\nx,y\n")
    with pytest.raises(DataError, match="neither 'Variable / Field Name'"):
        read_dictionary(wrong)


def test_a_dictionary_beside_the_data_is_found_and_overlays_the_bundled_one(tmp_path):
    data = tmp_path / "ward.csv"
    data.write_text("chol,disease\n200,present\n")
    assert find_dictionary_beside(data) is None
    (tmp_path / "ward.dictionary.yaml").write_text("columns:\n  chol: {label: Total cholesterol, unit: mmol/L}\n")
    d = dictionary_for(dataset="heart_disease", data_path=data)
    assert d.label_with_unit("chol") == "Total cholesterol (mmol/L)" and d.label_with_unit("trestbps") == "Resting blood pressure (mm Hg)"


def test_every_bundled_data_set_ships_a_dictionary_covering_its_columns():
    for info in list_datasets():
        d = bundled_dictionary(info.name)
        assert d.title, info.name
        columns = [str(c) for c in info.load().columns]
        assert [c for c in columns if c not in d.columns] == [], info.name
        if info.id_column:
            assert d.role(info.id_column) is ColumnRole.ID, info.name
        if info.site_column:
            assert d.role(info.site_column) is ColumnRole.SITE, info.name
    heart = bundled_dictionary("heart_disease")
    assert heart.label_with_unit("thalch") == "Maximum heart rate on exercise (beats/min)"
    assert bundled_dictionary("solubility").unit("SOL") == "log mol/L"
    assert bundled_dictionary("colon").meaning("extent", 4) == "contiguous structures"
    assert bundled_dictionary("whas500").meaning("miord", 1) == "recurrent"
