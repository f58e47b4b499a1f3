"""The VM and build options ``wasmkit run``, ``wasmkit replay`` and ``%%wasm`` share.

One definition, so a flag means the same on the command line and in a cell:

``--timeout-ms``, ``--start-timeout-ms``, ``--memory-mb``, ``--fuel`` (the
:class:`~wasmkit.host.vm.Limits`), ``--log-level``, ``--vm-config``,
``--property``, ``--cluster``, ``--env``, ``--host-env``, ``--failure-policy``,
``--reload-backoff-ms`` (VM options) and
``--tags``, ``--go-flags``, ``--build-arg`` (build options, for filters given
as source).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from wasmkit.host.failure import FAILURE_POLICIES, RELOAD_BACKOFF_MS
from wasmkit.host.vm import Limits

LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")
"""Values of ``--log-level``."""

_DEFAULTS = Limits()


def text_or_file(value: str | None) -> bytes:
    """``TEXT`` as UTF-8, or the contents of ``@FILE``.

    Raises:
        ValueError: ``@FILE`` cannot be read.
    """
    if value is None:
        return b""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    return value.encode("utf-8")


def parse_property(text: str) -> tuple[str, str | int | bool]:
    """``PATH=VALUE``; integers and ``true`` / ``false`` are typed.

    Raises:
        ValueError: no ``=`` or an empty path.
    """
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise ValueError(f"--property must look like PATH=VALUE, not {text!r}")
    if value in ("true", "false"):
        return path, value == "true"
    if value.lstrip("-").isdigit():
        return path, int(value)
    return path, value


def add_vm_arguments(parser: argparse.ArgumentParser) -> None:
    """The VM flags: limits, log level, VM configuration, properties."""
    group = parser.add_argument_group("VM and limits")
    group.add_argument(
        "--timeout-ms",
        type=int,
        default=_DEFAULTS.timeout_ms,
        metavar="MS",
        help="CPU-time limit of each stream callback (default "
        f"{_DEFAULTS.timeout_ms}; 0: none)",
    )
    group.add_argument(
        "--start-timeout-ms",
        type=int,
        default=_DEFAULTS.startup_timeout_ms,
        metavar="MS",
        help="limit of each start-up call: _initialize, on_vm_start, on_configure "
        f"(default {_DEFAULTS.startup_timeout_ms}; 0: none)",
    )
    group.add_argument(
        "--memory-mb",
        type=int,
        default=(_DEFAULTS.memory_bytes or 0) >> 20,
        metavar="MB",
        help="largest linear memory of the VM (default "
        f"{(_DEFAULTS.memory_bytes or 0) >> 20})",
    )
    group.add_argument(
        "--fuel",
        type=int,
        metavar="N",
        help="limit each stream callback to N wasm instructions instead of "
        "CPU time (deterministic)",
    )
    group.add_argument(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        help="lowest log level kept and reported to the filter (default info)",
    )
    group.add_argument("--vm-config", help="VM configuration: TEXT or @FILE")
    group.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="NAME",
        help="a cluster the filter's callouts may name, besides a --callouts "
        "table's keys (repeatable); Envoy answers a call to any other with "
        "BadArgument",
    )
    group.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the VM, as Envoy's vm_config."
        "environment_variables.key_values (repeatable; the host's own "
        "environment stays invisible)",
    )
    group.add_argument(
        "--host-env",
        action="append",
        default=[],
        metavar="KEY",
        help="pass this process's variable KEY to the VM, as Envoy's "
        "host_env_keys (repeatable; left out when unset)",
    )
    group.add_argument(
        "--failure-policy",
        choices=FAILURE_POLICIES,
        help="after the filter fails, as Envoy's failure_policy: fail_closed "
        "(default: that stream and every later one get a 503), fail_open (that "
        "stream gets the 503, later ones skip the filter), fail_reload (a later "
        "stream reloads the VM after --reload-backoff-ms)",
    )
    group.add_argument(
        "--reload-backoff-ms",
        type=int,
        default=RELOAD_BACKOFF_MS,
        metavar="MS",
        help="fail_reload: least time between VM loads (Envoy's "
        f"reload_config.backoff.base_interval; default {RELOAD_BACKOFF_MS})",
    )
    group.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="set a property the filter reads, e.g. xds.route_name=api "
        "(repeatable; integers and true/false are typed)",
    )


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The build flags for filters given as source."""
    group = parser.add_argument_group("build (filters given as source)")
    group.add_argument(
        "--tags",
        action="append",
        default=[],
        help="Go build tags, comma- or space-separated (repeatable), e.g. "
        "'no_fs_access,memoize_builders'",
    )
    group.add_argument(
        "--go-flags",
        action="append",
        default=[],
        metavar="FLAGS",
        help="more GOFLAGS, after $GOFLAGS (repeatable)",
    )
    group.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more compiler argument, after the kit's (repeatable)",
    )


def _limit(value: int | None, name: str) -> int | None:
    if value is None or value == 0:
        return None
    if value < 0:
        raise ValueError(f"--{name} must be 0 (none) or positive, not {value}")
    return value


def limits(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` the VM flags ask for.

    Raises:
        ValueError: a negative limit.
    """
    memory = _limit(args.memory_mb, "memory-mb")
    return Limits(
        timeout_ms=_limit(args.timeout_ms, "timeout-ms"),
        startup_timeout_ms=_limit(args.start_timeout_ms, "start-timeout-ms"),
        fuel=_limit(args.fuel, "fuel"),
        memory_bytes=None if memory is None else memory << 20,
    )


def vm_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`~wasmkit.host.FilterVm` keyword arguments from the VM flags.

    Raises:
        ValueError: a bad limit, property or unreadable ``@FILE``.
    """
    options: dict[str, Any] = {
        "limits": limits(args),
        "log_level": args.log_level,
        "vm_configuration": text_or_file(args.vm_config),
    }
    if args.cluster:
        options["clusters"] = tuple(args.cluster)
    if args.env:
        env: dict[str, str] = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--env must look like KEY=VALUE, not {item!r}")
            env[key] = value
        options["environment"] = env
    if args.host_env:
        options["host_env_keys"] = tuple(args.host_env)
    if args.failure_policy is not None:
        options["failure_policy"] = args.failure_policy
    if args.reload_backoff_ms != RELOAD_BACKOFF_MS:
        if args.reload_backoff_ms <= 1:
            raise ValueError(
                f"--reload-backoff-ms must be over 1, not {args.reload_backoff_ms}"
            )
        options["reload_backoff_ms"] = args.reload_backoff_ms
    props = dict(parse_property(p) for p in args.property)
    if props:
        options["properties"] = props
    return options


def build_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`wasmkit.build` keyword arguments from the build flags."""
    flags: list[str] = []
    for item in args.go_flags:
        flags.extend(shlex.split(item))
    return {
        "tags": tuple(args.tags),
        "go_flags": tuple(flags),
        "extra_args": tuple(args.build_arg),
    }
