"""The lab's data pipeline and listeners, run by lab-init on each host (python3, stdlib only).

Usage: pipeline.py /etc/lab/pipeline.json

The JSON file holds ``loops`` (steps run in order every ``every`` seconds: produce, sftp-push,
sftp-pull, process, http-push, prune) and ``servers`` (canary, http-upload). Every event is
a JSON line in the log file, so that anyone can see what moved where and when.
"""

from __future__ import annotations

import csv
import http.server
import io
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

LOG = Path("/var/log/lab/pipeline.log")
_log_lock = threading.Lock()
SSH_OPTIONS = [
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "ServerAliveInterval=5",
]


def log(**event: Any) -> None:
    event = {"t": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event}
    with _log_lock, LOG.open("a", encoding="utf-8") as out:
        out.write(json.dumps(event, ensure_ascii=False) + "\n")


def ready_files(folder: str) -> list[Path]:
    """Complete files only: names starting with '.' are transfers still in progress."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def sftp(step: dict[str, Any], batch: str) -> str:
    cmd = [
        "sftp",
        "-q",
        "-b",
        "-",
        "-i",
        step["key"],
        "-o",
        f"UserKnownHostsFile={step['known_hosts']}",
        *SSH_OPTIONS,
        step["target"],
    ]
    proc = subprocess.run(cmd, input=batch, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sftp {step['target']}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


# -- loop steps ------------------------------------------------------------------------------
class Producer:
    """Writes a small (fictitious) medical record file into the outbox each round."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, step: dict[str, Any]) -> None:
        self.sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{step.get('prefix', 'record')}-{stamp}-{self.sequence:06d}.csv"
        rows = [
            ["patient_id", "name", "birth_year", "diagnosis"],
            [f"P{self.sequence:06d}", "山田 太郎", "1960", "E11"],
        ]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        outbox = Path(step["to_dir"])
        outbox.mkdir(parents=True, exist_ok=True)
        (outbox / f".{name}").write_text(buffer.getvalue(), encoding="utf-8")
        (outbox / f".{name}").rename(outbox / name)


def sftp_push(step: dict[str, Any]) -> None:
    files = ready_files(step["from_dir"])
    if not files:
        return
    remote = step["remote_dir"]
    batch = "".join(
        f'put "{f}" "{remote}/.{f.name}.part"\nrename "{remote}/.{f.name}.part" "{remote}/{f.name}"\n'
        for f in files
    )
    sftp(step, batch)
    for f in files:
        f.unlink()
    log(step="sftp-push", to=step["target"], files=[f.name for f in files])


def sftp_pull(step: dict[str, Any]) -> None:
    remote = step["remote_dir"]
    listing = sftp(step, f"ls -1 {remote}\n")
    names = [
        Path(line.strip()).name
        for line in listing.splitlines()
        if line.strip() and not line.startswith("sftp>")
    ]
    names = [n for n in names if not n.startswith(".")]
    if not names:
        return
    local = Path(step["to_dir"])
    local.mkdir(parents=True, exist_ok=True)
    batch = "".join(f'get "{remote}/{n}" "{local}/.{n}.part"\nrm "{remote}/{n}"\n' for n in names)
    sftp(step, batch)
    for n in names:
        (local / f".{n}.part").rename(local / n)
    log(step="sftp-pull", frm=step["target"], files=names)


