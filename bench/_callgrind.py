"""HAProxy under callgrind, for the *_instructions benches: a config's instructions per request (a
figure the machine's noise cannot move) and, to put them in µs, the same config's user CPU per
request run natively. meshctl's proxy image plus valgrind and h2load, in a container with no network.

Instructions per request: the config runs twice under valgrind --tool=callgrind, with a few
requests and with `requests` more; the difference of the two totals divided by the extra requests
(start-up and shutdown cancel out). The config listens on 127.0.0.1:15001 and h2load calls it there
with Host api:8080 (what a captured call to http://api:8080 carries) and any extra headers."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from meshctl.engine.docker import DockerEngine as Engine
from meshctl.planning.images import build_network
from meshctl.runtime.stack import ensure_sidecar_images

LISTEN = "127.0.0.1:15001"
APP = "127.0.0.1:18080"
# The access log goes to a UDP port nobody reads: formatted and sent as in a pod.
HEAD = """global
    nbthread 1
    log 127.0.0.1:5514 format raw local0 info
"""
# The "app": a listener in the same HAProxy that answers 200 itself (no TLS, no app: the same in every variant).
TAIL = f"""
frontend app
    bind {APP}
    http-request return status 200 content-type text/plain string "hello"
"""
DOCKERFILE = """FROM {proxy}
USER root
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind nghttp2-client \\
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
"""
# In the container: HAProxy (under callgrind, or not), h2load's calls, then SIGTERM (callgrind
# writes its totals); natively, the process's user and system CPU ticks from /proc before it ends.
RUN = """set -e
{wrap} haproxy -db -f /bench/haproxy.cfg 2>/tmp/vg.log &
pid=$!
call() { h2load --h1 -t 1 "$@" -H ':authority: api:8080' {headers} http://{listen}/; }   # Host: api
for i in $(seq 300); do call -n 1 -c 1 2>&1 | grep -q ' 1 succeeded' && break; sleep 0.2; done
call -n {n} -c 4 | grep -E 'status codes|succeeded'
echo "ticks: $(cut -d' ' -f14,15 /proc/$pid/stat) $(getconf CLK_TCK)"
kill -TERM $pid; wait $pid || true
grep -E '^(summary|totals):' /tmp/cg.out || true
"""
CALLGRIND = "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"


@contextmanager
def callgrind_image(label: str, *, keep: bool = False) -> Iterator[str]:
    """meshctl's proxy image with valgrind and h2load (built once; removed after unless `keep`)."""
    engine = Engine()
    proxy = ensure_sidecar_images(engine, ("proxy",), lambda event: None)["proxy"]
    image = "bench-callgrind:" + proxy.rsplit(":", 1)[1]
    try:
        if engine.image_id(image) is None:
            with tempfile.TemporaryDirectory(prefix="bench-cg-") as tmp:
                Path(tmp, "Dockerfile").write_text(DOCKERFILE.format(proxy=proxy))
                print(f"· building {image}", file=sys.stderr)
                engine.build(Path(tmp), image, labels={"meshctl.bench": label}, network_mode=build_network())
        yield image
    finally:
        if not keep:
            subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)
        engine.close()


def _run(image: str, config: str, requests: int, headers: Sequence[str], *, callgrind: bool) -> str:
    script = (RUN.replace("{wrap}", CALLGRIND if callgrind else "").replace("{n}", str(requests))
              .replace("{listen}", LISTEN).replace("{headers}", " ".join(f"-H {shlex.quote(h)}" for h in headers)))
    with tempfile.TemporaryDirectory(prefix="bench-cg-") as tmp:
        Path(tmp, "haproxy.cfg").write_text(config)
        Path(tmp).chmod(0o755)
        run = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{tmp}:/bench:ro",
                              "--label", "meshctl.bench=callgrind", image, "sh", "-c", script],
                             capture_output=True, text=True, timeout=3600)
    if run.returncode != 0 or f"{requests} succeeded" not in run.stdout:
        raise SystemExit(f"HAProxy run failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return run.stdout


def instructions(image: str, config: str, requests: int, headers: Sequence[str] = ()) -> int:
    """HAProxy's total instructions (callgrind's Ir) serving `requests` requests with this config."""
    found = re.search(r"^(?:summary|totals): (\d+)", _run(image, config, requests, headers, callgrind=True), re.M)
    if found is None:
        raise SystemExit("callgrind wrote no totals")
    return int(found.group(1))


def per_request(image: str, config: str, requests: int, headers: Sequence[str] = ()) -> float:
    """Instructions per request: `requests` more requests than a run of 100, divided."""
    few, many = (instructions(image, config, n, headers) for n in (100, 100 + requests))
    return (many - few) / requests


def cpu_us_per_request(image: str, config: str, requests: int, headers: Sequence[str] = ()) -> dict[str, float]:
    """The same HAProxy run natively: its user and system CPU µs per request (from /proc, in clock
    ticks: give it enough requests for a few seconds of CPU)."""
    found = re.search(r"^ticks: (\d+) (\d+) (\d+)", _run(image, config, requests, headers, callgrind=False), re.M)
    if found is None:
        raise SystemExit("no CPU ticks read")
    user, system, hz = (int(found.group(i)) for i in (1, 2, 3))
    return {"user_us": user / hz / requests * 1e6, "system_us": system / hz / requests * 1e6}
