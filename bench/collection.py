"""The `collection` benchmark: SSH host collection of one host alone, then of many, on sshd.

The hosts are containers ``bench-coll-NN`` from the lab's cached base image, each set up as
the lab sets up term-1 for the auditor (``lab.plan.collection_clone``: term-1's rule
set and terminal configuration, a host key and machine-id of its own, the auditor's key and
the exact-command sudoers), on one internal dual-stack podman network ``bench-coll``
(10.98.200.0/24, fd98:0:0:200::/64) whose bridge holds this machine's .1 / ::1 and is covered
by the lab's forward guard (installed first when no lab runs, removed again afterwards).

Timed: ``probes.host_collector.collect_hosts`` with ``DEFAULT_PLAN``, the inventory's
``ssh.parallel`` bound and a fresh evidence store, exactly what the audit's collect phase runs:
the first host alone, then every host, ``runs`` times each (interleaved, so that a change in
the shared machine's load touches both), the medians reported. One untimed collection of
every host comes first: it fails the benchmark if any host cannot be collected, and it warms
what all containers share (the page cache of the image's binaries). Setting the hosts up and
removing them are timed apart. Everything this creates is removed, whatever happens.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.lablock import holding_lab_lock

Progress = Callable[[str], None]

NETWORK = "bench-coll"
IPV4 = "10.98.200.0/24"
IPV6 = "fd98:0:0:200::/64"
HOST_SIDE = ("10.98.200.1", "fd98:0:0:200::1")
FIRST_OCTET = 11
LAST_OCTET = 254
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Each host is set up as the lab sets up this host for the auditor.
LIKE = "term-1"
#: term-1's rule set admits SSH on the interface of this name only.
INTERFACE = "term-lan"
PREFIX = "bench-coll-"
LABEL = "auditor-bench=collection"
READY_TIMEOUT = 180.0
TARGET_RATIO = 3.0
#: Evidence keys that are not one command each: the key the handshake presented, and the
#: second artifact (stderr) of a command that wrote to both streams.
_NOT_A_COMMAND = "host_keys:transport"
_STDERR_SUFFIX = ":stderr"


class BenchError(Exception):
    """The benchmark could not measure what it should (a host not collected, set-up failed)."""


@dataclass(frozen=True)
class BenchHost:
    name: str  #: the inventory name and the container's name
    octet: int

    @property
    def address4(self) -> str:
        return f"10.98.200.{self.octet}"

    @property
    def address6(self) -> str:
        # Mirrors the IPv4 address digit for digit, as in the lab: .11 is ::11.
        return f"fd98:0:0:200::{self.octet}"

    @property
    def attachment(self) -> str:
        """The ``podman create --network`` value: fixed addresses, term-1's interface name."""
        return f"{NETWORK}:ip={self.address4},ip6={self.address6},interface_name={INTERFACE}"


def bench_hosts(size: int) -> list[BenchHost]:
    if not 1 <= size <= LAST_OCTET - FIRST_OCTET + 1:
        raise BenchError(f"between 1 and {LAST_OCTET - FIRST_OCTET + 1} hosts fit on {IPV4}")
    return [BenchHost(f"{PREFIX}{i + 1:02d}", FIRST_OCTET + i) for i in range(size)]


def inventory_document(hosts: list[BenchHost], parallel: int | None) -> dict[str, Any]:
    """The inventory of the benchmark's hosts: terminals on one protected LAN, scope that LAN.

    ``parallel`` None keeps the inventory's default bound, the one an audit uses when the
    organisation sets none.
    """
    from lab.baseline import KEY_FILE, KNOWN_HOSTS_FILE

    ssh: dict[str, Any] = {"user": "auditor", "key": KEY_FILE, "known_hosts": KNOWN_HOSTS_FILE}
    if parallel is not None:
        ssh["parallel"] = parallel
    return {
        "version": 1,
        "organisation": "collection benchmark",
        "scope": {"authorized": [IPV4, IPV6]},
        "ssh": ssh,
        "networks": {
            NETWORK: {
                "zone": "protected",
                "medium": "lan",
                "ipv4": IPV4,
                "ipv6": IPV6,
                "auditor": {"ipv4": HOST_SIDE[0], "ipv6": HOST_SIDE[1]},
                "description": "the collection benchmark's hosts",
            }
        },
        "hosts": {
            h.name: {
                "roles": ["terminal"],
                "ssh": h.address4,
                "addresses": {NETWORK: [h.address4, h.address6]},
                "description": f"set up as the lab's {LIKE}",
            }
            for h in hosts
        },
    }


