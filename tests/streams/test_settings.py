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


def test_horizon_seconds_sizes_the_workers_forecasts_for_the_lead_time():
    """FORESIGHT_HORIZON_SECONDS (or --horizon-seconds) is the longest lead time the worker's
    forecasts cover: a spec with that lead time is served, a longer one is HorizonTooShort."""
    from dataclasses import replace

    from detectors.defaults import make_series_model
    from scaler.decision import Reason
    from scaler.inputs import inputs_from_update
    from scaler.policy import trusted_forecast
    from scaler.spec import ScalerSpec, TargetRef
    from streams.app import horizon_steps
    from streams.cli import UsageError, build_parser, settings_from_args

    default = Settings.from_env({})
    assert (default.horizon_seconds, horizon_steps(default)) == (600.0, 62)
    env = Settings.from_env({"FORESIGHT_HORIZON_SECONDS": "900", "FORESIGHT_WINDOW_SECONDS": "30"})
    assert horizon_steps(env) == 32
    args = build_parser().parse_args(["worker", "--horizon-seconds", "300"])
    flag = settings_from_args(args, env={"FORESIGHT_HORIZON_SECONDS": "900"})
    assert (flag.horizon_seconds, horizon_steps(flag)) == (300.0, 32)
    assert horizon_steps(flag.replace(horizon_steps=7)) == 7  # an explicit step count wins
    with pytest.raises(UsageError, match="--horizon-seconds"):  # a worker setting, not the controller's
        build_parser().parse_args(["scaler", "--horizon-seconds", "300"])

    def forecast_reason(settings: Settings, lead: float) -> Reason | None:
        step = settings.window_seconds
        model = make_series_model(step, horizon=horizon_steps(settings))
        t = 1_767_225_600.0  # epoch seconds, as in production
        for i in range(30):
            u = model.update(100.0 + i % 5, t=t + i * step)
        fc, obs, now = inputs_from_update(model, "s", t + 29 * step, step, 104.0, u)
        spec = ScalerSpec("w", "s", 10.0, lead_time_seconds=lead, target=TargetRef("apps/v1", "Deployment", "w"))
        return trusted_forecast(spec, replace(fc, warm=True), obs, now)[1]

    assert forecast_reason(default, 600.0) is None
    assert forecast_reason(default, 610.0) is None  # one window of slack for a late decision
    assert forecast_reason(default, 630.0) is Reason.HORIZON_TOO_SHORT
    assert forecast_reason(Settings(horizon_seconds=180.0), 600.0) is Reason.HORIZON_TOO_SHORT


def test_horizon_is_a_documented_worker_flag_with_a_bound():
    info = {i.name: i for i in describe()}["horizon_seconds"]
    assert (info.flag, info.env, info.default, info.type) == ("--horizon-seconds", "FORESIGHT_HORIZON_SECONDS",
                                                              600.0, float)
    assert "worker" in info.commands and "scaler" not in info.commands and "leadTimeSeconds" in info.help
    assert Settings(horizon_seconds=0).problems() == ["--horizon-seconds / FORESIGHT_HORIZON_SECONDS must be > 0, "
                                                      "got 0"]
    (too_far,) = Settings(horizon_seconds=86400).problems()
    assert "8642 forecast points" in too_far and "at most 720" in too_far
