"""`build: {context, dockerfile, args, target}` beside `build: PATH`, carried to the image build."""

from pathlib import Path

import pytest

from meshctl.config import BuildOptions, parse_project
from meshctl.errors import ConfigError
from meshctl.planning.images import BASE_IMAGE
from meshctl.planning.plan import plan_rebuild_app
from tests.unit.fake_engine import FakeEngine, engine_with_images, stack_on


def parse(tmp_path: Path, text: str):
    (tmp_path / "api").mkdir(exist_ok=True)
    (tmp_path / "api" / "Dockerfile.dev").write_text("FROM debian:bookworm-slim AS dev\nEXPOSE 9000\n")
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path, variables={"VERSION": "1.2"})


def test_the_mapping_form_names_the_dockerfile_args_and_target(tmp_path):
    [api] = parse(tmp_path, "services:\n  api:\n    build:\n      context: ./api\n      dockerfile: Dockerfile.dev\n"
                            "      args: {VERSION: '${VERSION}', DEBUG: 1}\n      target: dev\n").services
    assert api.build == tmp_path / "api" and api.port == 9000, "EXPOSE is read from the Dockerfile it names"
    assert api.build_options == BuildOptions("Dockerfile.dev", (("VERSION", "1.2"), ("DEBUG", "1")), "dev")


def test_args_as_a_list_and_the_context_defaults_to_mesh_yaml_s_folder(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\nEXPOSE 8080\n")
    [api] = parse(tmp_path, "services:\n  api:\n    build: {args: [A=1, B=two]}\n").services
    assert api.build == tmp_path and api.build_options == BuildOptions(args=(("A", "1"), ("B", "two")))


@pytest.mark.parametrize("build, where, words", [
    ("{context: ./api, dockerfile: Dockerfile.prod}", "mesh.yaml:4: services.api.build.dockerfile",
     "no Dockerfile.prod in"),
    ("{context: ./api, dockerfil: Dockerfile.dev}", "mesh.yaml:4: services.api.build.dockerfil", "unknown field"),
    ("{context: ./api, dockerfile: Dockerfile.dev, target: [dev]}", "mesh.yaml:4: services.api.build.target",
     "build stage"),
    ("{context: ./api, dockerfile: Dockerfile.dev, args: [VERSION]}", "mesh.yaml:4: services.api.build.args",
     "NAME=VALUE"),
    ("[./api]", "mesh.yaml:4: services.api.build", "expected a folder path"),
])
def test_build_mistakes_name_line_and_field(tmp_path, build, where, words):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, f"services:\n  api:\n    port: 9000\n    build: {build}\n")
    assert where in caught.value.message and words in caught.value.message


def test_a_misspelt_build_key_says_did_you_mean(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, "services:\n  api:\n    build: {context: ./api, dockerfil: Dockerfile.dev}\n")
    assert caught.value.hint == "did you mean 'dockerfile'?"


def test_up_and_a_rebuild_pass_the_dockerfile_args_and_target_to_the_engine(tmp_path):
    project = parse(tmp_path, "name: shop\nservices:\n  api:\n    build:\n      context: ./api\n"
                              "      dockerfile: Dockerfile.dev\n      args: {VERSION: '${VERSION}'}\n"
                              "      target: dev\n    ports: {https: 0, http: 0, metrics: 0}\n")
    engine = engine_with_images()
    stack = stack_on(engine, project, tmp_path / "home")
    stack.up()
    assert engine.build_options["meshctl-shop-api:dev"] == ("Dockerfile.dev", {"VERSION": "1.2"}, "dev")
    [build] = [s for _, s in plan_rebuild_app(project, "api", stack.observe(), stack.settings).all_steps()
               if type(s).__name__ == "BuildImage"]
    assert build.options == project.services[0].build_options


def test_a_user_sidecar_builds_from_its_named_dockerfile_and_other_args_give_another_tag(tmp_path):
    text = ("name: shop\nservices:\n  api:\n    image: web:1\n    port: 8081\n    sidecars:\n      notes:\n"
            "        build: {context: ./api, dockerfile: Dockerfile.dev, args: {V: '%s'}}\n")
    engine = FakeEngine(images={BASE_IMAGE, "web:1"})
    plans = [stack_on(engine, parse(tmp_path, text % v), tmp_path / "home").plan_up() for v in ("1", "2")]
    builds = [[s for _, s in plan.all_steps() if type(s).__name__ == "BuildImage" and "notes" in s.ref]
              for plan in plans]
    assert [b.options.dockerfile for [b] in builds] == ["Dockerfile.dev", "Dockerfile.dev"]
    assert builds[0][0].ref != builds[1][0].ref
