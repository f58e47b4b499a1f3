"""Replay capture files through a filter: the one-call entry point."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, cast

from wasmkit.errors import CaptureReadError
from wasmkit.host.connection_manager import ENVOY_DEFAULTS, ConnectionManager
from wasmkit.host.plugin import Plugin, load
from wasmkit.progress import Progress
from wasmkit.replay import _interrupts, sources, stored
from wasmkit.replay.engine import FlowRunner, ReplayOptions, Upstream, young_gc_only
from wasmkit.replay.responders import CaptureResponder
from wasmkit.replay.results import (
    Balance,
    FlowCollector,
    FlowResult,
    Keep,
    ReplayResult,
)
from wasmkit.replay.stored import PartWriter, StoredPart, StoredRecords
from wasmkit.traffic import Capture, load_capture

PathArg = str | os.PathLike[str]
P = ParamSpec("P")


def _with_progress(fn: Callable[P, ReplayResult]) -> Callable[P, ReplayResult]:
    """Show the ``progress=`` of a replay: a bar after a second, then one line."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ReplayResult:
        first: Any = args[0] if args else kwargs.get("filter")
        if _is_wasm_filter(first):
            # What %%wasm binds replays itself: its configuration, root id,
            # VM options and name (it comes back here with its module).
            rest: dict[str, Any] = dict(kwargs)
            rest.pop("filter", None)
            captures = args[1] if len(args) > 1 else rest.pop("captures")
            return cast(ReplayResult, first.replay(captures, *args[2:], **rest))
        enabled = cast("bool | None", kwargs.get("progress"))
        user = cast("Callable[[FlowResult], None] | None", kwargs.get("on_flow"))
        user_progress = cast("Callable[[int], None] | None", kwargs.get("on_progress"))
        # The bar counts every flow done (on_progress); the closing line takes
        # its counts from the totals, as every other view does.
        with Progress(desc="replaying", unit="flows", enabled=enabled) as bar:

            def on_flow(flow: FlowResult) -> None:
                if user is not None:
                    user(flow)

            def on_progress(n: int) -> None:
                if n == 0:
                    bar.restart()  # the load said how long it took
                bar.update(n)
                if user_progress is not None:
                    user_progress(n)

            kwargs["on_flow"] = on_flow
            kwargs["on_progress"] = on_progress
            result = fn(*args, **kwargs)
            replayed = result.done_flows
            what = "interrupted after" if result.interrupted else "replayed"
            bar.done(
                f"{what} {replayed} flow{'' if replayed == 1 else 's'}",
                # Counted only when the bar shows (the totals of a full replay
                # are counted when first asked for).
                (result.totals.describe() if bar.mode != "off" else "")
                + (" (partial result)" if result.interrupted else ""),
            )
        return result

    return wrapper


def _is_wasm_filter(obj: Any) -> bool:
    # wasmkit.notebook.display.Filter, told by its shape: the core does not
    # import the notebook layer.
    return callable(getattr(obj, "replay", None)) and hasattr(obj, "artifact")


