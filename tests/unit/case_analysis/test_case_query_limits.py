"""The cohort filter language refuses what would exhaust its recursive parser: nesting past
MAX_DEPTH and text past MAX_LENGTH are ConfigErrors that name the limit (never RecursionError)."""

from __future__ import annotations

import pandas as pd
import pytest

from medassist.assistants.case_query import MAX_DEPTH, MAX_LENGTH, filter_mask, parse_filter
from medassist.exceptions import ConfigError

COLUMNS = ["age", "sex"]


@pytest.mark.parametrize("text", [
    "(" * 250 + "age > 60" + ")" * 250,
    "not " * 490 + "age > 60",
    "(" * 5000,
    "not (" * (MAX_DEPTH // 2 + 1) + "age > 60" + ")" * (MAX_DEPTH // 2 + 1),
    "(" * (MAX_DEPTH + 1) + "age > 60" + ")" * (MAX_DEPTH + 1),
])
def test_nesting_past_the_limit_is_a_config_error_naming_it(text):
    with pytest.raises(ConfigError) as e:
        parse_filter(text[:MAX_LENGTH], COLUMNS)
    assert f"nested more than {MAX_DEPTH} levels" in str(e.value) and "\n" not in str(e.value)


def test_nesting_up_to_the_limit_and_long_flat_filters_still_parse():
    frame = pd.DataFrame({"age": [50, 70], "sex": ["F", "M"]})
    assert filter_mask(frame, "(" * MAX_DEPTH + "age > 60" + ")" * MAX_DEPTH).tolist() == [False, True]
    assert filter_mask(frame, "not " * MAX_DEPTH + "age > 60").tolist() == [False, True]  # 32 nots: even
    flat = " or ".join(["age > 60"] * 150)  # long but flat: the parser loops, it does not recurse
    assert len(flat) < MAX_LENGTH and filter_mask(frame, flat).tolist() == [False, True]
    # depth is counted per branch, not per filter: many shallow groups are fine
    assert filter_mask(frame, " and ".join(["(not (age < 60))"] * 40)).tolist() == [False, True]


def test_text_past_the_length_limit_is_refused_naming_it():
    with pytest.raises(ConfigError, match=f"at most {MAX_LENGTH} are accepted"):
        parse_filter("age > 1 and " * 200 + "age > 1", COLUMNS)
