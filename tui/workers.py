"""How the terminal starts its workers: :func:`job`, a ``@work`` that names each run.

A job only does its work and posts typed messages (``tui.messages``); it never catches an
error. Every job runs on the app (a screen's too), with ``exit_on_error=False``, so a failure
arrives as one ``Worker.StateChanged`` at the app's one handler
(``StockApp._worker_failed``), which reads the worker's ``group`` to decide what the user
sees and its ``name`` (``label`` formatted with the call's arguments) as the notice's prefix.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial, wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from textual.dom import DOMNode
from textual.worker import Worker

P = ParamSpec("P")
N = TypeVar("N", bound=DOMNode)


def job(
    group: str, label: str = "", *, exclusive: bool = False, thread: bool = True
) -> Callable[[Callable[Concatenate[N, P], Any]], Callable[Concatenate[N, P], Worker[Any]]]:
    """Run the decorated method as a worker of ``group`` on the app, named ``label`` (``str.format``
    over the method's arguments, ``""`` for no prefix); ``exclusive`` cancels the group's earlier runs.
    """

    def decorate(method: Callable[Concatenate[N, P], Any]) -> Callable[Concatenate[N, P], Worker[Any]]:
        signature = inspect.signature(method)

        @wraps(method)
        def start(node: N, /, *args: P.args, **kwargs: P.kwargs) -> Worker[Any]:
            name = label.format(**signature.bind(node, *args, **kwargs).arguments) if label else ""
            return node.app.run_worker(
                partial(method, node, *args, **kwargs),
                name=name,
                group=group,
                description=f"{type(node).__name__}.{method.__name__}",
                exclusive=exclusive,
                thread=thread,
                exit_on_error=False,
            )

        return start

    return decorate