@_with_progress
def replay(
    filter: Any,
    captures: PathArg | Sequence[PathArg],
    *,
    config: bytes | str = b"",
    root_id: str = "",
    fail_open: bool = False,
    failure_policy: str | None = None,
    decoded: bool = False,
    limit: int | None = None,
    filter_expr: str | None = None,
    chunk_size: int | None = None,
    follow_time: bool = True,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    workers: int = 1,
    scheduler: Any = None,
    partitions: int | None = None,
    balance: Balance = "measured",
    callouts_from_capture: bool = False,
    progress: bool | None = None,
    keep: Keep = "all",
    max_kept: int | None = None,
    connection_manager: ConnectionManager | None = ENVOY_DEFAULTS,
    records_to: PathArg | bool | None = None,
    **vm_options: Any,
) -> ReplayResult:
    """Replay captured traffic through a filter and report what it changed.

    One VM serves the whole replay, so state carries from flow to flow as in
    a proxy. A flow on which the filter fails is marked and replay goes on; a
    capture that breaks part way keeps the flows before the damage and says
    where it broke in :attr:`ReplayResult.capture_error`.

    An interrupt (Ctrl-C; in a notebook, interrupting the kernel) does not
    raise: the replay stops and returns the flows finished so far with
    :attr:`ReplayResult.interrupted` set; the progress line says
    ``interrupted after N flows``, and every export of the result is marked
    partial. Code that must stop on Ctrl-C checks ``result.interrupted``.

    Args:
        filter: a ``.wasm`` / ``.wat`` path, a build artifact, wasm bytes, WAT
            text, a compiled module, or the filter a ``%%wasm`` cell binds
            (replayed with its own configuration, root id and VM options
            unless given here).
        captures: mitmproxy ``.flow`` or HAR files: paths, or ``fsspec``
            URLs (``file:///data/api.flow``; see
            :mod:`wasmkit.replay.sources`).
        config: the plugin configuration.
        root_id: the plugin's root id.
        fail_open: Envoy's deprecated ``fail_open: true``: the flow on which
            the filter fails and later ones go on without it.
        failure_policy: what follows a filter failure, as Envoy's
            ``failure_policy``: ``fail_closed`` (the default: the failing
            flow and every later one get a 503 without the filter),
            ``fail_open`` (the failing flow gets the 503, later ones skip the
            filter) or ``fail_reload`` (a later flow reloads the VM once the
            backoff passed, on the virtual clock); see
            :mod:`wasmkit.host.failure`. With several workers, a VM failed on
            an earlier part fails the later parts' flows too.
        decoded: hand the filter decoded bodies, as if a decompressor ran first.
        limit: replay at most this many exchanges.
        filter_expr: only flows matching this mitmproxy filter expression.
        chunk_size: deliver bodies in chunks of this many bytes.
        follow_time: let virtual time follow the capture's timestamps.
        upstream: answer requests instead of the recorded responses.
        on_flow: called with each flow's result (on Dask: each kept flow's,
            in order, as the partitions come back).
        on_progress: called with how many more flows are done, kept or not
            (a progress bar; the ``progress`` bar uses it); first with 0 once
            the filter is loaded.
        callouts_from_capture: answer the filter's HTTP callouts with the
            recorded responses of matching flows of the same captures (see
            :class:`wasmkit.replay.responders.CaptureResponder`); reads the
            captures once before replaying. Not with ``responder=``. Name the
            clusters the filter calls with ``clusters=``: as in Envoy, a call
            to any other is refused (BadArgument).
        workers: replay on a local Dask cluster of this many worker
            processes (one thread each; started once and kept for the
            session), the capture cut into partitions of contiguous flows,
            each replayed in its own VM and read by its worker from the
            path (see :mod:`wasmkit.replay.distributed`: VM state does not
            carry across partitions). With ``WASMKIT_DASK_SCHEDULER`` set, a
            replay with ``workers`` other than 1 runs on that cluster.
        scheduler: replay on an existing Dask cluster: its scheduler's
            address (``tcp://host:8786``) or a ``distributed.Client``; the
            captures must be where every worker reads them by the same path.
        partitions: with ``workers`` or ``scheduler``: how many partitions
            (default: one per worker thread, more for large captures).
        balance: accepted for older callers; partitions are always even
            flow ranges.
        progress: show progress when the replay takes over a second, closing
            with ``replayed 17 flows in 1.3 s: 3 modified, 1 failed``
            (:class:`wasmkit.progress.Progress`). ``None``: in a notebook or a
            terminal; ``True``: also as plain lines on a piped stderr.
        keep: which flows to keep in full: ``all``; ``changed`` (those the
            filter changed or failed on) or ``summary`` (failed ones), at most
            ``max_kept`` (default 1000), with :attr:`ReplayResult.totals`
            counting every flow: memory then stays flat in the capture's size
            (on Dask too: each partition sends back only what it kept). See
            :class:`wasmkit.replay.results.FlowCollector`.
        max_kept: keep at most this many flows in full.
        connection_manager: what Envoy's HTTP connection manager and router
            do around the filter (default: Envoy 1.40's defaults; see
            :class:`wasmkit.host.connection_manager.ConnectionManager`):
            the filter sees the captured request as Envoy hands it on
            (``x-forwarded-proto``, ``x-request-id``, hop-by-hop headers
            removed), each flow records what the upstream and the client got.
            ``None``: the filter sees the capture as it is.
        records_to: a folder (a path, or an ``fsspec`` URL every worker can
            write) where every flow's record and summary row are written as
            the flows replay, one pair of files per partition
            (:mod:`wasmkit.replay.stored`); :attr:`ReplayResult.stored` reads
            them back lazily and ``result.summary(lazy=True)`` is a Dask
            DataFrame of them. With ``keep="summary"`` the records then never
            come back through this process. ``None``: on wasmkit's local
            Dask cluster (``workers``) with ``keep="summary"``, a temporary
            folder the result owns; else none. ``True``: a temporary folder
            the result owns; ``False``: none.
        **vm_options: for :class:`wasmkit.host.FilterVm` (``responder``,
            ``clusters``, ``environment``, ``host_env_keys``, ``limits``,
            ``properties``, ``vm_configuration`` ...).

    Raises:
        FilterLoadError: the filter cannot be loaded or started.
        CaptureFormatError: a file is not a capture wasmkit reads.
    """
    # The bar is @_with_progress's; the load inside shows its own line.
    if callouts_from_capture:
        if "responder" in vm_options:
            raise ValueError("give callouts_from_capture or responder, not both")
        if workers != 1 or scheduler is not None:
            raise ValueError("callouts_from_capture needs workers=1")
        seen: list[Any] = []
        # Answer from the flows before any damage; the replay reports it.
        try:
            with contextlib.suppress(CaptureReadError):
                for exchange in load_capture(_local(captures), decoded=decoded):
                    seen.append(exchange)
        except KeyboardInterrupt:
            return ReplayResult(
                filter=_name(filter, None), flows=[], keep=keep, interrupted=True
            )
        vm_options["responder"] = CaptureResponder(seen)
    # What against_envoy() replays through Envoy.
    inputs = {
        "filter": filter,
        "captures": captures,
        "config": config,
        "root_id": root_id,
        "fail_open": fail_open,
        "failure_policy": failure_policy,
        "connection_manager": connection_manager,
        "decoded": decoded,
        "limit": limit,
        "filter_expr": filter_expr,
        "chunk_size": chunk_size,
        "upstream": upstream,
        "callouts_from_capture": callouts_from_capture,
        "workers": workers,
        **vm_options,
    }
    if workers != 1 or scheduler is not None:
        from wasmkit.replay.parallel import replay_captures

        parallel = replay_captures(
            filter,
            captures,
            workers=workers,
            scheduler=scheduler,
            partitions=partitions,
            balance=balance,
            config=config,
            root_id=root_id,
            fail_open=fail_open,
            failure_policy=failure_policy,
            decoded=decoded,
            limit=limit,
            filter_expr=filter_expr,
            options=ReplayOptions(
                chunk_size=chunk_size,
                follow_time=follow_time,
                connection_manager=connection_manager,
            ),
            upstream=upstream,
            on_flow=on_flow,
            on_progress=on_progress,
            keep=keep,
            max_kept=max_kept,
            records_to=records_to,
            **vm_options,
        )
        parallel.inputs = inputs
        return parallel
    collector = FlowCollector(keep, max_kept)
    capture_error: str | None = None
    options = ReplayOptions(
        chunk_size=chunk_size,
        follow_time=follow_time,
        connection_manager=connection_manager,
    )
    plugin: Plugin | None = None
    capture: Capture | None = None
    interrupted = False
    folder, temporary = _store(records_to)
    writer: PartWriter | None = None
    guard = _interrupts.InterruptGuard()
    try:
        with guard:
            guard.busy = True  # start-up runs wasm too
            plugin = load(
                filter,
                config=config,
                root_id=root_id,
                fail_open=fail_open,
                progress=progress,
                failure_policy=failure_policy,
                **vm_options,
            )
            guard.busy = False
            guard.check()
            if on_progress is not None:
                on_progress(0)  # loaded: the flows' time starts now
            capture = load_capture(
                _local(captures), decoded=decoded, limit=limit, filter_expr=filter_expr
            )
            run = FlowRunner(plugin, options, upstream).run
            vm = plugin.vm
            if folder is not None:
                writer = PartWriter(folder, 0)
            with young_gc_only():
                for exchange in capture:
                    guard.busy = True
                    vm.flow = exchange.index  # named should the VM fail on it
                    flow = run(exchange)
                    guard.busy = False
                    if writer is not None:
                        writer.add(flow)
                    collector.add(flow)
                    if on_flow is not None:
                        on_flow(flow)
                    if on_progress is not None:
                        on_progress(1)
                    guard.check()
    except CaptureReadError as exc:
        capture_error = str(exc)
    except KeyboardInterrupt:
        # Ctrl-C or a kernel interrupt: the flows finished so far are the
        # result, marked partial.
        interrupted = True
    except BaseException:
        if writer is not None:
            writer.abort()
        if temporary:
            shutil.rmtree(str(folder), ignore_errors=True)
        raise
    finally:
        if capture is not None:
            capture.close()
    kept = None
    if folder is not None:
        # The flows done are the result, interrupted or not.
        parts = []
        if writer is not None:
            parts.append(StoredPart(0, 0, writer.flows, *writer.close()))
        kept = StoredRecords(folder, parts, owned=temporary)
        kept.write_manifest(interrupted=interrupted)
    result = ReplayResult(
        filter=_name(filter, plugin),
        flows=collector.flows,
        metrics=plugin.vm.metrics.table() if plugin is not None else [],
        callouts=list(plugin.vm.callouts) if plugin is not None else [],
        skipped=dict(capture.stats.skipped) if capture is not None else {},
        capture_error=capture_error,
        keep=keep,
        counted=collector.counted(),
        interrupted=interrupted,
        inputs=inputs,
    )
    result.stored = kept
    return result


def _local(captures: PathArg | Sequence[PathArg]) -> list[PathArg]:
    # The local file of each capture (an fsspec URL's, see sources).
    items = [captures] if isinstance(captures, str | os.PathLike) else captures
    return [sources.local_path(c) for c in items]


def _store(records_to: PathArg | bool | None) -> tuple[str | None, bool]:
    # One process: records on disk only when asked for.
    if records_to is None or records_to is False:
        return None, False
    if records_to is True:
        return tempfile.mkdtemp(prefix="wasmkit-records-"), True
    return stored.prepare(records_to), False


def _name(filter: Any, plugin: Plugin | None) -> str:
    # The path as given, "<wat>" for WAT text, "<bytes>" for a binary.
    if plugin is not None:
        return str(plugin.vm.module.name)
    return _interrupts.filter_name(filter)
