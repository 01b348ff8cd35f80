from pathlib import Path

from watchfiles import Change

from meshctl.config import parse_project
from meshctl.planning.watch import REBUILD, RESTART, change_filter, classify, net_changes, watched_folders


def project(tmp_path: Path, watch: str = ""):
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\nEXPOSE 8080\n")
    (tmp_path / ".dockerignore").write_text("# build junk\nnode_modules\n*.log\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("FROM debian:bookworm-slim\nEXPOSE 9000\n")
    text = f"services:\n  web:\n    build: .\n{watch}  api:\n    build: ./api\n    ports: {{http: 0, https: 0, metrics: 0}}\n"
    source = tmp_path / "mesh.yaml"
    source.write_text(text)
    return parse_project(text, source=source, root=tmp_path)


def test_sync_mode_restarts_rebuild_globs_and_dockerfile_rebuild(tmp_path):
    p = project(tmp_path, '    watch: {sync: {".": /app}, rebuild: [requirements.txt]}\n')
    assert classify(p, {tmp_path / "app.py"}).actions == {"web": RESTART}
    assert classify(p, {tmp_path / "app.py", tmp_path / "requirements.txt"}).actions == {"web": REBUILD}
    assert classify(p, {tmp_path / "Dockerfile"}).actions == {"web": REBUILD}


def test_without_sync_a_change_rebuilds_only_its_service(tmp_path):
    p = project(tmp_path)
    assert classify(p, {tmp_path / "api" / "main.py"}).actions == {"api": REBUILD, "web": REBUILD}
    # api's folder sits inside web's build context, so both; a file of web alone touches web alone.
    assert classify(p, {tmp_path / "web.py"}).actions == {"web": REBUILD}


def test_mesh_yaml_is_a_config_change_not_a_rebuild(tmp_path):
    p = project(tmp_path)
    plan = classify(p, {tmp_path / "mesh.yaml"})
    assert plan.config_changed and plan.actions == {}
    assert classify(p, {tmp_path.parent / "elsewhere" / "x"}).empty


def test_filter_ignores_defaults_dockerignore_and_watch_ignore(tmp_path):
    p = project(tmp_path, '    watch: {ignore: ["*.tmp", "data"]}\n')
    keep = change_filter(p)
    for ignored in (".git/index", "__pycache__/a.pyc", ".app.py.swp", "app.py~", "node_modules/x/y.js",
                    "debug.log", "scratch.tmp", "data/rows.csv"):
        assert not keep(Change.modified, str(tmp_path / ignored)), ignored
    for watched in ("app.py", "templates/index.html", "api/main.py"):
        assert keep(Change.modified, str(tmp_path / watched)), watched


def test_transient_files_of_a_batch_are_dropped(tmp_path):
    (tmp_path / "app.py").write_text("x")
    changes = {(Change.added, str(tmp_path / "sedXYZ")), (Change.deleted, str(tmp_path / "sedXYZ")),
               (Change.modified, str(tmp_path / "app.py"))}
    assert net_changes(changes) == {tmp_path / "app.py"}


def test_nested_folders_are_watched_once(tmp_path):
    p = project(tmp_path)
    assert watched_folders(p) == [tmp_path]


def test_the_dotenv_beside_mesh_yaml_is_a_config_change_even_where_dockerignore_lists_it(tmp_path):
    (tmp_path / ".dockerignore").write_text(".env\n")
    p = project(tmp_path)
    (tmp_path / ".dockerignore").write_text(".env\n")
    plan = classify(p, {tmp_path / ".env"})
    assert plan.config_changed and plan.actions == {}
    keep = change_filter(p)
    assert keep(Change.modified, str(tmp_path / ".env"))
    assert not keep(Change.modified, str(tmp_path / "api" / ".env"))    # only mesh.yaml's own