def commands_run(evidence: Mapping[str, str]) -> int:
    """How many commands a host's collection ran, from its facts' evidence keys: one key per
    command (tool versions included), plus stderr and the handshake's key, which are not."""
    return sum(1 for k in evidence if k != _NOT_A_COMMAND and not k.endswith(_STDERR_SUFFIX))


def busy_fraction(before: list[int], after: list[int]) -> float:
    """The share of the machine's CPU time spent busy between two readings of the ``cpu``
    line of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    if total <= 0:
        return 0.0
    idle = deltas[3] + deltas[4]
    return round((total - idle) / total, 3)


def _cpu_ticks() -> list[int]:
    with open("/proc/stat", encoding="ascii") as stat:
        return [int(x) for x in stat.readline().split()[1:]]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cgroup_cpu_file(proc_cgroup: str, root: Path = CGROUP_ROOT) -> Path:
    """The file holding the CPU time of the cgroup that a ``/proc/PID/cgroup`` text names:
    cgroup v1's ``cpuacct.usage`` (nanoseconds) where that controller is mounted (the hybrid
    hierarchy of these machines), otherwise v2's ``cpu.stat``."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return root / "cpuacct" / path.lstrip("/") / "cpuacct.usage"
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            return root / path.lstrip("/") / "cpu.stat"
    raise BenchError(f"no CPU accounting cgroup in: {proc_cgroup!r}")


def cgroup_cpu_seconds(cpu_file: Path) -> float:
    """The CPU time a cgroup has used, everything its processes ever ran included: the
    containers' sshd sessions, sudo and commands are short-lived processes."""
    text = cpu_file.read_text(encoding="ascii")
    if cpu_file.name == "cpuacct.usage":
        return int(text) / 1e9
    fields = dict(line.split() for line in text.splitlines() if line.strip())
    return int(fields["usage_usec"]) / 1e6


def _hosts_cpu_seconds(cpu_files: list[Path]) -> float:
    return sum(cgroup_cpu_seconds(f) for f in cpu_files)


def _container_cpu_files(hosts: list[BenchHost]) -> list[Path]:
    """Each container's CPU accounting file, in the order of ``hosts``."""
    from lab.podman import podman

    def cpu_file(host: BenchHost) -> Path:
        pid = podman("inspect", "--format", "{{.State.Pid}}", host.name).stdout.strip()
        return cgroup_cpu_file(Path(f"/proc/{pid}/cgroup").read_text(encoding="ascii"))

    return [cpu_file(h) for h in hosts]


def ratio_floor(cpu_seconds_many: float, cores: int, single_seconds: float) -> float:
    """The least ``ratio_to_single`` this machine allows: the many-host run cannot end before
    its CPU work (the collector's and every host's) has run on the machine's cores. Where the
    hosts run on the auditor's own cores, this floor, not the collector, decides the ratio."""
    return round(cpu_seconds_many / cores / single_seconds, 2)


# -- setting the hosts up and removing them ---------------------------------------------------


@dataclass
class SetUp:
    inventory_path: Path
    seconds: float = 0.0
    teardown_seconds: float = 0.0
    lab_running: bool = False


def _our_containers() -> list[str]:
    from lab.podman import podman

    names = podman("ps", "--all", "--format", "{{.Names}}").stdout.split()
    return [n for n in names if n.startswith(PREFIX)]


