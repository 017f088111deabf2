"""How the CLI prints warnings: medassist's own as one line for the user, a library's as Python does."""

from __future__ import annotations

from medassist.cli import main


def test_a_medassist_warning_is_one_line_without_a_source_path(capsys):
    where = f"{main._PACKAGE}/pipeline/tabular.py"
    main._show_warning(RuntimeWarning("TemperatureScaler: the fitted temperature 0.03981 ... was clamped to 0.05"), RuntimeWarning,
                       where, 383, line="    scaler = TemperatureScaler().fit(val_logits, codes[val_idx])")
    out = capsys.readouterr().err
    assert out.startswith("warning: TemperatureScaler: the fitted temperature") and "clamped to 0.05" in out
    assert "tabular.py" not in out and "RuntimeWarning" not in out and "scaler = " not in out and out.count("\n") == 1


def test_a_library_warning_keeps_pythons_format_naming_the_library(capsys):
    main._show_warning(RuntimeWarning("divide by zero"), RuntimeWarning, "/site-packages/lifelines/fitters.py", 12, line="x = 1 / 0")
    assert "/site-packages/lifelines/fitters.py:12: RuntimeWarning: divide by zero" in capsys.readouterr().err
