"""The Dask cluster a replay runs on: a local one kept for the session, or yours.

``replay(..., workers=N)`` starts a ``distributed.LocalCluster`` of N worker
processes with one thread each, once, and replays on it until the number of
workers asked for changes or :func:`shutdown` (at exit at the latest).
``scheduler=`` (an address such as ``tcp://10.0.0.5:8786``, or a
``distributed.Client``) or the environment variable
:data:`SCHEDULER_ENV` name an existing cluster instead: Dask's own
(``dask scheduler`` and ``dask worker`` processes), one on Kubernetes, SSH or
an HPC scheduler. ``distributed`` is imported only here, on first use (it
takes about a second).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

SCHEDULER_ENV = "WASMKIT_DASK_SCHEDULER"
"""The environment variable naming the scheduler of an existing Dask cluster."""

_LOCK = threading.Lock()
_LOCAL: dict[str, Any] = {}
"""The session's local cluster: ``workers``, ``cluster``, ``client``."""
_REMOTE: dict[str, Any] = {}
"""Clients of existing clusters, by scheduler address."""
_SCATTERED: dict[tuple[int, str], Any] = {}
"""Modules on each cluster, by client and content hash (the last few)."""

SCATTERED_KEPT = 4
"""Modules kept on a cluster for the next replays."""


def scheduler_from_env() -> str | None:
    """The scheduler address :data:`SCHEDULER_ENV` names, if set."""
    value = os.environ.get(SCHEDULER_ENV, "").strip()
    return value or None


_EXIT: list[bool] = []


def client_for(workers: int, scheduler: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` to replay with, and whether it is the local one.

    Args:
        workers: worker processes of the local cluster (when ``scheduler`` is
            ``None``).
        scheduler: ``None`` (the local cluster), an address, or a Client.

    Raises:
        ValueError: ``scheduler`` is neither an address nor a Client.
        ReplayError: the scheduler cannot be reached.
    """
    from distributed import Client

    from wasmkit.errors import ReplayError

    if not _EXIT:
        _EXIT.append(True)
        atexit.register(shutdown)

    if isinstance(scheduler, Client):
        return scheduler, False
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ValueError(
                "scheduler must be an address (tcp://host:port) or a "
                f"distributed.Client, not {scheduler!r}"
            )
        address = scheduler.strip()
        with _LOCK:
            client = _REMOTE.get(address)
            if client is not None and client.status == "running":
                return client, False
            try:
                client = Client(  # type: ignore[no-untyped-call]
                    address, timeout="10s", set_as_default=False
                )
            except (OSError, TimeoutError) as exc:
                raise ReplayError(
                    f"cannot reach the Dask scheduler at {address}: {exc}"
                ) from None
            _REMOTE[address] = client
            return client, False
    return _local(workers), True


def _local(workers: int) -> Any:
    from wasmkit.errors import ReplayError

    with _LOCK:
        if _LOCAL.get("workers") == workers:
            client = _LOCAL["client"]
            if client.status == "running":
                return client
        _close_local()
        # A worker process that dies while the cluster starts (killed, out
        # of memory) fails the start: once more, then one line.
        for attempt in (1, 2):
            try:
                cluster, client = _start_local(workers)
                break
            except (RuntimeError, OSError, TimeoutError) as exc:
                if attempt == 2:
                    raise ReplayError(
                        f"cannot start a local Dask cluster of {workers} worker "
                        f"processes: {exc}"
                    ) from None
        _LOCAL.update(workers=workers, cluster=cluster, client=client)
        return client


def _start_local(workers: int) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    from wasmkit.replay._worker_plugin import IgnoreInterrupts

    # Ctrl-C in a terminal reaches the whole process group: the worker
    # processes leave it to this one, which cancels the replay. Started with
    # SIGINT ignored, they inherit that (a Ctrl-C during the start is lost);
    # the plugin does the same in workers started later.
    with _sigint_ignored():
        # Any free port: the scheduler's HTTP server (the dashboard with
        # bokeh) listens even without a dashboard, and 8787 may be taken.
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            scheduler_port=0,
            # wasmkit reports what goes wrong in a replay itself (a lost
            # worker's partition replays on another, a failure is a flow's
            # or a part's); Dask's own errors (a heartbeat racing the close,
            # a killed worker's comms) would print tracebacks on stderr.
            silence_logs=logging.CRITICAL,
        )
        try:
            client = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
            client.wait_for_workers(workers, timeout=120)
            client.register_plugin(IgnoreInterrupts(), name="wasmkit-sigint")
        except BaseException:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)
            raise
    return cluster, client


def scatter(client: Any, binary: bytes) -> Any:
    """The module for the cluster's workers (a future), sent once by content hash."""
    key = (id(client), hashlib.sha256(binary).hexdigest()[:32])
    with _LOCK:
        future = _SCATTERED.pop(key, None)
    if future is None or future.status in ("error", "cancelled", "lost"):
        # A task that returns the module, rather than scattered data: the
        # scheduler keeps the bytes in the task and runs it again should the
        # workers holding its result die.
        future = client.submit(
            _module, binary, key=f"wasmkit-module-{key[1]}", pure=False
        )
        # On every worker: otherwise the scheduler sends the partitions to
        # the one that holds the module (data locality), one after another.
        client.replicate([future])
    with _LOCK:
        _SCATTERED[key] = future
        while len(_SCATTERED) > SCATTERED_KEPT:
            del _SCATTERED[next(iter(_SCATTERED))]
    return future


def _module(binary: bytes) -> bytes:
    return binary


def _forget(client: Any) -> None:
    # Modules on a cluster about to close: released first (scattered data a
    # closing worker held would be reported lost).
    futures = [_SCATTERED.pop(k) for k in list(_SCATTERED) if k[0] == id(client)]
    with contextlib.suppress(Exception):
        if futures:
            client.cancel(futures)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _close_local() -> None:
    client = _LOCAL.get("client")
    if client is not None:
        _forget(client)
    client = _LOCAL.pop("client", None)
    cluster = _LOCAL.pop("cluster", None)
    _LOCAL.clear()
    with contextlib.suppress(Exception):
        if client is not None:
            client.close(timeout=5)
    with contextlib.suppress(Exception):
        if cluster is not None:
            cluster.close(timeout=10)


def local_workers() -> int:
    """Worker processes of the session's local cluster (0: none runs)."""
    with _LOCK:
        return int(_LOCAL.get("workers", 0))


def local_pids() -> list[int]:
    """The process ids of the local cluster's workers (for tests and tools)."""
    with _LOCK:
        client = _LOCAL.get("client")
    if client is None:
        return []
    return sorted(client.run(os.getpid).values())


def shutdown() -> None:
    """Stop the session's local cluster (the next replay starts a new one)."""
    with _LOCK:
        _close_local()
        remote = list(_REMOTE.values())
        _REMOTE.clear()
        for client in remote:
            _forget(client)
    for client in remote:
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def dashboard(client: Any) -> str | None:
    """The Dask dashboard's address, when the cluster runs one."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:
        return None
    if "dashboard" not in services:
        return None
    if client is _LOCAL.get("client") and importlib.util.find_spec("bokeh") is None:
        return None  # the port answers, but without the status pages
    link = getattr(client, "dashboard_link", None)
    return str(link) if link else None


def threads(client: Any) -> int:
    """Worker threads of the cluster (at least 1)."""
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:  # an older distributed without n_workers
        workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
