"""`meshctl up -- CMD` with no Dockerfile on the real engine: a Node.js folder (examples/node, with
its NGINX sidecar) and a Python folder with a dependency from PyPI serve through verified HTTPS; a
save reloads; the second `up` does not reinstall; `--image` runs a command in any image; a failing
npm install (no npm registry is reachable here) is one message, exit 3 and nothing left."""

from __future__ import annotations

import shutil
import signal

import docker
import pytest

from meshctl.runtime.probes import http_request, tls_context
from tests.support import (ROOT, Foreground, ca_path, eventually, port_of, ps_json, run_meshctl, running_containers,
                           unique_project)

pytestmark = pytest.mark.integration

FREE_PORTS = "ports: {https: 0, http: 0, metrics: 0}"


def volumes_of(project: str) -> list[dict]:
    return docker.from_env().api.volumes(filters={"label": f"meshctl.project={project}"})["Volumes"] or []


def https_get(project: str, path: str = "/"):
    [entry] = ps_json(project)
    return http_request(port_of(entry["urls"]["https"]), path, tls=tls_context(ca_path()))


def wait_for_body(project: str, path: str, body: bytes, timeout: float = 60) -> None:
    def answered() -> bool:
        answer = https_get(project, path)
        assert answer.status == 200 and answer.body == body, answer
        return True
    eventually(answered, timeout, what=f"{path} answers {body!r}", ignore=(OSError, AssertionError))


@pytest.fixture
def node_example(tmp_path, sidecar_images):
    folder = tmp_path / "node"
    shutil.copytree(ROOT / "examples" / "node", folder)
    name = unique_project("node")
    text = (folder / "mesh.yaml").read_text()
    (folder / "mesh.yaml").write_text(text.replace("name: node", f"name: {name}")
                                      .replace("ports: {https: 8443, http: 8080, metrics: 9090}", FREE_PORTS))
    yield folder, name
    run_meshctl("down", "--volumes", str(folder))


def test_node_example_with_no_dockerfile_and_its_nginx_sidecar_serves_and_reloads(node_example, engine):
    folder, project = node_example
    assert not (folder / "Dockerfile").exists()
    up = Foreground(str(folder), "--", "node", "server.js")
    try:
        up.wait_for_line("meshctl: ready", timeout=400)
        answer = https_get(project)
        assert answer.status == 200 and answer.body == b"hi from node\n"
        # The static files come from the NGINX sidecar, on the pod's localhost, through node.
        assert https_get(project, "/static/hello.txt").body == b"hi from the static sidecar\n"
        [entry] = ps_json(project)
        assert [c["role"] for c in entry["containers"]] == ["pod", "metrics", "proxy", "static", "app"]
        api = docker.from_env().api
        app = api.inspect_container(f"{project}-web-app")
        assert app["Config"]["WorkingDir"] == "/app" and app["HostConfig"]["CapDrop"] == ["ALL"]
        assert any(m["Destination"] == "/app" and not m["RW"] for m in app["Mounts"])     # the folder, read-only
        assert app["Config"]["Image"].startswith("meshctl-runtime-node:")
        static = api.inspect_container(f"{project}-web-static")["HostConfig"]
        assert static["ReadonlyRootfs"] and static["CapDrop"] == ["ALL"]
        image = api.inspect_image(app["Config"]["Image"])
        assert image["Config"]["Labels"]["meshctl.runtime"] == "node"

        # Sync mode: a save restarts node in place and the new code answers.
        server = folder / "server.js"
        server.write_text(server.read_text().replace("from node", "from node, saved"))
        up.wait_for_line("restart web", timeout=60)
        wait_for_body(project, "/", b"hi from node, saved\n")
        # The sidecar's build folder: rebuilt (a new content hash) and replaced, node after it.
        (folder / "nginx" / "static" / "hello.txt").write_text("hi again from the static sidecar\n")
        up.wait_for_line("converge web", timeout=240)
        wait_for_body(project, "/static/hello.txt", b"hi again from the static sidecar\n")

        up.proc.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.output
        assert running_containers(engine, project) == []
    finally:
        up.kill()


PYTHON_APP = '''
import os, signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import six                                # from PyPI, installed into the cache volume

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = f"six {six.__version__} on {sys.version_info.major}.{sys.version_info.minor}\\n".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print("api: listening", flush=True)
server.serve_forever(poll_interval=0.1)
'''


@pytest.fixture
def python_folder(tmp_path, sidecar_images):
    folder = tmp_path / "api"
    folder.mkdir()
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    (folder / "app.py").write_text(PYTHON_APP)
    name = unique_project("py")
    (folder / "mesh.yaml").write_text(f"name: {name}\nservices:\n  api:\n    command: [python3, app.py]\n"
                                      f"    {FREE_PORTS}\n")
    yield folder, name
    run_meshctl("down", "--volumes", str(folder))


