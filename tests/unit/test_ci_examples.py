"""examples/ci: the workflow files run `meshctl test` and upload the very report it writes."""

import shlex
from pathlib import Path

import yaml

CI = Path(__file__).resolve().parent.parent.parent / "examples" / "ci"


def junit_path(command: str) -> str:
    words = shlex.split(command)
    assert words[:2] == ["meshctl", "test"], command
    return words[words.index("--junit") + 1]


def test_github_actions_runs_meshctl_test_and_uploads_its_junit_report():
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    [job] = workflow["jobs"].values()
    steps = {step.get("name"): step for step in job["steps"]}
    report = junit_path(steps["meshctl test"]["run"])
    upload = steps["Upload the JUnit report"]
    assert upload["if"] == "always()" and upload["with"]["path"] == report
    assert steps["Show the checks in the run's summary"]["with"]["report_paths"] == report
    assert "meshctl" in steps["Install meshctl"]["run"]


def test_gitlab_job_runs_meshctl_test_and_keeps_its_junit_report_even_on_failure():
    [job] = yaml.safe_load((CI / "gitlab-ci.yml").read_text()).values()
    [command] = [line for line in job["script"] if line.startswith("meshctl test")]
    report = junit_path(command)
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == report and report in job["artifacts"]["paths"]
    assert any("pip install" in line and "meshctl" in line for line in job["before_script"])
