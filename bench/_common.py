"""What the bench scripts share: where the repository is (on sys.path, so `import meshctl` finds this
checkout), the meshctl command, polling until something holds, running and timing commands,
copies of examples/hello and examples/shop, cleanup, and the median/min/max tables and JSON every script prints.

Imported first by each script (`from _common import ...`: the script's folder is on sys.path when it
runs), before any meshctl import."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TypeVar
from collections.abc import Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HELLO = ROOT / "examples" / "hello"
MESHCTL = [sys.executable, "-m", "meshctl"]

# What is timed is what an installed meshctl does: pip compiles a wheel's bytecode when it installs
# it, but this checkout's modules have none where PYTHONDONTWRITEBYTECODE is set (as on these
# machines), and each run would compile every module again (+0.15 s for `stat`).
subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "meshctl")], capture_output=True,
               env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Waiting


def poll(check: Callable[[], T], *, timeout: float, interval: float = 0.01, started: float | None = None,
         what: str = "the condition", ignore: tuple[type[BaseException], ...] = (OSError,),
         process: subprocess.Popen | None = None, detail: Callable[[], str] | None = None) -> T:
    """Calls `check` until it returns something truthy, and returns that. The deadline is `timeout`
    seconds after `started` (default: now); an exception in `ignore` counts as "not yet". Gives up
    with SystemExit (a bench stops, it does not assert) when the deadline passes or `process` has
    exited, naming `what`, the last exception, and `detail()` (a log's tail, say)."""
    started = time.monotonic() if started is None else started
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except ignore as exc:
            last = exc
        gone = process is not None and process.poll() is not None
        if gone or time.monotonic() - started >= timeout:
            why = (f"{' '.join(map(str, process.args))} exited {process.returncode} before {what}" if gone
                   else f"no {what} within {timeout:g}s")
            extra = "".join(part for part in (f" (last: {last!r})" if last else "",
                                              f":\n{detail()}" if detail else "") if part)
            raise SystemExit(why + extra)
        time.sleep(interval)


def seconds_until(check: Callable[[], object], started: float, timeout: float = 120, **options) -> float:
    """`poll` from the moment `started` (time.monotonic()); the seconds from then until `check` held."""
    poll(check, timeout=timeout, started=started, **options)
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Commands


def sh(cmd: list[str], *, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Runs `cmd`, output captured as text; stops the bench with its output when it fails (`check`)."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n"
                         f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def timed(cmd: list[str], **kw) -> float:
    """Seconds `sh(cmd)` took."""
    started = time.monotonic()
    sh(cmd, **kw)
    return time.monotonic() - started


def meshctl_urls(project: str, **kw) -> dict[str, str]:
    """The URLs `meshctl ps --json` gives the project's one service."""
    [entry] = json.loads(sh([*MESHCTL, "ps", "--json", "--project", project], **kw).stdout)
    return entry["urls"]


def port_of(url: str) -> int:
    """The port of a URL meshctl prints (https://127.0.0.1:PORT/, http://127.0.0.1:PORT/metrics)."""
    return int(url.rsplit(":", 1)[1].split("/")[0])


def copy_hello(folder: Path, mesh_yaml: str) -> Path:
    """examples/hello copied to `folder`, with this mesh.yaml."""
    shutil.copytree(HELLO, folder)
    (folder / "mesh.yaml").write_text(mesh_yaml)
    return folder


def copy_shop(folder: Path, source: Path = ROOT / "examples" / "shop") -> Path:
    """examples/shop (or another checkout's) copied to `folder`, with the CA bundle this machine's
    pip trusts (a TLS-inspecting proxy's root too; PIP_CERT names another) as web's optional
    build-ca.pem: web's image installs the OpenTelemetry SDK from PyPI (tests/support.copy_shop)."""
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("build-ca.pem"))
    bundle = os.environ.get("PIP_CERT") or ssl.get_default_verify_paths().openssl_cafile
    shutil.copy(bundle, folder / "web" / "build-ca.pem")
    return folder


def cleanup(*, projects: Iterable[str] = (), folders: Iterable[Path] = (), images: Iterable[str] = (),
            volumes: bool = False, force: bool = False) -> None:
    """`meshctl down` of each project and folder, then the images removed; quiet, never fails (a
    bench's `finally`)."""
    flags = [*(["--volumes"] if volumes else []), *(["--force"] if force else [])]
    for project in projects:
        subprocess.run([*MESHCTL, "down", *flags, "--project", project], capture_output=True)
    for folder in folders:
        subprocess.run([*MESHCTL, "down", *flags, str(folder)], capture_output=True)
    for ref in images:
        subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)


# ---------------------------------------------------------------------------------------------
# Reporting


def spread(values: list[float], count: str = "runs") -> dict:
    """Median, min and max (rounded to ms) of one row's measurements, and how many there were."""
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), count: len(values)}


def print_spread(rows: dict[str, dict], *, first: str = "step", targets: dict[str, float] | None = None) -> None:
    """rows (label → `spread`) as a table: median, min, max, and the target where `targets` has one."""
    targets = targets or {}
    width = max(len(label) for label in [first, *rows])
    print(f"{first.ljust(width)}  median    min      max      target")
    for label, row in rows.items():
        target = f"< {targets[label]:g} s" if label in targets else ""
        print(f"{label.ljust(width)}  {row['median_s']:6.3f}s  {row['min_s']:6.3f}s  {row['max_s']:6.3f}s  {target}")


def emit_json(result: dict, path: Path | None, *, pretty: bool = False) -> None:
    """The result as JSON on stdout (one line, or indented with `pretty`), and indented into `path`."""
    print(json.dumps(result, indent=2 if pretty else None))
    if path:
        path.write_text(json.dumps(result, indent=2) + "\n")