def test_python_with_a_pypi_dependency_installs_once_and_down_volumes_removes_the_cache(python_folder, engine):
    folder, project = python_folder
    first = run_meshctl("up", "-d", str(folder), timeout=600)
    assert first.returncode == 0, first.stderr
    assert "installed dependencies of api" in first.stderr and "Successfully installed six-1.16.0" in first.stderr
    assert https_get(project).body == b"six 1.16.0 on 3.11\n"
    [volume] = volumes_of(project)
    assert volume["Labels"]["meshctl.role"] == "deps" and volume["Labels"]["meshctl.service"] == "api"
    assert run_meshctl("down", str(folder), check=True).returncode == 0
    assert [v["Name"] for v in volumes_of(project)] == [volume["Name"]]           # a cache: down keeps it

    second = run_meshctl("up", "-d", str(folder), check=True)
    assert "installing" not in second.stderr and "installed" not in second.stderr   # reused, not reinstalled
    assert https_get(project).body == b"six 1.16.0 on 3.11\n"
    removed = run_meshctl("down", "--volumes", str(folder), check=True)
    assert "1 dependency cache volume" in removed.stderr
    assert volumes_of(project) == [] and running_containers(engine, project) == []


PERL_APP = r'''
use IO::Socket::INET;
my $server = IO::Socket::INET->new(LocalPort => $ENV{PORT}, Listen => 16, ReuseAddr => 1) or die "listen: $!";
$SIG{TERM} = sub { exit 0 };
print "perl: listening on $ENV{PORT}\n";
$| = 1;
while (my $c = $server->accept) {
    my $line = <$c>; while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
    my ($path) = $line =~ m{^\w+ (\S+)};
    my $body = $path eq "/" ? "hi from perl in any image\n" : "not found\n";
    my $status = $path eq "/" ? "200 OK" : "404 Not Found";
    print $c "HTTP/1.0 $status\r\nContent-Type: text/plain\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
    close $c;
}
'''


def test_image_runs_the_command_in_any_image_with_the_folder_at_app(tmp_path, engine, sidecar_images):
    folder = tmp_path / "perl"
    folder.mkdir()
    (folder / "app.pl").write_text(PERL_APP)
    name = unique_project("img")
    # The base image is the one image every machine here has: perl-base is in it.
    result = run_meshctl("test", str(folder), "--project", name, "--image", "debian:bookworm-slim",
                         "--", "perl", "app.pl", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout + result.stderr
    assert running_containers(engine, name) == []


def test_a_failing_npm_install_is_one_message_exit_3_and_nothing_left(tmp_path, engine, sidecar_images):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "package.json").write_text('{"name": "shop", "dependencies": {"left-pad": "1.3.0"}}\n')
    (folder / "server.js").write_text("require('left-pad');\n")
    name = unique_project("npm")
    (folder / "mesh.yaml").write_text(f"name: {name}\nservices:\n  shop:\n    command: [node, server.js]\n"
                                      f"    {FREE_PORTS}\n")
    result = run_meshctl("up", "-d", str(folder), timeout=600)
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "shop: installing its dependencies (package.json) failed with exit code" in errors[0]
    assert "registry.npmjs.org" in result.stderr and "Traceback" not in result.stderr
    assert running_containers(engine, name) == [] and volumes_of(name) == []


def test_a_changed_requirements_txt_installs_again_and_restarts_the_app_on_it(python_folder, engine):
    folder, project = python_folder
    up = Foreground(str(folder))
    try:
        up.wait_for_line("meshctl: ready", timeout=400)
        assert https_get(project).body == b"six 1.16.0 on 3.11\n"
        (folder / "requirements.txt").write_text("six==1.15.0\n")
        up.wait_for_line("converge api", timeout=240)
        wait_for_body(project, "/", b"six 1.15.0 on 3.11\n")
        assert "Successfully installed six-1.15.0" in up.output          # the install streamed
        assert len(volumes_of(project)) == 2                              # the old cache stays a cache
        up.proc.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.output
    finally:
        up.kill()


GO_MAIN = '''package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hi from go") })
	fmt.Println("go: listening on", os.Getenv("PORT"))
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
'''


def test_a_go_module_with_no_dockerfile_passes_meshctl_test_in_the_dash_dash_form(tmp_path, engine, sidecar_images):
    folder = tmp_path / "hello-go"
    folder.mkdir()
    (folder / "go.mod").write_text("module example.com/hello\n\ngo 1.19\n")
    (folder / "main.go").write_text(GO_MAIN)
    name = unique_project("go")
    result = run_meshctl("test", str(folder), "--project", name, "--", "go", "run", ".", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 checks passed" in result.stdout + result.stderr
    assert running_containers(engine, name) == []
