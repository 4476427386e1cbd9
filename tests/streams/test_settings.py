"""streams.settings: one typed settings object and the table the CLI's flags come from."""

from __future__ import annotations

import pytest

from streams.settings import COMMANDS, Settings, SettingsError, describe


def test_help_comes_from_the_field_comment():
    info = {i.name: i for i in describe()}
    assert info["window_seconds"].help == "window length in event-time seconds"
    assert info["window_seconds"].env == "FORESIGHT_WINDOW_SECONDS"
    assert info["window_seconds"].flag == "--window-seconds"
    assert info["web_enabled"].type is bool and info["partitions"].type is int


def test_a_field_missing_from_the_table_is_a_flag_of_the_pipeline_commands():
    unlisted = [i for i in describe() if i.name not in COMMANDS]
    for i in unlisted:
        assert {"demo", "worker", "scaler"} <= set(i.commands)
    assert set(COMMANDS) <= {i.name for i in describe()}, "the table names only real fields"


def test_bad_variable_says_which_and_how_to_fix():
    with pytest.raises(SettingsError, match=r"^FORESIGHT_PARTITIONS='four' is not a whole number; "
                                            r"set e.g. FORESIGHT_PARTITIONS=4"):
        Settings.from_env({"FORESIGHT_PARTITIONS": "four"})
    with pytest.raises(SettingsError, match="FORESIGHT_WEB_ENABLED='maybe' is not true or false"):
        Settings.from_env({"FORESIGHT_WEB_ENABLED": "maybe"})


def test_problems_lists_every_out_of_range_value():
    assert Settings().problems() == []
    p = Settings(partitions=0, anomaly_threshold=1.5, log_level="loud", web_port=70000).problems()
    assert len(p) == 4
    assert any(x.startswith("--partitions / FORESIGHT_PARTITIONS must be >= 1") for x in p)


def test_to_env_round_trips_every_field():
    s = Settings(broker="k:9092", window_seconds=30.0, web_enabled=False, mode="ForecastOnly")
    env = s.to_env()
    assert set(env) == {i.env for i in describe()}
    assert Settings.from_env(env) == s
