import json

import pytest

from medassist.exceptions import ConfigError
from medassist.privacy.ledger import PrivacyLedger


def test_budget_is_summed_per_data_set_and_refused_past_the_total(tmp_path):
    ledger = PrivacyLedger(path=tmp_path / "ledger.json", total_epsilon=5.0)
    ledger.check("a", 3.0)
    ledger.record("a", epsilon=3.0, delta=1e-5, source="wdbc", bundle="m1")
    ledger.check("b", 5.0)  # another data set has its own budget
    with pytest.raises(ConfigError, match=r"3 of ε = 5 already spent.*spend 2.5 more"):
        ledger.check("a", 2.5, source="wdbc")
    ledger.check("a", 2.0)
    assert ledger.spent("a") == 3.0 and ledger.spent("b") == 0.0
    entries = json.loads((tmp_path / "ledger.json").read_text())["entries"]
    assert entries[0]["bundle"] == "m1" and entries[0]["source"] == "wdbc"


def test_corrupt_ledger_is_an_error_not_an_empty_budget(tmp_path):
    (tmp_path / "ledger.json").write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        PrivacyLedger(path=tmp_path / "ledger.json", total_epsilon=1.0).spent("a")


def test_total_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="total_epsilon"):
        PrivacyLedger(path=tmp_path / "l.json", total_epsilon=0)
