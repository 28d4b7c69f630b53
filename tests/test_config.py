from decimal import Decimal
from pathlib import Path

import pytest

from onybench.config import Scenario, load_scenario, parse_duration, scenario_from_dict
from onybench.errors import ScenarioError

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def test_quickstart_scenario_loads_with_its_mock_settings() -> None:
    scenario = load_scenario(SCENARIOS / "quickstart.toml")
    assert scenario.name == "quickstart"
    assert scenario.uses_mock
    assert (scenario.concurrency, scenario.requests) == (20, 300)
    assert scenario.mock.ttft_ms == 50.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), (2, 2.0)]
)
def test_durations_parse_with_units(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5 minutes", "-3s", "0s", ""])
def test_bad_duration_names_the_key_and_the_fix(text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_duration(text, "load.duration")
    assert info.value.key_path == "load.duration"


def test_unknown_key_suggests_the_closest_known_one() -> None:
    with pytest.raises(ScenarioError, match=r"did you mean 'concurrency'") as info:
        scenario_from_dict({"load": {"concurency": 5}})
    assert info.value.key_path == "load.concurency"


def test_misspelt_section_suggests_the_right_one() -> None:
    with pytest.raises(ScenarioError, match=r"did you mean 'load'"):
        scenario_from_dict({"laod": {"concurrency": 5}})


def test_wrong_type_says_what_was_found_and_expected() -> None:
    with pytest.raises(
        ScenarioError, match=r"load.concurrency: expected a whole number, found '5'"
    ):
        scenario_from_dict({"load": {"concurrency": "5"}})


def test_boolean_is_not_accepted_as_a_number() -> None:
    with pytest.raises(ScenarioError, match=r"load.requests"):
        scenario_from_dict({"load": {"requests": True}})


def test_zero_concurrency_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"load.concurrency: must be at least 1"):
        scenario_from_dict({"load": {"concurrency": 0}})


def test_empty_model_list_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"request.models"):
        scenario_from_dict({"request": {"models": []}})


def test_bad_mock_setting_names_its_key_path() -> None:
    with pytest.raises(ScenarioError, match=r"mock.ttft_ms"):
        scenario_from_dict({"mock": {"ttft_ms": -1}})


def test_mock_price_written_as_a_toml_float_is_exact() -> None:
    scenario = scenario_from_dict({"mock": {"cost_per_output_token": 0.000003}})
    assert scenario.mock.cost_per_output_token == Decimal("0.000003")


def test_invalid_toml_reports_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[load]\nconcurrency = = 3\n")
    with pytest.raises(ScenarioError, match=r"bad.toml: invalid TOML: .*line 2"):
        load_scenario(path)


def test_missing_scenario_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "nope.toml")


def test_flags_override_the_file_and_are_validated() -> None:
    scenario = Scenario(concurrency=4).with_overrides(concurrency=8, requests=None)
    assert scenario.concurrency == 8
    with pytest.raises(ScenarioError, match=r"load.concurrency"):
        scenario.with_overrides(concurrency=0)


def test_without_a_stop_condition_a_default_request_budget_applies() -> None:
    assert Scenario().request_limit == 50
    assert Scenario(duration_s=10.0).request_limit is None


def test_run_metadata_withholds_header_values() -> None:
    scenario = Scenario(headers=(("X-Secret", "hunter2"),))
    assert "hunter2" not in str(scenario.to_json())
