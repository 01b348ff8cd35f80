"""`meshctl export k8s --push`: the images an export names that are built from folders (the apps',
the user's sidecars', meshctl's sidecars'), built where they are missing here and pushed to the
registry their names say. The export decides what; this runs it against the engine."""

from __future__ import annotations

from ..events import BuildEvent, OnEvent
from ..engine.base import Engine
from ..planning.images import build_network
from ..planning.steps import BuildImage


def push_images(engine: Engine, builds: list[BuildImage], on_event: OnEvent) -> list[str]:
    """Build what is not here (a content-hash tag that exists is that content), push each; the refs pushed."""
    pushed = []
    for step in builds:
        if engine.image_id(step.ref) is None:
            ref = step.ref

            def line(text: str, ref: str = ref) -> None:
                on_event(BuildEvent(ref, "step", text))

            on_event(BuildEvent(ref, "start"))
            engine.build(step.context, ref, labels=step.labels, network_mode=build_network(),
                         dockerfile=step.options.dockerfile, buildargs=dict(step.options.args), target=step.options.target,
                         on_line=line)
            on_event(BuildEvent(ref, "done"))
        engine.push(step.ref)
        pushed.append(step.ref)
    return pushed
