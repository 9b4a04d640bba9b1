"""The Lua scripts spell states, outcomes and start decisions exactly as core.states does, both ways: no word
the enums do not know, and every word of the enums used (by a script, or by the Python that hands it over)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from core.states import (
    CLOSING_STATES,
    FINAL_WEBHOOK_STATES,
    OPEN_STATES,
    JobOutcome,
    JobState,
    StartAction,
    WebhookState,
)


def _scripts() -> dict[str, str]:
    """Every script's code, comments stripped (they may name any word)."""
    folder = resources.files("jobs") / "lua"
    return {
        entry.name: re.sub(r"--[^\n]*", "", entry.read_text())
        for entry in folder.iterdir() if entry.name.endswith(".lua")
    }


def _words(patterns: list[str], code: str) -> set[str]:
    return {word for pattern in patterns for word in re.findall(pattern, code)}


# A literal compared with a variable, or written to a field of the job hash by HSET/HSETNX.
def _compared(name: str) -> str:
    return rf"(?<![\w.]){name}\s*[=~]=\s*'(\w+)'"


def _stored(field: str) -> str:
    return rf"'HSET(?:NX)?'[^)]*?'{field}',\s*'(\w+)'"


JOB_STATE = [_compared("state"), _stored("state")]  # the `state` variable, never `webhook_state`
WEBHOOK_STATE = [_compared("webhook_state"), _stored("webhook_state")]
OUTCOME = [r"\boutcome\s*=\s*'(\w+)'", _stored("outcome")]


@pytest.fixture(scope="module")
def lua() -> str:
    return "\n".join(_scripts().values())


def test_job_states_in_lua_are_the_enum(lua: str) -> None:
    used = _words(JOB_STATE, lua)
    assert used <= set(JobState), used - set(JobState)
    # close_job.lua stores the state it is given (`new_state`): the closing states come from Python.
    assert re.search(r"'state',\s*new_state", _scripts()["close_job.lua"])
    assert used | CLOSING_STATES == set(JobState)


def test_is_open_names_exactly_the_open_states() -> None:
    body = re.search(r"function is_open\(state\)(.*?)\nend", _scripts()["_common.lua"], re.S)
    assert body is not None
    assert set(re.findall(r"'(\w+)'", body.group(1))) == OPEN_STATES


def test_outcomes_in_lua_are_the_enum(lua: str) -> None:
    assert _words(OUTCOME, lua) == set(JobOutcome)


def test_start_decisions_are_the_enum() -> None:
    returned = set(re.findall(r"return\s*\{\s*'(\w+)'", _scripts()["start_chunk.lua"]))
    assert returned == set(StartAction)


def test_webhook_states_in_lua_are_the_enum(lua: str) -> None:
    used = _words(WEBHOOK_STATE, lua)
    assert used <= set(WebhookState), used - set(WebhookState)
    begin = _scripts()["begin_webhook_attempt.lua"]
    # An attempt is never begun for a delivery that ended: the script knows every final state.
    assert set(re.findall(r"webhook_state == '(\w+)'", begin)) == FINAL_WEBHOOK_STATES
    # Python records the outcomes of an attempt; the scripts set the rest (pending, sending).
    recorded = {WebhookState.RETRYING, *FINAL_WEBHOOK_STATES}
    assert set(re.findall(_stored("webhook_state"), lua)) | recorded == set(WebhookState)
