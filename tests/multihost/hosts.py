"""Hosts for the multi-host tests: Linux network namespaces joined by veth pairs to one bridge.

Each host is a network namespace with one interface on 10.213.0.0/24 (`ip netns`, `ip link` from iproute2);
the bridge itself holds 10.213.0.1, the address the test process (the client and the observer) talks from.
Faults are applied inside a host's namespace: an nftables table that drops its traffic to and from another host
(a partition), a tbf rate limit on its interface, an nftables rule dropping a share of its packets at random.
Every process a host runs is started with `ip netns exec` in a session of its own; `kill_all` kills whatever
runs in the namespace. All namespaces share the file system (the blob store is a shared directory here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "pqmh"
SUBNET = "10.213.0"
BRIDGE = f"{PREFIX}-br"
OBSERVER = f"{SUBNET}.1"  # the bridge's address: the test process
FAULT_TABLE = f"{PREFIX}_fault"


def run(argv: Sequence[str], *, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; a failure names the command and what it printed."""
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()}")
    return done


@dataclass
class Host:
    """One namespace: its name (a, b, ...), its address, and the processes started in it."""

    name: str
    address: str
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def veth(self) -> str:
        """The bridge side of the host's veth pair (the other side is `eth0` in the namespace)."""
        return f"{PREFIX}-{self.name}"

    def start(self, label: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        """Start `argv` in this namespace, its output appended to <log_dir>/<host>-<label>.log."""
        with self.log_path(label).open("ab") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes[label] = process
        return process

    def log_path(self, label: str) -> Path:
        return self.log_dir / f"{self.name}-{label}.log"

    def log(self, label: str) -> str:
        path = self.log_path(label)
        return path.read_text(errors="replace") if path.exists() else ""

    def pids(self) -> set[int]:
        """Every process running in this namespace now."""
        listed = run(["ip", "netns", "pids", self.netns], check=False).stdout.split()
        return {int(pid) for pid in listed}

    def freeze(self) -> None:
        """SIGSTOP every process in the namespace (the host hangs; `kill_all` then loses it)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT every process in the namespace."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def kill_all(self) -> None:
        """SIGKILL every process in the namespace (the host is lost) and reap the ones started here."""
        deadline = time.monotonic() + 15
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()

    def stop(self, label: str) -> None:
        """Stop one process started here: SIGTERM to its session, SIGKILL after 15 s."""
        process = self.processes.pop(label, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def nft(self, script: str) -> None:
        """Load an nftables script in this namespace."""
        run(["ip", "netns", "exec", self.netns, "nft", "-f", "-"], stdin=script)

    def cut_from(self, other: Host) -> None:
        """Partition: drop every packet between this host and `other` (in this host's namespace, both ways)."""
        self.nft(f"""
            table inet {FAULT_TABLE} {{
                chain output {{ type filter hook output priority 0; ip daddr {other.address} drop; }}
                chain input {{ type filter hook input priority 0; ip saddr {other.address} drop; }}
            }}
        """)

    def drop_randomly(self, percent: int) -> None:
        """Lose `percent` % of this host's packets, in and out, at random (nftables numgen)."""
        self.nft(f"""
            table inet {FAULT_TABLE} {{
                chain output {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}
                chain input {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}
            }}
        """)

    def tc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`tc` on the host's interface, in its namespace."""
        return run(["ip", "netns", "exec", self.netns, "tc", *args], check=check)

    def heal(self) -> None:
        """Remove every fault of this host: the nftables table and any queueing discipline."""
        run(["ip", "netns", "exec", self.netns, "nft", "delete", "table", "inet", FAULT_TABLE], check=False)
        self.tc("qdisc", "del", "dev", "eth0", "root", check=False)


def leftover_namespaces() -> list[str]:
    """Namespaces of this harness still present (a previous run that crashed)."""
    listed = run(["ip", "netns", "list"], check=False).stdout.splitlines()
    return [line.split()[0] for line in listed if line.startswith(f"{PREFIX}-")]


def clean_leftovers() -> None:
    """Kill what runs in leftover namespaces, delete them, their veths and the bridge."""
    for netns in leftover_namespaces():
        for pid in run(["ip", "netns", "pids", netns], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "delete", netns], check=False)
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    for line in links.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(f"{PREFIX}-"):
            run(["ip", "link", "delete", name], check=False)


@dataclass
class Network:
    """The bridge and its hosts."""

    hosts: dict[str, Host]

    @classmethod
    def create(cls, names_and_octets: dict[str, int], log_dir: Path) -> Network:
        """Make the bridge (with the observer's address) and one namespace per host, each reachable from here."""
        clean_leftovers()
        network = cls({})
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{OBSERVER}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        for name, octet in names_and_octets.items():
            host = Host(name, f"{SUBNET}.{octet}", log_dir)
            network.hosts[name] = host
            run(["ip", "netns", "add", host.netns])
            run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", f"{host.veth}-in"])
            run(["ip", "link", "set", f"{host.veth}-in", "netns", host.netns])
            run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
            run(["ip", "-n", host.netns, "link", "set", f"{host.veth}-in", "name", "eth0"])
            run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0"])
            run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
            run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
        return network

    def heal_all(self) -> None:
        for host in self.hosts.values():
            host.heal()

    def destroy(self) -> None:
        """Kill every process of every host, then delete the namespaces, the veths and the bridge."""
        for host in self.hosts.values():
            host.kill_all()
        clean_leftovers()
