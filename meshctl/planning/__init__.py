"""Pure decisions: from a ProjectSpec and what was observed, a Plan of typed steps (steps.py) for
the whole project (plan.py), each pod converged from what runs to what is wanted (converge.py), the
containers of each pod (pod.py), the images to build or pull and their tags (images.py), and what a
set of changed files needs (watch.py). Nothing here talks to Docker or prints.
May import: meshctl.sidecars, meshctl.config, meshctl.certs, meshctl.model, meshctl.events, meshctl.errors."""
