"""Results of a replay: one record per flow, plus tables and exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmkit.diff.compare import body_change, header_changes
from wasmkit.host.callouts import Callout
from wasmkit.replay.flows import BALANCE_MODES as BALANCE_MODES
from wasmkit.replay.flows import DEFAULT_MAX_KEPT as DEFAULT_MAX_KEPT
from wasmkit.replay.flows import KEEP_MODES as KEEP_MODES
from wasmkit.replay.flows import RESOURCE_COLUMNS as RESOURCE_COLUMNS
from wasmkit.replay.flows import Balance as Balance
from wasmkit.replay.flows import FlowCollector as FlowCollector
from wasmkit.replay.flows import FlowResult as FlowResult
from wasmkit.replay.flows import Keep as Keep
from wasmkit.replay.flows import ReplayTotals as ReplayTotals
from wasmkit.replay.flows import _action as _action
from wasmkit.replay.flows import modified as modified
from wasmkit.replay.flows import resource_row as resource_row

if TYPE_CHECKING:
    from wasmkit.replay.stored import StoredRecords


@dataclass(slots=True)
class ReplayResult:
    """Everything a replay produced."""

    filter: str
    """The filter's name or path."""
    flows: list[FlowResult]
    """One result per replayed flow, in capture order."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """The filter's metrics at the end."""
    callouts: list[Callout] = field(default_factory=list)
    """Every HTTP callout made."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Flows not replayed, by kind (``tcp``, ``websocket``...)."""
    capture_error: str | None = None
    """Where the capture broke, if it did (flows before it were replayed)."""
    keep: Keep = "all"
    """Which flows :attr:`flows` holds: ``all``, or with ``changed`` /
    ``summary`` only some (see :class:`FlowCollector`); :attr:`totals` count
    them all."""
    counted: ReplayTotals | None = None
    """The totals gathered while replaying; ``None``: count :attr:`flows`."""
    parts: list[tuple[int, range]] = field(default_factory=list)
    """With several workers: which VM replayed which flows, as ``(process,
    positions among the replayed flows)`` runs in capture order (process 0
    is the calling one); empty: one VM replayed them all."""
    interrupted: bool = False
    """The replay was interrupted (Ctrl-C, a kernel interrupt): :attr:`flows`
    and :attr:`totals` hold the flows finished before it, and every export
    says the result is partial (see :meth:`partial_note`)."""
    runtime: str = "wasmkit"
    """What ran the filter: ``wasmkit`` (the in-process host) or ``envoy``
    (a real Envoy, :mod:`wasmkit.envoy`)."""
    inputs: dict[str, Any] | None = None
    """How the replay was made: ``filter``, ``captures``, ``config``,
    ``root_id``, ``fail_open``, ``decoded``, ``limit``, ``filter_expr`` and
    the VM options (``responder``, ``limits``, ``vm_configuration``...), as
    :func:`wasmkit.replay.run.replay` got them; what :meth:`against_envoy`
    replays through Envoy. ``None``: not recorded."""
    stored: StoredRecords | None = field(default=None, repr=False, compare=False)
    """Every replayed flow's record and summary row on disk, when the replay
    wrote them (``records_to``; on wasmkit's local Dask cluster also
    ``keep="summary"``): read back lazily, see
    :class:`wasmkit.replay.stored.StoredRecords`. ``None``: only
    :attr:`flows` hold records."""
    _totals: ReplayTotals | None = field(
        default=None, init=False, repr=False, compare=False
    )
    envoy_comparison: Any = field(default=None, repr=False, compare=False)
    """The last :meth:`against_envoy` comparison (the explorer shows it)."""

    @property
    def done_flows(self) -> int:
        """Flows replayed (kept in full or not), without counting them again."""
        return len(self.flows) if self.counted is None else self.counted.flows

    def partial_note(self) -> str | None:
        """One line saying the result is partial; ``None`` when it is complete."""
        if not self.interrupted:
            return None
        done = self.done_flows
        return (
            f"partial replay: interrupted after {done} "
            f"flow{'' if done == 1 else 's'}; the results hold only those"
        )

    @property
    def totals(self) -> ReplayTotals:
        """Counts over every replayed flow (flows, modified, failed, actions)."""
        if self.counted is not None:
            return self.counted
        cached = self._totals
        if cached is None or cached.kept != len(self.flows):
            # Counted once when first asked for; a copy with other flows
            # (dataclasses.replace) counts its own.
            cached = ReplayTotals()
            for flow in self.flows:
                cached.add(flow)
            cached.kept = len(self.flows)
            self._totals = cached
        return cached

    def __iter__(self) -> Iterator[FlowResult]:
        return iter(self.flows)

    def __len__(self) -> int:
        return len(self.flows)

    @property
    def failed(self) -> list[FlowResult]:
        """Flows on which the filter failed."""
        return [f for f in self.flows if f.failed]

    @property
    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per flow.

        Keys: index, method, host, path, statuses, action, header adds, removes
        and changes per side, body changed, local reply, log count, host calls,
        µs, error.
        """
        return [f.summary() for f in self.flows]

    def header_rows(self, *, unchanged: bool = False) -> list[dict[str, Any]]:
        """One dict per header field that changed (or every field)."""
        rows = []
        for flow in self.flows:
            r = flow.result
            sides = (
                (
                    "request",
                    r.request_before.headers,
                    r.request_after.headers if r.request_after else None,
                ),
                (
                    "response",
                    r.response_before.headers if r.response_before else None,
                    r.response_after.headers if r.response_after else None,
                ),
            )
            for side, before, after in sides:
                if before is None and after is None:
                    continue
                for c in header_changes(before, after):
                    if unchanged or c.change != "unchanged":
                        rows.append(
                            {
                                "flow": flow.index,
                                "side": side,
                                "name": c.name,
                                "before": c.before,
                                "after": c.after,
                                "change": c.change,
                            }
                        )
        return rows

    def body_rows(self) -> list[dict[str, Any]]:
        """One dict per body the filter changed."""
        rows = []
        for flow in self.flows:
            r = flow.result
            pairs = (
                (
                    "request",
                    r.request_before.body,
                    r.request_after.body if r.request_after else None,
                ),
                (
                    "response",
                    r.response_before.body if r.response_before else None,
                    r.response_after.body if r.response_after else None,
                ),
            )
            for side, before, after in pairs:
                if before is None or after is None:
                    continue
                c = body_change(before, after)
                if c.changed:
                    rows.append(
                        {
                            "flow": flow.index,
                            "side": side,
                            "kind": c.kind,
                            "size_before": c.size_before,
                            "size_after": c.size_after,
                            "diff": c.diff,
                        }
                    )
        return rows

    def resource_rows(self) -> list[dict[str, Any]]:
        """What each flow cost: one dict per flow (see :meth:`resources`)."""
        return [resource_row(f) for f in self.flows]

    def resources(self) -> Any:
        """What each flow cost, as a pandas DataFrame (nullable dtypes).

        Columns: ``flow`` (capture index); ``us`` (µs of the whole stream in
        the host); ``us_filter`` (µs inside the filter's callbacks, host calls
        included); ``host_calls``; ``fuel`` (with ``Limits(fuel=...)``, else
        ``<NA>``); ``memory_bytes`` (the guest's linear memory after the flow,
        bytes; ``<NA>`` for flows a worker process or Envoy ran); then one
        ``us_<callback>`` column per callback the filter exports
        (``us_on_request_headers`` ...: µs in it during the flow).
        """
        from wasmkit.diff import frames  # pandas loads only when asked for

        rows = self.resource_rows()
        callbacks = sorted({k for row in rows for k in row if k.startswith("us_on")})
        columns = [*RESOURCE_COLUMNS, *callbacks]
        frame = frames.ReplayFrame(rows, columns=columns)
        dtypes = {c: "Float64" for c in ("us", "us_filter", *callbacks)}
        dtypes |= {"flow": "Int64", "host_calls": "Int64", "fuel": "Int64"}
        dtypes["memory_bytes"] = "Int64"
        return frames.nullable(frame, dtypes)

    def records(self) -> list[dict[str, Any]]:
        """Every flow as a ``wasmkit run`` record with its ``index``."""
        return [f.record() for f in self.flows]

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """The records one at a time, read from disk as iterated.

        Every replayed flow's from :attr:`stored` when the replay wrote them,
        else those of :attr:`flows`.
        """
        if self.stored is not None:
            return iter(self.stored)
        return (f.record() for f in self.flows)

    def json_document(self) -> Any:
        """What :meth:`to_json` writes: the records, or a partial replay's object.

        A complete replay is the array of records. An interrupted one is an
        object, so that it is never taken for a complete replay:
        ``{"interrupted": true, "partial": true, "flows": N, "note": ...,
        "records": [...]}``.
        """
        records = self.records()
        note = self.partial_note()
        if note is None:
            return records
        return {
            "interrupted": True,
            "partial": True,
            "flows": self.done_flows,
            "note": note,
            "records": records,
        }

    def to_json(self, path: str | Path) -> None:
        """Write the records as a JSON array (see :meth:`json_document`).

        The file is written to a temporary file beside ``path`` and renamed
        once complete, so a failed write leaves no partial file.

        Raises:
            OSError: it cannot be written; ``filename`` is ``path``.
        """
        from wasmkit.traffic import _atomic

        _atomic.write_text(path, json.dumps(self.json_document(), indent=1))

    def _repr_html_(self) -> str:
        from wasmkit.diff import report  # the HTML lives with the report

        return report.render_summary_html(self)

    def summary(self, *, lazy: bool = False) -> Any:
        """The summary: one row per flow, nullable dtypes.

        ``lazy=False``: a pandas DataFrame of :attr:`flows` (the flows kept in
        full). ``lazy=True``: a Dask DataFrame with the same columns and
        dtypes, for captures too large for memory: every replayed flow's row,
        read from :attr:`stored` one partition at a time when the replay
        wrote its records (``.to_parquet(path)`` writes it without loading
        it), else :attr:`flows`' rows in one partition.
        """
        from wasmkit.diff import frames  # pandas loads only when asked for

        if not lazy:
            return frames.summary(self)
        if self.stored is not None:
            return self.stored.summary(lazy=True)
        from wasmkit.replay import stored

        return stored.one_partition(frames.summary(self))

    def header_diff(self, *, unchanged: bool = False) -> Any:
        """Header changes as a pandas DataFrame."""
        from wasmkit.diff import frames

        return frames.header_diff(self, unchanged=unchanged)

    def body_diff(self) -> Any:
        """Body changes as a pandas DataFrame."""
        from wasmkit.diff import frames

        return frames.body_diff(self)

    def _after_filter(self) -> list[tuple[Any, Any, Any, str | None]]:
        """Each flow as it left the filter: ``(exchange, request, response, error)``.

        The request as forwarded upstream (or as the filter left it when it held
        it), the response the client received (local replies included; the 503
        that stands in for a missing upstream response is left out, the
        capture's error kept instead), and the error text: the filter's failure,
        a reset or stall, or the capture's own error.
        """
        out = []
        for flow in self.flows:
            r = flow.result
            response = r.response_after
            if flow.no_response and r.local_reply is None:
                response = None
            error: str | None = None
            if r.error is not None:
                error = f"filter failed ({r.error.kind}): {r.error}"
            elif r.reset:
                error = "the filter reset the stream"
            elif r.stalled:
                error = f"the stream stalled at {r.stalled}"
            elif flow.no_response and response is None:
                error = getattr(flow.exchange, "error", None) or "no upstream response"
            out.append((flow.exchange, r.request_after, response, error))
        return out

    def to_flow(self, path: str | Path) -> int:
        """Write the traffic as it left the filter as a mitmproxy ``.flow`` file.

        Opens in mitmweb (``mitmweb -r PATH``); returns the number of flows.
        Written whole or not at all; a partial replay's flows carry
        :meth:`partial_note` as their comment.

        Raises:
            OSError: it cannot be written; ``filename`` is ``path``.
        """
        from wasmkit.traffic import mitm

        comment = self.partial_note() or ""
        return mitm.write_flows(path, self._after_filter(), comment=comment)

    def to_har(self, path: str | Path) -> int:
        """Write the traffic as it left the filter as HAR (mitmproxy's exporter).

        Returns the number of entries. Written whole or not at all; a partial
        replay's ``log.comment`` is :meth:`partial_note`.

        Raises:
            OSError: it cannot be written; ``filename`` is ``path``.
        """
        from wasmkit.traffic import mitm

        comment = self.partial_note() or ""
        return mitm.write_har(path, self._after_filter(), comment=comment)

    def to_pytest(self, path: str | Path, **options: Any) -> tuple[Path, Path]:
        """Write a pytest regression test of this replay and its golden snapshot.

        The test rebuilds (source, through the build cache) or reloads the
        same filter, replays the same captures with the same options and
        compares every flow with the snapshot (``path`` with
        ``.snapshot.json``), failing with one line per changed field;
        ``pytest --wasmkit-update`` rewrites the snapshot. ``options`` go to
        :func:`wasmkit.testing.snapshot.write_pytest` (``source``,
        ``callouts``, ``trace``...). Returns the test and snapshot paths.

        Raises:
            ValueError: the replay cannot be written down (a responder or
                upstream function, no recorded inputs, interrupted).
            OSError: a file cannot be written.
        """
        from wasmkit.testing import snapshot  # the testing layer loads when asked

        return snapshot.write_pytest(self, path, **options)

    def to_html(self, path: str | Path) -> None:
        """Write a static, self-contained HTML report of the replay.

        Written whole or not at all; a partial replay says so at the top.

        Raises:
            OSError: it cannot be written; ``filename`` is ``path``.
        """
        from wasmkit.diff import report

        report.to_html(self, path)

    def against_envoy(self, **overrides: Any) -> Any:
        """Replay the same capture through a real Envoy and compare, flow by flow.

        Runs :func:`wasmkit.envoy.replay` with the filter, configuration,
        root id, VM configuration, environment, responder, log level, limits
        and capture selection this replay used (:attr:`inputs`), then
        compares both; returns a :class:`wasmkit.envoy.differ.EnvoyComparison`,
        also kept as :attr:`envoy_comparison` (the explorer shows it).
        ``overrides`` go to :func:`wasmkit.envoy.replay` (``binary``,
        ``request_timeout_s``, ``clusters``...).

        Raises:
            ValueError: the replay's inputs were not recorded, or it used what
                Envoy cannot reproduce (``upstream=``).
            EnvoyNotFoundError: no Envoy binary.
            EnvoyError: Envoy refused the filter or did not answer in time.
        """
        from wasmkit.envoy import against  # Envoy's layer loads only when asked

        return against.against_envoy(self, **overrides)

    def show(self) -> Any:
        """The replay explorer widget (tabs: Summary, Flows, Logs, Metrics, Callouts).

        The last expression of a cell shows it; elsewhere pass it to
        ``display()``. Needs ipywidgets (a notebook dependency).
        """
        # The one place the core reaches into the notebook layer, lazily.
        from wasmkit.notebook import explorer

        return explorer.ReplayExplorer(self)
