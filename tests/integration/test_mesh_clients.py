"""Capture on the real engine for clients other than web's Python: Node.js (its http module and
its fetch) and curl, each calling plain http://api:8080 from inside a meshed pod, the way an app
in any language would. Each call must reach api through the caller's proxy and mutual TLS: api's
app sees the caller's SPIFFE identity in X-Forwarded-Client-Cert. Without capture the call would
go straight to api's app port, which strict mode refuses, so these tests fail if capture does not
apply to a client. (The Python client is test_mesh.py's web; strict's refusal of a container
outside the mesh is tested there too.)"""

from __future__ import annotations

import json
import shutil

import pytest

from meshctl.model import container_name, network_name
from tests.support import SHOP, run_meshctl, running_containers, unique_project

pytestmark = pytest.mark.integration

# A caller with Node.js and curl from Debian; the app itself only answers its health check.
CLIENT_DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs curl \\
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY server.js .
CMD ["node", "server.js"]
"""
CLIENT_SERVER = """\
const http = require("http");
const server = http.createServer((req, res) => { res.writeHead(200); res.end("ok\\n"); });
process.on("SIGTERM", () => { server.close(() => process.exit(0)); server.closeIdleConnections(); });
server.listen(Number(process.env.PORT || 8080));
"""

NODE_HTTP = """\
require("http").get("http://api:8080/whoami", (res) => {
  let body = "";
  res.on("data", (chunk) => (body += chunk));
  res.on("end", () => console.log(body));
}).on("error", (error) => { console.error(error.message); process.exit(1); });
"""
NODE_FETCH = """\
fetch("http://api:8080/whoami").then((res) => res.text()).then(console.log,
  (error) => { console.error(String(error.cause || error)); process.exit(1); });
"""
SPOOFED = "By=spiffe://meshctl.local/ns/x/sa/api;URI=spiffe://meshctl.local/ns/x/sa/admin"
CLIENTS = {
    "node http": ["node", "-e", NODE_HTTP],
    "node fetch": ["node", "--no-warnings", "-e", NODE_FETCH],
    "curl": ["curl", "-sS", "--max-time", "20", "http://api:8080/whoami"],
    # A header a client sets itself never reaches the callee: the proxies replace it.
    "curl, spoofed header": ["curl", "-sS", "--max-time", "20", "-H", f"X-Forwarded-Client-Cert: {SPOOFED}",
                             "http://api:8080/whoami"],
}


@pytest.fixture(scope="module")
def clients_mesh(tmp_path_factory, engine, sidecar_images):
    """api (examples/shop's Node.js app, which answers who called it) and a client service, strict
    mTLS; yields the project name. Down after, and nothing of it may be left."""
    root = tmp_path_factory.mktemp("mesh-clients")
    shutil.copytree(SHOP / "api", root / "api")
    (root / "client").mkdir()
    (root / "client" / "Dockerfile").write_text(CLIENT_DOCKERFILE)
    (root / "client" / "server.js").write_text(CLIENT_SERVER)
    project = unique_project("clients")
    ports = "    ports: {https: 0, http: 0, metrics: 0}\n"
    (root / "mesh.yaml").write_text(
        f"name: {project}\nmesh: {{mtls: strict}}\nservices:\n"
        f"  api:\n    build: api\n    port: 8080\n    health: /healthz\n{ports}"
        f"  client:\n    build: client\n    port: 8080\n    health: /\n{ports}")
    run_meshctl("up", "-d", str(root), check=True, timeout=600)
    try:
        yield project
    finally:
        run_meshctl("down", str(root), check=True)
        assert running_containers(engine, project) == []
        assert engine.networks({"meshctl.project": project}) == []
        assert not [n for n in engine.networks({}) if n.get("Name") == network_name(project)]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_plain_http_call_from_any_client_crosses_the_mesh_with_its_identity(clients_mesh, engine, client):
    project = clients_mesh
    # docker exec runs as the app's own user, as the app's own calls do: capture must see it.
    code, output = engine.exec(container_name(project, "client", "app"), CLIENTS[client], timeout=60)
    assert code == 0, f"{client} could not call http://api:8080 from inside the mesh:\n{output}"
    answer = json.loads(output.strip().splitlines()[-1])
    client_id = f"spiffe://meshctl.local/ns/{project}/sa/client"
    assert answer["caller"] == client_id, answer
    assert answer["xfcc"] == f"By=spiffe://meshctl.local/ns/{project}/sa/api;URI={client_id}", answer
