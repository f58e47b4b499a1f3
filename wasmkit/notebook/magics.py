"""IPython magics: ``%%wasm`` builds a cell into a filter, ``%wasmkit`` does the rest.

``%load_ext wasmkit`` registers them. Each magic parses its arguments and calls
one core function (:func:`wasmkit.build`, :func:`wasmkit.doctor`,
:func:`wasmkit.replay.run.replay`); a :class:`~wasmkit.errors.WasmkitError` is
shown as an IPython ``UsageError``: its message, no traceback, and the cell
fails. Defaults are traitlets, set with ``%config WasmkitMagics.default_lang =
'rust'`` or in ``ipython_config.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, TraitError, Unicode, validate

from wasmkit import options
from wasmkit.build import build, doctor
from wasmkit.build.languages import normalize
from wasmkit.build.toolchain import TEXT_NAME
from wasmkit.errors import CompileError, WasmkitError
from wasmkit.notebook import formatters
from wasmkit.notebook.display import Filter
from wasmkit.replay.run import replay

F = TypeVar("F", bound=Callable[..., Any])


def _usage_errors(fn: F) -> F:
    """Show wasmkit's errors (and bad arguments) as a ``UsageError``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CompileError as exc:
            raise UsageError(compile_message(exc)) from None
        except (WasmkitError, ValueError, FileNotFoundError) as exc:
            raise UsageError(str(exc)) from None

    return cast(F, wrapper)


def compile_message(exc: CompileError, first_line: int = 2) -> str:
    """The compiler's diagnostics at the cell's line numbers.

    Args:
        exc: the compile error of source text.
        first_line: the cell line the source text starts on (2: the ``%%wasm``
            line is line 1, as the notebook numbers them).
    """
    if not exc.diagnostics:
        return str(exc)
    head = str(exc).splitlines()[0]
    lines = [head]
    for file, line, column, message in exc.diagnostics:
        if file == TEXT_NAME:
            where = f"cell line {line + first_line - 1}"
            where += f", column {column}" if column else ""
        else:
            where = f"{file}:{line}:{column}"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


