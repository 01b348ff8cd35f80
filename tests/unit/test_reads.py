"""cli/reads.py: `meshctl stat` and `meshctl trace` answered before typer loads. Every plain form
it takes means what the typer command makes of it (the same parameters, defaults included); what
it does not take goes to typer; and what it answers is what the typer app answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from meshctl.cli import reads
from meshctl.cli.app import app_for
from tests.unit.fake_engine import meshctl

TAKEN = [
    ["stat"], ["stat", "-p", "shop", "--json"], ["stat", "--window", "5m", "-o", "yaml", "--path", "some/where"],
    ["stat", "--window=90s", "--project=shop", "--output=json"], ["stat", "-o", "json", "--json"],
    ["trace"], ["trace", "4bf92f3577b34da6a3ce929d0e0e4736"], ["trace", "--last", "5", "--errors", "--slowest", "--json", "-p", "x"],
    ["trace", "--last=3", "ABC", "--path", "p"], ["trace", "--path", "-"],
]
REFUSED = [
    ["stat", "-h"], ["stat", "--help"], ["stat", "--bogus"], ["stat", "--window"], ["stat", "-o", "xml"],
    ["stat", "extra"], ["stat", "--json=yes"], ["stat", "--", "x"], ["trace", "--last", "0"], ["trace", "--last", "x"],
    ["trace", "one", "two"], ["trace", "-p"], ["trace", "-p=x"], ["ps"], [],
]


def typer_command(name: str):
    return typer.main.get_command(app_for([name])).commands[name]       # type: ignore[attr-defined]


def typer_params(args: list[str]) -> dict:
    params = typer_command(args[0]).make_context(args[0], list(args[1:])).params
    return {k: (v.value if hasattr(v, "value") else str(v) if isinstance(v, Path) else v) for k, v in params.items()}


@pytest.mark.parametrize("args", TAKEN, ids=" ".join)
def test_a_plain_form_means_what_the_typer_command_makes_of_it(args):
    command, params = reads.parse(args)
    assert command == args[0] and params == typer_params(args)


@pytest.mark.parametrize("args", REFUSED, ids=lambda a: " ".join(a) or "nothing")
def test_anything_else_is_left_to_typer(args):
    assert reads.parse(args) is None and reads.answered(args) is None


@pytest.mark.parametrize("name", ["stat", "trace"])
def test_the_plain_options_are_the_typer_commands_options(name):
    declared = {opt for p in typer_command(name).params if p.param_type_name == "option"
                for opt in (*p.opts, *p.secondary_opts)} - {"--help", "-h"}
    assert set(reads.OPTIONS[name]) == declared
    arguments = [p.name for p in typer_command(name).params if p.param_type_name == "argument"]
    assert list(reads.ARGUMENTS[name]) == arguments


@pytest.mark.parametrize("args", [["stat", "-p", "gone", "--json"], ["trace", "-p", "gone"],
                                  ["trace", "-p", "gone", "0af7651916cd43dd8448eb211c80319c"],
                                  ["stat", "--window", "11m", "-p", "gone"], ["stat", "-o", "yaml", "--json"]])
def test_what_it_answers_is_what_the_typer_app_answers(args, cli_engine, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code = reads.answered(args)
    plain = capsys.readouterr()
    typed = meshctl(*args, env={"COLUMNS": "200"})
    if code is None:                    # refused: typer's own message (two formats asked for)
        assert typed.exit_code == 2 and "two formats" in typed.stderr
        return
    assert code == typed.exit_code != 0
    assert plain.err.startswith("error:") and (plain.out, plain.err) == (typed.stdout, typed.stderr)
