"""A task refuses a model size its networks have no preset for, in one line naming the accepted ones."""

import pytest

from medassist.assistants.prognosis import SurvivalTrainOptions, prognosis_spec
from medassist.assistants.treatment import TreatmentTrainOptions
from medassist.cli.cases_analysis import SurvivalSize
from medassist.exceptions import ConfigError
from medassist.models.sizes import check_size, sizes_of
from medassist.options import ModelSize
from medassist.pipeline import survival, treatment

SURVIVAL_REFUSAL = r"^Model size 'base' is not available for task 'survival'; it accepts: small, large\.$"
TREATMENT_REFUSAL = r"^Model size 'base' is not available for task 'treatment'; it accepts: small, large\.$"


def test_sizes_of_lists_the_presets_every_network_has():
    assert sizes_of("survnet", "case_autoencoder") == [ModelSize.SMALL, ModelSize.LARGE]
    assert sizes_of("multiarm", "effect_mlp") == [ModelSize.SMALL, ModelSize.LARGE]
    assert ModelSize.BASE in sizes_of("resnet18")


def test_check_size_returns_the_member_and_still_suggests_for_a_misspelling():
    assert check_size("LARGE", task="survival", models=survival.NETWORKS) is ModelSize.LARGE
    with pytest.raises(ConfigError, match="did you mean 'large'"):
        check_size("larg", task="survival", models=survival.NETWORKS)


@pytest.mark.parametrize("build", [
    lambda: survival.SurvivalSpec(size="base"),
    lambda: SurvivalTrainOptions(size=ModelSize.BASE),
    lambda: prognosis_spec(time="t", event="e", size="base"),
])
def test_survival_refuses_base_before_any_data_is_read(build):
    with pytest.raises(ConfigError, match=SURVIVAL_REFUSAL):
        build()


@pytest.mark.parametrize("build", [
    lambda: treatment.TreatmentSpec(treatment="arm", outcome="y", size="base"),
    lambda: TreatmentTrainOptions(size=ModelSize.BASE),
])
def test_treatment_refuses_base_before_any_data_is_read(build):
    with pytest.raises(ConfigError, match=TREATMENT_REFUSAL):
        build()


def test_cases_train_survival_offers_exactly_the_survival_sizes():
    assert [s.value for s in SurvivalSize] == [s.value for s in sizes_of(*survival.NETWORKS)]
