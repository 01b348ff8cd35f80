"""The one error root of meshctl. Only the CLI renders these; domain code raises them.

    MeshctlError(message, hint, exit_code)   what went wrong, what to do, how the process exits
    ├── ConfigError        mesh.yaml or flags are wrong (file:line, field)          exit 2
    ├── UsageError         a command was called in a way that cannot work           exit 2
    ├── EngineError        the Docker engine is unreachable or refused a request    exit 3
    │   ├── PortInUse      a host port is already taken                             exit 3
    │   └── ExecTimeout    a command run in a container outlived its timeout        exit 3
    ├── BuildError         an image failed to build (carries the build log's tail)  exit 3
    ├── StartError         the stack did not come up: app exited, not ready in time exit 3
    ├── ProjectBusy        another meshctl command is changing the same project     exit 3
    └── Cancelled          Ctrl-C or SIGTERM: waits and builds stop, then teardown  exit 130

Signal handlers only set an Event; the waits and builds that see it raise Cancelled.
"""

from __future__ import annotations


class MeshctlError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None,
                 details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra lines shown under the message: a build log's tail, an app's last log lines.
        self.details = details
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(MeshctlError):
    exit_code = 2


class UsageError(MeshctlError):
    exit_code = 2


class EngineError(MeshctlError):
    exit_code = 3


class PortInUse(EngineError):
    pass


class ExecTimeout(EngineError):
    """The engine's exec returned at its bound; the command may still be running."""


class BuildError(MeshctlError):
    exit_code = 3


class StartError(MeshctlError):
    exit_code = 3


class ProjectBusy(MeshctlError):
    exit_code = 3


class Cancelled(MeshctlError):
    exit_code = 130


def located(source: object, line: int | None = None, column: int | None = None) -> str:
    """`file:line[:column]`: the one way a message points at a place in a file (1-based)."""
    where = str(source)
    if line:
        where += f":{line}"
        if column:
            where += f":{column}"
    return where


def yaml_syntax_error(exc: Exception, source: object, *, problem: str | None = None,
                      hint: str) -> ConfigError:
    """A YAML parser's error (PyYAML's or ruamel's: both carry problem_mark) as one ConfigError."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = problem or getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    where = located(source, mark.line + 1, mark.column + 1) if mark is not None else located(source)
    return ConfigError(f"{where}: not valid YAML: {problem}", hint=hint)
