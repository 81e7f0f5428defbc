"""The replication benchmark's command line: scenarios and rounds, bad input named."""

from __future__ import annotations

import pytest

from bench.replication.run import parse_args


def test_defaults_run_every_scenario_three_rounds() -> None:
    assert parse_args([]) == ({"small", "large", "nochange"}, 3)


def test_scenarios_and_rounds_can_be_chosen_in_any_order() -> None:
    assert parse_args(["large", "--rounds", "5"]) == ({"large"}, 5)
    assert parse_args(["--rounds", "1", "small,nochange"]) == ({"small", "nochange"}, 1)


@pytest.mark.parametrize(("argv", "message"), [
    (["--rounds"], "--rounds: give a whole number"),
    (["--rounds", "two"], "--rounds: give a whole number"),
    (["--rounds", "0"], "--rounds: 0: at least one round"),
    (["large,huge"], "scenarios: huge unknown"),
])
def test_bad_arguments_are_refused_naming_what_is_wrong(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        parse_args(argv)