def process(step: dict[str, Any]) -> None:
    """'Anonymise': drop the name column and add a marker line naming the processing host."""
    out_dir = Path(step["to_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in ready_files(step["from_dir"]):
        rows = list(csv.reader(f.read_text(encoding="utf-8").splitlines()))
        drop = rows[0].index("name") if rows and "name" in rows[0] else None
        kept = [[c for i, c in enumerate(r) if i != drop] for r in rows]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(kept)
        buffer.write(f"# processed-by {step['marker']} {time.time():.0f}\n")
        (out_dir / f".{f.name}").write_text(buffer.getvalue(), encoding="utf-8")
        (out_dir / f".{f.name}").rename(out_dir / f.name)
        f.unlink()
        log(step="process", file=f.name)


def http_push(step: dict[str, Any]) -> None:
    """Cleartext HTTP PUT (the plaintext-link scenario's deliberately unencrypted link)."""
    for f in ready_files(step["from_dir"]):
        request = urllib.request.Request(
            step["url"].rstrip("/") + "/" + f.name, data=f.read_bytes(), method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status not in (200, 201, 204):
                raise RuntimeError(f"PUT {f.name}: HTTP {response.status}")
        f.unlink()
        log(step="http-push", to=step["url"], file=f.name)


def prune(step: dict[str, Any]) -> None:
    files = sorted(ready_files(step["dir"]), key=lambda p: p.stat().st_mtime)
    for f in files[: max(0, len(files) - int(step["keep"]))]:
        f.unlink()


STEPS = {
    "sftp-push": sftp_push,
    "sftp-pull": sftp_pull,
    "process": process,
    "http-push": http_push,
    "prune": prune,
}


def run_loop(loop: dict[str, Any]) -> None:
    producer = Producer()
    while True:
        started = time.monotonic()
        for step in loop["steps"]:
            action = producer if step["type"] == "produce" else STEPS[step["type"]]
            try:
                action(step)
            except Exception as exc:  # a failed round is logged and retried next round
                log(step=step["type"], error=str(exc))
                break
        time.sleep(max(0.2, float(loop.get("every", 2)) - (time.monotonic() - started)))


# -- servers ---------------------------------------------------------------------------------
def _listen(family: socket.AddressFamily, kind: socket.SocketKind, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(64)
    return sock


def _canary_tcp(sock: socket.socket, port: int, logfile: Path) -> None:
    while True:
        conn, peer = sock.accept()
        _canary_log(logfile, "tcp", port, peer[0])
        conn.close()


def _canary_udp(sock: socket.socket, port: int, logfile: Path) -> None:
    while True:
        _, peer = sock.recvfrom(4096)
        _canary_log(logfile, "udp", port, peer[0])


def _canary_log(logfile: Path, proto: str, port: int, source: str) -> None:
    line = {
        "t": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "epoch": time.time(),
        "proto": proto,
        "port": port,
        "src": source,
    }
    with _log_lock, logfile.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def canary(server: dict[str, Any]) -> None:
    """Listen on the canary's ports (IPv4 and IPv6) and log every connection or datagram."""
    logfile = Path(server.get("log", "/var/log/lab/canary.log"))
    for family in (socket.AF_INET, socket.AF_INET6):
        for port in server.get("tcp", []):
            sock = _listen(family, socket.SOCK_STREAM, port)
            threading.Thread(target=_canary_tcp, args=(sock, port, logfile), daemon=True).start()
        for port in server.get("udp", []):
            sock = _listen(family, socket.SOCK_DGRAM, port)
            threading.Thread(target=_canary_udp, args=(sock, port, logfile), daemon=True).start()


def http_upload(server: dict[str, Any]) -> None:
    """Accept HTTP PUT uploads into a folder (owned by the transfer user)."""
    folder = Path(server["dir"])
    xfer = pwd.getpwnam(server.get("owner", "xfer"))

    class Upload(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            name = Path(self.path).name
            if not name or name.startswith("."):
                self.send_error(400)
                return
            data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            part = folder / f".{name}.part"
            part.write_bytes(data)
            os.chown(part, xfer.pw_uid, xfer.pw_gid)
            part.rename(folder / name)
            log(step="http-upload", frm=self.client_address[0], file=name)
            self.send_response(201)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer((server["bind"], int(server["port"])), Upload)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()


SERVERS = {"canary": canary, "http-upload": http_upload}


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    for server in config.get("servers", []):
        SERVERS[server["type"]](server)
    for loop in config.get("loops", []):
        threading.Thread(target=run_loop, args=(loop,), daemon=True).start()
    log(step="pipeline", event="started", loops=[lp["name"] for lp in config.get("loops", [])])
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
