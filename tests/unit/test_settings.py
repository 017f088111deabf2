import pytest
from pydantic import ValidationError

from medassist.exceptions import ConfigError
from medassist.options import ModelSize, look_up_option
from medassist.settings import Settings
from medassist.validation import check_number


def test_home_comes_from_environment_and_holds_all_state(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDASSIST_HOME", str(tmp_path / "h"))
    s = Settings()
    assert s.home == (tmp_path / "h").resolve()
    assert s.bundles_dir.parent == s.home and s.logs_dir.parent == s.home
    assert s.resolved_database_url == f"sqlite:///{s.home / 'medassist.db'}"
    assert not s.home.exists()  # reading settings creates nothing
    s.ensure_dirs()
    assert s.bundles_dir.is_dir()


def test_bad_settings_are_refused(monkeypatch):
    monkeypatch.setenv("MEDASSIST_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()
    with pytest.raises(ValidationError):
        Settings(unknown_field=1)


def test_look_up_option_suggests_and_accepts_members():
    assert look_up_option("LARGE", ModelSize) is ModelSize.LARGE
    assert look_up_option(ModelSize.SMALL, ModelSize) is ModelSize.SMALL
    with pytest.raises(ConfigError, match="did you mean 'large'"):
        look_up_option("lage", ModelSize, name="size")


def test_check_number_message_names_parameter_interval_and_value():
    with pytest.raises(ConfigError, match=r"The 'lr' parameter of TrainConfig must be a number in \(0, 1\]. Got -1 instead."):
        check_number(-1, name="lr", owner="TrainConfig", low=0, high=1, low_open=True)
    with pytest.raises(ConfigError, match="must be an integer"):
        check_number(1.5, name="epochs", owner="X", low=1, integer=True)
    with pytest.raises(ConfigError):
        check_number(True, name="x", owner="X")
    assert check_number(3, name="x", owner="X", low=1, integer=True) == 3
