"""One module per command group, each with its own typer.Typer that cli/app.py merges into the
`meshctl` app: up.py (up, down, ps, logs), test.py, inject.py (inject, uninject), init.py,
about.py (doctor, version), ca.py (certs ca). A command parses its options, calls the layers
below, hands results to the ui and returns its exit code; it never catches a MeshctlError (the
error funnel in cli/app.py renders it). May import everything in meshctl below the CLI, cli.common
and cli.ui."""
