"""`meshctl test`: start a stack, run the built-in and declared checks against it, tear it down,
and report (JUnit, JSON). session.py runs checks against a mesh.yaml stack; compose_mode.py against
a compose file with meshctl's sidecars injected. May import: meshctl.runtime, meshctl.inject and
everything below them, and meshctl.engine."""
