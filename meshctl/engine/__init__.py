"""The boundary to the container engine. base.py is everything domain code may ask of an
engine; docker.py is the real one and the only module that imports the Docker SDK (its errors
become MeshctlErrors there); compose.py runs the docker compose CLI for `meshctl test --compose`;
fake.py is a recording fake for tests with no daemon (as httpx ships MockTransport).
May import: meshctl.model, meshctl.errors. Only meshctl.runtime, meshctl.testing and meshctl.cli import it."""
