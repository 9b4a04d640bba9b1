"""Write a home directory for image builds that gives pip inside the build this host's index settings.

The folder holds `.config/pip/pip.conf` (the host's index URLs, trusted hosts, proxy and timeout, as
`pip config list` reports them) and the host's CA bundle as `ca.crt`, named by the `cert` setting. Mounted
read-only over `/root` during the build (`podman build --volume DIR:/root:ro`), it reaches every `RUN` step
without touching the Dockerfile or leaving anything in the image. Local paths (`file://` indexes,
`find-links` folders) are dropped: they do not exist inside the build.

Usage: python deploy/build_home.py DIR
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Settings that carry over into a build; everything else (constraints, find-links, ...) names host paths.
KEPT = ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout", "retries")
CA_CANDIDATES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MOUNT_POINT = "/root"


def pip_settings() -> dict[str, str]:
    """The host pip's effective settings, environment over files, as `name: value`."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             check=True).stdout
    settings: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        target = from_env if section == ":env:" else settings
        target[name] = value.strip().strip("'\"")
    return settings | from_env


def remote_only(urls: str) -> str:
    """Keep the http(s) URLs of a space-separated list."""
    return " ".join(url for url in urls.split() if url.startswith(("http://", "https://")))


def ca_bundle(settings: dict[str, str]) -> Path | None:
    """The CA bundle the host's pip trusts: its `cert` setting, else the usual variables, else the system's."""
    for candidate in (settings.get("cert"), *(os.environ.get(name) for name in CA_CANDIDATES)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return SYSTEM_BUNDLE if SYSTEM_BUNDLE.is_file() else None


def write_home(folder: Path) -> Path:
    """Fill `folder` with the pip configuration and CA bundle; return the pip.conf path."""
    settings = pip_settings()
    lines = ["[global]"]
    for name in KEPT:
        value = settings.get(name, "")
        if name.endswith("index-url"):
            value = remote_only(value)
        if value:
            lines.append(f"{name} = {value}")
    bundle = ca_bundle(settings)
    if bundle is not None:
        shutil.copyfile(bundle, folder / "ca.crt")
        lines.append(f"cert = {MOUNT_POINT}/ca.crt")
    conf = folder / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    conf = write_home(folder)
    print(f"pip settings for the build ({conf}):")
    print(conf.read_text(encoding="utf-8").rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
