"""Running a project: the Executor that carries out plans against an Engine (apply.py), the
readiness probes behind one poll loop (probes.py), a project's session of observe → plan → execute
(stack.py), read-only queries for `ps` (status.py), foreground supervision, hot reload and renewal
(supervise.py), and `doctor`'s findings (doctor.py). Emits events; never prints.
May import: meshctl.planning and everything below it, and meshctl.engine."""
