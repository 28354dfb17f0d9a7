import pytest
from latency_stats import percentile, summary_ms


def test_percentile_is_the_nearest_rank_of_an_observed_value():
    values = list(range(100, 0, -1))  # 1..100, unsorted
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7.0


def test_p99_of_2000_shows_a_tail_of_21_slow_answers_but_not_one_of_20():
    fast, slow = 0.005, 0.5
    assert percentile([fast] * 1979 + [slow] * 21, 99) == slow
    assert percentile([fast] * 1980 + [slow] * 20, 99) == fast


def test_summary_is_in_milliseconds_and_names_the_maximum():
    assert summary_ms([0.001, 0.002, 0.003, 0.004], qs=(50, 100)) == {"p50": 2.0, "max": 4.0}


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_refuses_a_q_outside_0_to_100(q):
    with pytest.raises(ValueError, match="q must be within"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
