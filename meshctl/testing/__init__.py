"""`meshctl test`: start a stack, run the built-in and declared checks against it, tear it down,
and report. session.py runs the whole thing for a mesh.yaml stack (Harness, run_harness),
compose_mode.py for a compose file with meshctl's sidecars injected; targets.py says what each
service's checks reach, checks.py runs them, evaluate.py judges what came back (pure), report.py
holds the outcome (JSON) and junit.py renders it as JUnit XML.
May import: meshctl.runtime, meshctl.inject and everything below them, and meshctl.engine."""
