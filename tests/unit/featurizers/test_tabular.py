import json

import numpy as np
import pandas as pd
import pytest

from medassist.exceptions import DataError, NotFittedError, SchemaError
from medassist.featurizers.tabular import TabularFeaturizer, infer_column_kind


def _frame():
    return pd.DataFrame({
        "age": [50, 60, np.nan, 70],
        "sex": ["F", "M", "F", None],
        "bp": ["120", "130", "125", "140"],  # numbers stored as text
    })


def test_fit_uses_only_the_given_rows_and_keeps_missing_indicators():
    train = _frame()
    f = TabularFeaturizer().fit(train)
    assert f.numeric_ == ["age", "bp"] and f.categorical_ == ["sex"]
    assert f.median_["age"] == 60.0
    assert "age__is_missing" in f.feature_names_ and "bp__is_missing" not in f.feature_names_
    assert f.categories_["sex"] == ["F", "M", "__missing__"]
    fm = f.transform(train)
    assert fm.values.shape == (4, len(f.feature_names_))
    assert fm.n_imputed.tolist() == [0, 0, 1, 0]
    # the caller's table is never changed
    assert np.isnan(train.loc[2, "age"])


def test_transform_scales_with_training_statistics():
    f = TabularFeaturizer().fit(pd.DataFrame({"x": [0.0, 2.0, 4.0]}))
    v = f.transform(pd.DataFrame({"x": [2.0, 100.0]})).values[:, 0]
    assert v[0] == pytest.approx(0.0)
    assert v[1] == pytest.approx((100 - 2) / np.std([0, 2, 4]))


def test_unseen_category_is_counted_not_invented():
    f = TabularFeaturizer().fit(_frame())
    fm = f.transform(pd.DataFrame({"age": [55], "sex": ["X"], "bp": [120]}))
    assert fm.n_unknown.tolist() == [1]
    sex_cols = [i for i, g in enumerate(f.feature_groups_) if g == "sex"]
    assert fm.values[0, sex_cols].sum() == 0


def test_junk_in_numeric_column_names_column_and_row():
    df = pd.DataFrame({"age": ["50", "61", "abc"] + [str(i) for i in range(20)]})
    with pytest.raises(DataError, match=r"column 'age'.*row 3: 'abc'"):
        TabularFeaturizer().fit(df)


def test_missing_column_at_transform_is_a_schema_error():
    f = TabularFeaturizer().fit(_frame())
    with pytest.raises(SchemaError, match="'sex'"):
        f.transform(pd.DataFrame({"age": [1], "bp": [2]}))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        TabularFeaturizer().transform(_frame())


def test_json_round_trip_gives_identical_output():
    f = TabularFeaturizer().fit(_frame())
    g = TabularFeaturizer.from_dict(json.loads(json.dumps(f.to_dict())))
    np.testing.assert_array_equal(f.transform(_frame()).values, g.transform(_frame()).values)


def test_kind_inference():
    assert infer_column_kind(pd.Series([1, 2, 3])) == "numeric"
    assert infer_column_kind(pd.Series(["1", "2", None])) == "numeric"
    assert infer_column_kind(pd.Series(["a", "b", "1"])) == "categorical"
    assert infer_column_kind(pd.Series([True, False])) == "categorical"


def test_training_ranges_and_unseen_codes_are_flagged_per_row_and_saved_as_json():
    import json

    train = pd.DataFrame({"lwt": [100.0, 150.0, 200.0, 120.0], "race": [1, 2, 3, 1]})
    f = TabularFeaturizer(numeric=["lwt"], categorical=["race"]).fit(train)
    g = TabularFeaturizer.from_dict(json.loads(json.dumps(f.to_dict())))  # JSON state, no pickle
    new = pd.DataFrame({"lwt": [400.0, 150.0, 203.0], "race": [2.0, 4.0, 3.0]})  # floats: 2.0 is the code 2
    fm = g.transform(new)
    assert fm.out_of_range == [["lwt"], ["race"], []]  # 203 is inside the 5% margin; race 4 is past the codes
    assert fm.unknown_categories == [[], ["race=4"], []] and fm.n_unknown.tolist() == [0, 1, 0]
    assert fm.n_out_of_range.tolist() == [1, 1, 0]
