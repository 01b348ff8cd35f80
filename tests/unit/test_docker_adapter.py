"""The Docker adapter's pure parts, with no daemon: how SDK errors are translated at the boundary
(and the exit code each one gives the CLI)."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from meshctl.engine import docker as adapter
from meshctl.errors import EngineError
from tests.unit.fake_engine import FakeEngine, engine_with_images, meshctl, use_on_the_cli


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Client Error", response=response, explanation=explanation)


def translated(exc: Exception) -> EngineError:
    with pytest.raises(EngineError) as caught:
        with adapter._translated("create container shop-web-pod"):
            raise exc
    return caught.value


@pytest.mark.parametrize("exc", [api_error(409, 'Conflict. The container name "/shop-web-pod" is already in use'),
                                 docker.errors.NotFound("No such container: shop-web-pod")],
                         ids=["conflict", "not-found"])
def test_a_clash_or_a_missing_object_is_the_engines_refusal_exit_3(exc):
    error = translated(exc)
    assert error.exit_code == 3
    assert error.message.startswith("could not create container shop-web-pod: ")


class Clashing(FakeEngine):
    """A container name already taken by something meshctl did not make: the real adapter's
    translation of Docker's 409."""

    def create(self, spec):
        with adapter._translated(f"create container {spec.name}"):
            raise api_error(409, f'Conflict. The container name "/{spec.name}" is already in use')


def test_meshctl_test_reports_a_name_clash_as_exit_3_not_as_a_failed_check(tmp_path, monkeypatch):
    engine = engine_with_images()
    clashing = Clashing(images=engine.images)
    use_on_the_cli(tmp_path, monkeypatch, clashing)
    result = meshctl("test", str(tmp_path))
    assert result.exit_code == 3, result.output
    assert "is already in use" in result.output