class _Done(Exception):
    """``--help`` was printed: nothing more to do."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message)
        raise _Done


def _wasm_parser() -> _Parser:
    parser = _Parser(
        prog="%%wasm",
        description="Build the cell into a filter and bind NAME to it.",
    )
    parser.add_argument("name", help="the variable to bind the filter to")
    parser.add_argument(
        "--lang", help="assemblyscript, rust, go or tinygo (default: default_lang)"
    )
    parser.add_argument(
        "--config", help="plugin configuration: JSON text, or a variable's name"
    )
    parser.add_argument(
        "--root-id", help="the plugin's root id (default: default_root_id)"
    )
    parser.add_argument(
        "--force", action="store_true", help="compile even if the cache has it"
    )
    options.add_vm_arguments(parser)
    options.add_build_arguments(parser)
    return parser


def _wasmkit_parser() -> _Parser:
    parser = _Parser(prog="%wasmkit", description="wasmkit in the notebook.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    doc = sub.add_parser(
        "doctor",
        help="check the compilers",
        description="Show each toolchain, its version and whether it builds a "
        "tiny filter, and how to install what is missing.",
    )
    doc.add_argument("--lang", action="append", help="only this language (repeat)")
    doc.add_argument("--no-build", action="store_true", help="only look for tools")
    rep = sub.add_parser(
        "replay",
        help="replay captures through a filter",
        description="Replay .flow / HAR captures through the filter bound to NAME "
        "(by %%wasm, or a .wasm path or Artifact) in a fresh VM.",
    )
    rep.add_argument("name", help="the variable holding the filter")
    rep.add_argument("capture", nargs="+", help="mitmproxy .flow or HAR files")
    rep.add_argument("--filter", dest="filter_expr", help="mitmproxy filter expression")
    rep.add_argument("--limit", type=int, help="replay at most this many exchanges")
    rep.add_argument("-o", "--output", help="bind the ReplayResult to this variable")
    return parser


@magics_class
class WasmkitMagics(Magics):
    """The ``%%wasm`` cell magic and the ``%wasmkit`` line magic."""

    default_lang = Unicode(
        "",
        help="Language of %%wasm cells without --lang: assemblyscript, rust, go or "
        "tinygo; empty: told from the cell's text.",
    ).tag(config=True)
    default_root_id = Unicode(
        "", help="Root id of %%wasm filters without --root-id."
    ).tag(config=True)
    default_config = Unicode(
        "", help="Plugin configuration of %%wasm filters without --config."
    ).tag(config=True)
    show = Bool(
        True, help="Show the filter (what was built, how fast) as the cell's output."
    ).tag(config=True)

    @property
    def _ns(self) -> dict[str, Any]:
        assert self.shell is not None
        return cast(dict[str, Any], self.shell.user_ns)

    @validate("default_lang")
    def _check_lang(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if not value:
            return value
        try:
            return normalize(value)
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @cell_magic
    @_usage_errors
    def wasm(self, line: str, cell: str) -> Filter | None:
        """Build the cell's source into a proxy-wasm filter and bind NAME to it.

        ``%%wasm NAME [--lang assemblyscript|rust|go|tinygo] [--config JSON]
        [--root-id ID] [--force]`` and the options ``wasmkit run`` shares:
        limits (``--timeout-ms``, ``--start-timeout-ms``, ``--memory-mb``,
        ``--fuel``), ``--log-level``, ``--vm-config``, ``--property``, and
        for the build ``--tags``, ``--go-flags``, ``--build-arg``.

        The build goes through the build cache (an unchanged cell is not
        compiled again); the module is loaded and started with the plugin
        configuration (JSON text, or the name of a variable holding text,
        bytes or a JSON-able value). A compile error shows the compiler's
        messages at the cell's line numbers (the ``%%wasm`` line is line 1)
        and fails the cell.
        """
        try:
            args = _wasm_parser().parse_args(shlex.split(line))
        except _Done:
            return None
        name = args.name
        if not name.isidentifier():
            raise UsageError(f"%%wasm: NAME must be a Python identifier, not {name!r}")
        lang = args.lang or self.default_lang or None
        root_id = self.default_root_id if args.root_id is None else args.root_id
        config = (
            self.default_config if args.config is None else self._config(args.config)
        )
        vm_options = options.vm_options(args)
        artifact = build(
            cell,
            lang,
            root_id=root_id or None,
            force=args.force,
            **options.build_options(args),
        )
        loaded = Filter(
            artifact,
            config=config,
            root_id=root_id,
            name=name,
            cell_first_line=2,  # the %%wasm line is line 1
            **vm_options,
        )
        previous = self._ns.get(name)
        if isinstance(previous, Filter) and previous is not loaded:
            previous.close()
        self._ns[name] = loaded
        return loaded if self.show else None

    def _config(self, text: str) -> str | bytes:
        if text.isidentifier() and text in self._ns:
            value = self._ns[text]
            if isinstance(value, str | bytes):
                return value
            return json.dumps(value)
        try:
            json.loads(text)
        except ValueError as exc:
            raise UsageError(
                f"%%wasm: --config is neither JSON nor a variable: {exc}"
            ) from None
        return text

    @line_magic
    @_usage_errors
    def wasmkit(self, line: str) -> Any:
        """Run a wasmkit command.

        ``%wasmkit doctor [--lang L] [--no-build]``: the toolchains and whether
        they build. ``%wasmkit replay NAME CAPTURE... [--filter EXPR]
        [--limit N] [-o VAR]``: replay captures through a filter; returns the
        ``ReplayResult``, or binds it to VAR.
        """
        try:
            args = _wasmkit_parser().parse_args(shlex.split(line))
        except _Done:
            return None
        if args.command == "doctor":
            print(doctor(args.lang, build_filters=not args.no_build))
            return None
        return self._replay(args)

    def _replay(self, args: argparse.Namespace) -> Any:
        if args.name not in self._ns:
            raise UsageError(f"%wasmkit replay: no variable {args.name!r}")
        if args.output is not None and not args.output.isidentifier():
            raise UsageError(f"%wasmkit replay: -o needs a name, not {args.output!r}")
        target = self._ns[args.name]
        options: dict[str, Any] = {"filter_expr": args.filter_expr, "limit": args.limit}
        if isinstance(target, Filter):
            result = target.replay(args.capture, **options)
        else:
            result = replay(target, args.capture, **options)
        if args.output is None:
            return result
        self._ns[args.output] = result
        return None


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics, their settings and the replay widgets with ``ipython``."""
    ipython.register_magics(WasmkitMagics(shell=ipython))
    formatters.register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove what :func:`load_ipython_extension` registered."""
    formatters.unregister(ipython)
    manager = ipython.magics_manager
    instance = manager.registry.pop(WasmkitMagics.__name__, None)
    if instance is None:
        return
    for kind, names in WasmkitMagics.magics.items():
        table = manager.magics[kind]
        for name in names:
            if getattr(table.get(name), "__self__", None) is instance:
                del table[name]
    if instance in ipython.configurables:
        ipython.configurables.remove(instance)
