"""One call per pod, all at once: `stat`, `top` and `trace` take the slowest pod's time, not the
sum. Plain threads: concurrent.futures would import logging with it, ~7 ms of a command that
answers in under 0.3 s."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def at_once(call: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """call(item) for every item, each in a thread of its own; the results in the items' order.
    The first exception raised (in the items' order) is raised here, after every call ended."""
    todo = list(items)
    results: list[Result | None] = [None] * len(todo)
    failures: list[BaseException | None] = [None] * len(todo)

    def run(index: int, item: Item) -> None:
        try:
            results[index] = call(item)
        except BaseException as exc:
            failures[index] = exc
    threads = [threading.Thread(target=run, args=(i, item), daemon=True) for i, item in enumerate(todo)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed := next((exc for exc in failures if exc is not None), None):
        raise failed
    return results  # type: ignore[return-value]
