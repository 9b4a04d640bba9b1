"""docker-compose.yml: valid against the compose specification, and shaped as the deployment needs."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.settings import env_names


def validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(document)


def test_compose_file_is_valid_before_and_after_interpolation(
    compose_raw: dict[str, Any], compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    validate(compose_raw, compose_schema)
    validate(compose, compose_schema)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda doc: doc["services"]["api"].update(ports="1313:1313"),
        lambda doc: doc["services"]["redis"].update(healthcheck={"test": ["CMD", "x"], "interval": 5}),
        lambda doc: doc["services"]["worker"].update(depends_on={"redis": {"condition": "when_ready"}}),
        lambda doc: doc["services"]["api"].update(unknown_key=1),
    ],
)
def test_schema_check_catches_broken_documents(
    compose: dict[str, Any], compose_schema: dict[str, Any], breakage: Any
) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, compose_schema)


def test_redis_keeps_data_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    (volume,) = redis["volumes"]
    name, target = volume.split(":")
    assert (name, target) == ("redis-data", "/data")
    assert name in compose["volumes"]
    assert ":" in redis["image"] and not redis["image"].endswith(":latest")


def test_api_and_workers_share_the_blob_store_volume_at_the_path_they_are_told(compose: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        service = compose["services"][name]
        assert "store:/var/lib/predictq-store" in service["volumes"]
        assert service["environment"]["PREDICTQ_STORE_URI"] == "/var/lib/predictq-store"


def test_api_waits_for_healthy_redis_and_is_reached_through_the_proxy_only(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["command"] == ["serve"]
    assert "ports" not in api, "slow clients must meet nginx, not gunicorn"
    assert api["environment"]["PREDICTQ_DEV_KEY_FILE"].startswith("/var/lib/predictq/")
    assert api["volumes"] == ["store:/var/lib/predictq-store", "api-state:/var/lib/predictq"]
    assert {"api-state", "store"} <= set(compose["volumes"])
    assert api["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert api["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert api["healthcheck"]["test"] == ["CMD", "python", "-m", "predictq.healthcheck", "api"]


def test_worker_scales_and_takes_concurrency_from_environment(
    compose_raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    worker = compose["services"]["worker"]
    assert worker["command"] == ["worker"]
    # `--scale worker=N` fails with a fixed container name or a published host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert compose_raw["services"]["worker"]["environment"]["PREDICTQ_WORKER_CONCURRENCY"].startswith(
        "${PREDICTQ_WORKER_CONCURRENCY"
    )
    assert worker["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "predictq.healthcheck", "worker"]
    assert worker["image"] == compose["services"]["api"]["image"], "one image serves both roles"


def test_flower_is_in_the_monitoring_profile_on_5555(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"], "Flower has no auth: loopback only"
    assert "--broker=redis://redis:6379/0" in flower["command"]


def test_only_the_proxy_and_flower_publish_ports(compose: dict[str, Any]) -> None:
    """Redis, the API and the workers are reachable only on the compose network."""
    assert {name for name, svc in compose["services"].items() if "ports" in svc} == {"proxy", "flower"}


def test_proxy_publishes_1313_in_front_of_the_api(compose_raw: dict[str, Any], compose: dict[str, Any],
                                                  root: Path) -> None:
    proxy = compose["services"]["proxy"]
    assert proxy["ports"] == ["127.0.0.1:1313:1313"], "loopback only by default"
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+-alpine(-slim)?", proxy["image"]), "a pinned official nginx image"
    template, resolver = (volume.split(":") for volume in proxy["volumes"])
    source, target, mode = template
    assert (root / source).is_file() and source == "./deploy/nginx/predictq.conf.template"
    # Rendered by the image into conf.d/default.conf, replacing the image's own default server.
    assert (target, mode) == ("/etc/nginx/templates/default.conf.template", "ro")
    # Sourced by the image's entrypoint after the step that sets NGINX_LOCAL_RESOLVERS (15-local-resolvers).
    source, target, mode = resolver
    assert (root / source).is_file() and os.access(root / source, os.X_OK)
    assert (target, mode) == ("/docker-entrypoint.d/16-first-resolver.envsh", "ro")
    assert proxy["environment"]["PROXY_UPSTREAM"] == "api:1313"
    assert proxy["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert "/healthz" in " ".join(proxy["healthcheck"]["test"])
    # nginx refuses bodies the API would refuse: the same variable, with the same default.
    raw = compose_raw["services"]["proxy"]["environment"]["PREDICTQ_MAX_UPLOAD_BYTES"]
    assert raw == compose_raw["x-predictq"]["environment"]["PREDICTQ_MAX_UPLOAD_BYTES"]


@pytest.mark.parametrize(
    ("resolvers", "kept"),
    [("10.89.0.1 10.255.255.53", "10.89.0.1"), ("127.0.0.11", "127.0.0.11"), ("[fd00::1] 10.0.0.2", "[fd00::1]")],
)
def test_proxy_resolves_with_the_first_nameserver_only(root: Path, resolvers: str, kept: str) -> None:
    """Podman lists the host's nameservers after the network's own; nginx must ask only the latter."""
    script = root / "deploy" / "nginx-first-resolver.envsh"
    done = subprocess.run(["sh", "-c", f'. "{script}"; printf %s "$NGINX_LOCAL_RESOLVERS"'], check=True,
                          capture_output=True, text=True, env={"NGINX_LOCAL_RESOLVERS": resolvers})
    assert done.stdout == kept


def test_proxy_template_reads_only_variables_the_proxy_service_sets(compose: dict[str, Any], root: Path) -> None:
    """The image's envsubst step leaves unknown ${NAME}s as they are, which nginx would then refuse."""
    template = (root / "deploy" / "nginx" / "predictq.conf.template").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", template))
    environment = dict(compose["services"]["proxy"]["environment"])
    # The image fills in NGINX_LOCAL_RESOLVERS (from /etc/resolv.conf) when NGINX_ENTRYPOINT_LOCAL_RESOLVERS is set.
    assert environment.pop("NGINX_ENTRYPOINT_LOCAL_RESOLVERS")
    assert used == set(environment) | {"NGINX_LOCAL_RESOLVERS"}
    # envsubst also replaces $NAME without braces: nginx's own variables must stay lower case.
    assert not re.findall(r"\$[A-Z]", template)


def test_every_service_restarts(compose: dict[str, Any]) -> None:
    assert {name: svc.get("restart") for name, svc in compose["services"].items()} == dict.fromkeys(
        compose["services"], "unless-stopped"
    )


def test_env_example_documents_every_variable_compose_reads(
    compose_variables: set[str], env_example: dict[str, str]
) -> None:
    assert compose_variables - set(env_example) == set()


def test_every_predictq_variable_in_env_example_is_read_by_settings(env_example: dict[str, str]) -> None:
    """A misspelt variable in .env.example would be silently ignored."""
    unknown = {name for name in env_example if name.startswith("PREDICTQ_")} - set(env_names().values())
    assert unknown == {"PREDICTQ_IMAGE_TAG"}  # the only one compose reads itself (the image tag)


def test_every_service_setting_reaches_the_containers(compose_raw: dict[str, Any]) -> None:
    """A setting that compose does not pass on would be silently ignored under Docker."""
    read = set(env_names().values())
    client_or_local = {"PREDICTQ_DEV_KEY_FILE", "PREDICTQ_PORT"}  # set per service / fixed inside the image
    passed = set(compose_raw["x-predictq"]["environment"]).union(
        *(compose_raw["services"][name]["environment"] for name in ("api", "worker"))
    )
    assert read - client_or_local - passed == set()
