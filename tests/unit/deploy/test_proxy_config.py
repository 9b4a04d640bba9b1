"""The proxy's configuration (deploy/nginx/predictq.conf.template) against the app it fronts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.app import create_app
from core.settings import Settings


@pytest.fixture(scope="module")
def route_map(root: Path) -> list[tuple[re.Pattern[str], str]]:
    """The template's `map $request_uri $predictq_route` entries: (pattern, logged route), in order."""
    template = (root / "deploy" / "nginx" / "predictq.conf.template").read_text(encoding="utf-8")
    block = template.split("map $request_uri $predictq_route {", 1)[1].split("}", 1)[0]
    entries = [line.strip().rstrip(";").split(" ", 1) for line in block.strip().splitlines()]
    return [(re.compile(pattern[1:]), route) for pattern, route in entries if pattern.startswith("~")]


def logged_route(route_map: list[tuple[re.Pattern[str], str]], request_uri: str) -> str:
    """What nginx's access log prints for `request_uri`: the first matching entry, else "-"."""
    return next((route for pattern, route in route_map if pattern.search(request_uri)), "-")


def sample_path(rule: str) -> str:
    return rule.replace("<job_id>", "j0b-1d").replace("<path:filename>", "app/main.js")


def test_every_app_route_is_logged_by_the_proxy_as_the_app_names_it(route_map: list) -> None:
    app = create_app(Settings(auth_mode="disabled"), {"RATELIMIT_ENABLED": False})
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert len(rules) > 10
    for rule in rules:
        assert logged_route(route_map, sample_path(rule)) == rule
        assert logged_route(route_map, sample_path(rule) + "?api_key=s3cr3t&x=1") == rule


@pytest.mark.parametrize("uri", ["/s3cr3t", "/v1/jobs/a/b/c", "/predict/s3cr3t", "//predict", "", "*", "/v1/jobsX"])
def test_anything_else_is_logged_as_a_dash(route_map: list, uri: str) -> None:
    assert logged_route(route_map, uri) == "-"
