"""Settings come from the environment and fail fast on bad values."""

from __future__ import annotations

import dataclasses

import pytest

from core.settings import Settings, SettingsError, env_names


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.max_sync_rows == 10_000
    assert s.visibility_timeout > s.task_time_limit


def test_environment_overrides() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://h:1/2", "PREDICTQ_CHUNK_ROWS": "500",
                           "PREDICTQ_DRIFT_MEAN_SHIFT": "0.5"})
    assert (s.redis_url, s.chunk_rows, s.drift_mean_shift) == ("redis://h:1/2", 500, 0.5)


@pytest.mark.parametrize(
    "env",
    [
        {"PREDICTQ_CHUNK_ROWS": "many"},
        {"PREDICTQ_CHUNK_ROWS": "0"},
        {"PREDICTQ_TASK_SOFT_TIME_LIMIT": "200", "PREDICTQ_TASK_TIME_LIMIT": "100"},
        {"PREDICTQ_AUTH": "maybe"},
        {"PREDICTQ_DRIFT_MEAN_SHIFT": "far"},
        {"PREDICTQ_DRIFT_MISSING_RATE": "-0.1"},
        {"PREDICTQ_DRIFT_OUTCOME_SHARE": "inf"},
        {"PREDICTQ_DRIFT_LEVEL_SHARE": "nan"},
    ],
)
def test_bad_values_fail_fast(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_stuck_jobs_are_only_declared_after_lost_messages_come_back() -> None:
    with pytest.raises(SettingsError, match="PREDICTQ_STUCK_JOB_SECONDS"):
        Settings.from_env({"PREDICTQ_TASK_TIME_LIMIT": "600", "PREDICTQ_STUCK_JOB_SECONDS": "600"})


def test_each_setting_is_read_from_its_own_variable() -> None:
    names = env_names()
    assert len(set(names.values())) == len(names) == len(dataclasses.fields(Settings))
    for field, variable in names.items():
        default = getattr(Settings(), field)
        value = default + 1 if isinstance(default, int | float) else "x"
        try:
            assert getattr(Settings.from_env({variable: str(value)}), field) == value, variable
        except SettingsError as exc:  # a value the checks refuse: the refusal names the variable read
            assert variable in str(exc)