def _remove_ours(progress: Progress) -> None:
    """Remove this benchmark's containers and network (by name), leftovers of a killed run
    included; nothing else."""
    from lab.podman import podman

    containers = _our_containers()
    if containers:
        podman("rm", "--force", "--time", "2", *containers, timeout=600)
        progress(f"  removed {len(containers)} containers")
    if podman("network", "exists", NETWORK, check=False).returncode == 0:
        podman("network", "rm", "--force", NETWORK)
        progress(f"  removed network {NETWORK}")


def _create_hosts(hosts: list[BenchHost], image: str, workdir: Path) -> list[str]:
    """Create every container with its files in place; return their known_hosts lines."""
    from lab.baseline import KEY_FILE, KNOWN_HOSTS_FILE
    from lab.keys import new_ssh_key
    from lab.plan import collection_clone, known_hosts_line
    from lab.runtime import create_container, in_parallel, stage_files

    auditor = new_ssh_key("auditor@collection-bench")
    key = workdir / KEY_FILE
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(auditor.private_openssh)
    key.chmod(0o600)

    def create(host: BenchHost) -> str:
        container = collection_clone(host.name, LIKE, auditor.public_line)
        staged = workdir / "hosts" / host.name / "rootfs"
        stage_files(container, staged)
        create_container(container, image, [host.attachment], staged, label=LABEL)
        assert container.host_key is not None
        return known_hosts_line([host.address4, host.address6], container.host_key)

    lines = in_parallel(create, hosts)
    (workdir / KNOWN_HOSTS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _wait_until_collectable(hosts: list[BenchHost]) -> None:
    """Every sshd answers and every lab-init has finished (rule set loaded, services up)."""
    from lab.podman import podman
    from lab.runtime import in_parallel, poll_missing, ssh_banner

    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:

        def silent() -> list[str]:
            answers = pool.map(lambda h: ssh_banner(h.address4, 1.0), hosts)
            return [h.name for h, banner in zip(hosts, answers, strict=True) if not banner]

        missing = poll_missing(silent, READY_TIMEOUT, interval=1.0)
    if missing:
        raise BenchError(f"no sshd answered within {READY_TIMEOUT:.0f} s on: {', '.join(missing)}")

    def not_ready(host: BenchHost) -> str | None:
        probe = podman("exec", host.name, "test", "-f", "/run/lab/ready", check=False)
        return None if probe.returncode == 0 else host.name

    late = poll_missing(lambda: [n for n in in_parallel(not_ready, hosts) if n], 30)
    if late:
        raise BenchError(f"lab-init did not finish on: {', '.join(late)}")


@contextmanager
def hosts_up(
    hosts: list[BenchHost], image: str, workdir: Path, parallel: int | None, progress: Progress
) -> Iterator[SetUp]:
    """The hosts, reachable and collectable from this machine, for the block; removed after
    it (containers, then network, then the guard's entries: the guard outlives them)."""
    from lab import guard, runtime
    from lab.podman import podman

    began = time.perf_counter()
    inventory = workdir / "inventory.yaml"
    document = inventory_document(hosts, parallel)
    inventory.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    setup = SetUp(inventory, lab_running=runtime.current() is not None)
    _remove_ours(progress)
    installed_guard = not guard.is_installed()
    bridge = None
    try:
        if installed_guard:
            guard.install()
            progress(f"  guard table inet {guard.TABLE} installed (no lab runs)")
        bridge = runtime.create_network(NETWORK, IPV4, IPV6)
        progress(f"  network {NETWORK} created, bridge {bridge} admitted by the guard")
        _create_hosts(hosts, image, workdir)
        progress(f"  {len(hosts)} containers created")
        runtime.in_parallel(lambda h: podman("start", h.name), hosts)
        runtime.address_bridge(bridge, *HOST_SIDE)
        _wait_until_collectable(hosts)
        setup.seconds = round(time.perf_counter() - began, 1)
        progress(f"  {len(hosts)} hosts collectable after {setup.seconds} s")
        yield setup
    finally:
        began = time.perf_counter()
        _remove_ours(progress)
        if installed_guard:
            guard.remove()
        elif bridge is not None:
            guard.remove_bridge(bridge)
        setup.teardown_seconds = round(time.perf_counter() - began, 1)


# -- timing the collection --------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  #: this process (the collector's threads)
    machine_busy: float  #: the machine's CPU busy share, containers' sshd and sudo included
    #: CPU time used inside the collected hosts' containers (sshd, sudo, the commands)
    hosts_cpu_seconds: float = 0.0
    #: the part of ``cpu_seconds`` spent in the kernel (fsync, sockets, thread switches)
    system_seconds: float = 0.0
    artifacts: int = 0
    #: Time the collector's threads spent in the evidence store's add, summed over threads
    #: (waiting for its lock included): the store writes one artifact at a time.
    evidence_seconds: float = 0.0
    commands_per_host: list[int] = field(default_factory=list)


class _TimedSink:
    """The evidence store as the collector sees it, with the time spent adding counted."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.count = 0

    def add(self, content: bytes, **metadata: Any) -> str:
        began = time.perf_counter()
        ref: str = self._store.add(content, **metadata)
        with self._lock:
            self.seconds += time.perf_counter() - began
            self.count += 1
        return ref


def _collect(inventory_path: Path, how_many: int, out: Path, cpu_files: list[Path]) -> Run:
    """Collect the first ``how_many`` hosts as the audit does; raise if any is not collected.
    ``cpu_files`` are the hosts' CPU accounting files, in inventory order."""
    from auditor.audit.orchestrator import load_for_audit, new_run_id
    from auditor.audit.scope import ScopeGuard
    from auditor.evidence.store import EvidenceStore
    from probes.host_collector import collect_hosts, targets_from_inventory

    inventory = load_for_audit(inventory_path)
    scope = ScopeGuard.from_inventory(inventory)
    targets = targets_from_inventory(inventory)[:how_many]
    store = EvidenceStore.create(out, new_run_id(datetime.now(UTC)))
    sink = _TimedSink(store)
    try:
        hosts_cpu = _hosts_cpu_seconds(cpu_files[:how_many])
        system = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        ticks, cpu, began = _cpu_ticks(), time.process_time(), time.perf_counter()
        attempts = collect_hosts(targets, inventory.ssh, sink, scope.check)
        seconds = time.perf_counter() - began
        run = Run(
            round(seconds, 3),
            round(time.process_time() - cpu, 3),
            busy_fraction(ticks, _cpu_ticks()),
            round(_hosts_cpu_seconds(cpu_files[:how_many]) - hosts_cpu, 3),
            round(resource.getrusage(resource.RUSAGE_SELF).ru_stime - system, 3),
            sink.count,
            round(sink.seconds, 3),
        )
    finally:
        store.close()
    failed = [f"{h}: {a.error.message}" for h, a in attempts.items() if a.error is not None]
    if failed:
        raise BenchError(f"{len(failed)} host(s) not collected, first: {failed[0]}")
    run.commands_per_host = [commands_run(a.value.evidence) for a in attempts.values() if a.value]
    return run


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run_collection(
    size: int = 50, parallel: int | None = None, runs: int = 3, progress: Progress = _stderr
) -> dict[str, Any]:
    """Set the hosts up, time one host and all of them, remove them; return the entry."""
    from auditor.domain.inventory import load_inventory
    from lab.build import build_image
    from lab.podman import require_podman
    from lab.runtime import require_root

    hosts = bench_hosts(size)
    require_root()
    require_podman()
    with holding_lab_lock(), tempfile.TemporaryDirectory(prefix="bench-coll-") as tmp:
        image = build_image(progress)
        workdir = Path(tmp)
        with hosts_up(hosts, image, workdir, parallel, progress) as setup:
            setup_rss = _rss_mb()
            bound = load_inventory(setup.inventory_path).ssh.parallel
            cpu_files = _container_cpu_files(hosts)
            warm = _collect(setup.inventory_path, size, workdir / "warm-up", cpu_files)
            progress(f"  warm-up: {size} hosts collected in {warm.seconds:.1f} s (not timed)")
            load_before = _load()
            single: list[Run] = []
            many: list[Run] = []
            for n in range(runs):
                single.append(_collect(setup.inventory_path, 1, workdir / f"one-{n}", cpu_files))
                many.append(_collect(setup.inventory_path, size, workdir / f"all-{n}", cpu_files))
                progress(
                    f"  run {n + 1}: 1 host {single[-1].seconds:.2f} s, "
                    f"{size} hosts {many[-1].seconds:.2f} s"
                )
            load_after = _load()
    return _entry(
        size=size,
        bound=bound,
        setup=setup,
        single=single,
        many=many,
        setup_rss=setup_rss,
        loads=[load_before, load_after],
    )


def _entry(
    *,
    size: int,
    bound: int,
    setup: SetUp,
    single: list[Run],
    many: list[Run],
    setup_rss: float,
    loads: list[list[float]],
) -> dict[str, Any]:
    seconds = _median([r.seconds for r in many])
    single_seconds = _median([r.seconds for r in single])
    ratio = round(seconds / single_seconds, 2)
    cores = os.cpu_count() or 1
    work_many = _median([r.cpu_seconds + r.hosts_cpu_seconds for r in many])
    floor = ratio_floor(work_many, cores, single_seconds)
    return {
        "name": "collection",
        "size": size,
        "seconds": seconds,
        "peak_rss_mb": _rss_mb(),
        "single_host_seconds": single_seconds,
        "ratio_to_single": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
        "parallel": bound,
        "commands_per_host": int(statistics.median(many[0].commands_per_host)),
        "setup_seconds": setup.seconds,
        "teardown_seconds": setup.teardown_seconds,
        "runs": {
            "seconds": [r.seconds for r in many],
            "single_host_seconds": [r.seconds for r in single],
        },
        # Process time of the collector's threads, and the machine's busy share (the
        # containers' sshd and sudo run on the same cores): whether the cores were the limit.
        "cpu_seconds": _median([r.cpu_seconds for r in many]),
        "cpu_system_seconds": _median([r.system_seconds for r in many]),
        "single_host_cpu_seconds": _median([r.cpu_seconds for r in single]),
        "machine_cpu_busy": _median([r.machine_busy for r in many]),
        "single_host_machine_cpu_busy": _median([r.machine_busy for r in single]),
        # CPU used inside the hosts' containers, and what that means for the ratio: the run of
        # many cannot be shorter than all its CPU work spread over the machine's cores.
        "hosts_cpu_seconds": _median([r.hosts_cpu_seconds for r in many]),
        "single_host_hosts_cpu_seconds": _median([r.hosts_cpu_seconds for r in single]),
        "cores": cores,
        "ratio_floor_here": floor,
        "target_reachable_here": floor <= TARGET_RATIO,
        # 1.0: the run of many took no longer than the machine's cores allow; lower: time lost
        # to the collector (its bound, its locks, its waiting).
        "parallel_efficiency": round(floor / ratio, 2),
        "artifacts": many[0].artifacts,
        "evidence_add_seconds": _median([r.evidence_seconds for r in many]),
        # One host alone: no other thread waits for the store, so this is what one add costs.
        "evidence_ms_per_artifact": round(
            1000 * statistics.median(r.evidence_seconds / r.artifacts for r in single), 2
        ),
        "setup_peak_rss_mb": setup_rss,
        "load_average": {"before": loads[0], "after": loads[1]},
        "lab_running": setup.lab_running,
        "hosts_like": LIKE,
    }
