"""The `modelsync` command: argument parsing and one function per command.

Commands call the library and hand what it returns to ``Output``; every
exception becomes a message and an exit code in ``Output.error`` only.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

from .. import __version__, _env, _runtime
from ..errors import UsageError
from .output import Output, human_size

TEMPLATE = """\
# models.toml: the model files this project needs.
# `modelsync lock` pins them in models.lock (commit both files);
# `modelsync sync` downloads, verifies and places them in models/.
# Reference: https://github.com/modelsync/modelsync/blob/main/docs/format.md

[settings]
dir = "models"          # where `sync` puts the files, next to this file
link = "auto"           # auto | reflink | hardlink | symlink | copy

# A file on an HTTPS server:
# [models.upscaler]
# url = "https://example.com/releases/v1/upscaler.onnx"
# loader = "onnx"
# description = "4x upscaler"

# A file inside a wheel on your package index (found through pip's own settings):
# [models.vad]
# pypi = "silero-vad==6.2.3"
# file = "silero_vad/data/silero_vad.onnx"
# loader = "onnx"

# A local file, copied into the cache and pinned by hash:
# [models.classifier]
# path = "assets/classifier.onnx"
"""


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument("--project", metavar="DIR", help="the project folder (default: MODELSYNC_PROJECT, else the nearest models.toml above)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own, sized to the terminal without importing shutil. argparse makes
    a formatter for every option declared, at every command and not only for --help,
    and its default one imports shutil (with bz2 and lzma: ~4 ms a command)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)


class _Parser(argparse.ArgumentParser):
    """The parser of the command and of each subcommand (argparse makes those of our class)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _init_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, json_flag=False)


def _lock_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--check", action="store_true", help="exit 1 if models.lock is stale; write nothing")
    parser.add_argument("--upgrade", nargs="*", metavar="NAME", help="re-resolve these models (all when no name is given)")
    parser.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel downloads (default: MODELSYNC_JOBS or 8)")


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--locked", action="store_true", help="fail if models.lock is stale instead of updating it")
    parser.add_argument("--frozen", action="store_true", help="use models.lock as it is; do not read the models of models.toml")
    parser.add_argument("--offline", action="store_true", help="no network: fail, listing every file not in the cache")
    parser.add_argument("--dry-run", action="store_true", help="show what would be fetched, placed and removed")
    parser.add_argument("--group", action="append", default=[], metavar="G", help="only the models of this group (repeatable)")
    parser.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel downloads (default: MODELSYNC_JOBS or 8)")
    parser.add_argument("--env", metavar="NAME", help="pick variants for this declared environment instead of this machine (default: MODELSYNC_ENV)")
    parser.add_argument("--all-variants", action="store_true", help="also fetch every other variant into the cache (for images that move between machines)")


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--env", metavar="NAME", help="show the variants of this declared environment (default: MODELSYNC_ENV)")


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("name")
    parser.add_argument("--env", metavar="NAME", help="explain for this declared environment instead of this machine")


def _path_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, json_flag=False)
    parser.add_argument("name")
    parser.add_argument("file", nargs="?")


def _pyinstaller_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, json_flag=False)
    parser.add_argument(
        "--bundle", action="extend", nargs="+", default=[], metavar="NAME", help="bundle the synced files of these models or groups"
    )


# Each command: its one-line help, and what declares its arguments.
_COMMAND_PARSERS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "init": ("write a commented models.toml", _init_arguments),
    "lock": ("resolve models.toml and write models.lock", _lock_arguments),
    "sync": ("make the cache and the models/ view match the lock", _sync_arguments),
    "status": ("each model: variant, files, size, synced / cached / missing", _status_arguments),
    "detect": ("the hardware facts of this machine and where each came from", _common),
    "explain": ("which variant of a model this machine (or --env) gets, and why", _explain_arguments),
    "path": ("print the local path of a synced model", _path_arguments),
    "pyinstaller-args": (
        "print PyInstaller's --exclude-module and --add-data options for this project (builds without a .spec)",
        _pyinstaller_arguments,
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``command``, the parser of that command
    alone. Every command line of it reads as with the whole parser, errors
    included (the usage shown is the same), and argparse makes one parser of
    ~0.3 ms and its arguments instead of nine (~3.4 ms in all, at every start).
    ``--help``, or a command it does not know, gets the whole parser."""
    parser = _Parser(prog="modelsync", description="Declare, lock and sync the model files of an application.")
    parser.add_argument("--version", action="version", version=f"modelsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_PARSERS if command is None else (command,):
        help_text, declare = _COMMAND_PARSERS[name]
        declare(commands.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The command comes first (the top level has no option that takes a value).
    args = build_parser(argv[0] if argv and argv[0] in _COMMAND_PARSERS else None).parse_args(argv)
    output = Output(quiet=args.quiet, json_mode=getattr(args, "json", False), verbose=args.verbose)
    try:
        return COMMANDS[args.command](args, output) or 0
    except BaseException as error:  # noqa: BLE001 - the one place errors become exit codes
        if isinstance(error, SystemExit):
            raise
        return output.error(error)


def run() -> NoReturn:
    """The console script (and `python -m modelsync`): ``main``, then exit at once.

    The interpreter is not torn down: freeing a big sync's objects one by one
    buys nothing for a process that ends here, and costs as much as the plan of
    2000 files took to make (~20 ms). Everything is done by then: the command
    has returned, its threads are joined and its worker processes reaped; only
    the output streams still hold bytes."""
    # A command allocates in bulk (a lock of 2000 models is ~100 k objects) and
    # makes few reference cycles: a collection every 700 allocations, the default,
    # cost a sync of 2000 files ~10 ms and found nothing. The collector still runs.
    gc.set_threshold(50_000, 20, 20)
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`modelsync status | head`): nothing to save
            pass
    os._exit(code)


# --------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, output: Output) -> int:
    root = Path(args.project or ".").absolute()
    target = root / _runtime.MANIFEST_NAME
    if target.exists():
        raise UsageError(f"{target} already exists", hint="edit it, or remove it to start over")
    root.mkdir(parents=True, exist_ok=True)
    target.write_text(TEMPLATE, encoding="utf-8")
    output.info(f"wrote {target}; declare your models there, then run `modelsync lock`")
    return 0


def cmd_lock(args: argparse.Namespace, output: Output) -> int:
    from .. import locker, lockfile, manifest, sources
    from ..errors import StaleLockError
    from ..store import Store

    root = _runtime.find_project(args.project, markers=(_runtime.MANIFEST_NAME,))
    spec = manifest.load(root / _runtime.MANIFEST_NAME)
    lock_path = root / _runtime.LOCK_NAME
    old_text = lockfile.read_text(lock_path)
    old = lockfile.loads(old_text, lock_path.name) if old_text is not None else None

    if args.check:
        fresh, stale = locker.is_fresh(spec, old, old_text)
        if args.json:
            output.json({"fresh": fresh, "stale_models": stale})
        if not fresh:
            what = f" (models: {', '.join(stale)})" if stale else ""
            raise StaleLockError(f"models.lock is out of date with models.toml{what}", hint="run `modelsync lock` and commit models.lock")
        output.info("models.lock is up to date")
        return 0

    upgrade: bool | frozenset[str] = False
    if args.upgrade is not None:
        unknown = [name for name in args.upgrade if spec.model(name) is None]
        if unknown:
            from ..errors import ModelNotFoundError

            raise ModelNotFoundError(unknown[0], [m.name for m in spec.models], where="models.toml")
        upgrade = frozenset(args.upgrade) if args.upgrade else True
    reporter = output.reporter("locking")
    ctx = sources.Context(store=Store(), project_root=root, jobs=_env.jobs(args.jobs))
    todo = locker.pending(spec, old, upgrade)
    if todo:
        output.info("resolving " + ", ".join(f"{unit.name}[{unit.variant}]" if unit.variant else unit.name for unit in todo))
    reporter.start(0, 0)
    ctx.progress = reporter.advance
    try:
        outcome = locker.lock(spec, old, ctx, upgrade=upgrade)
    finally:
        reporter.finish()
    written = lockfile.write(lock_path, outcome.lock)
    if args.json:
        output.json({"written": written, "resolved": list(outcome.resolved), "kept": list(outcome.kept), "removed": list(outcome.removed)})
    elif written:
        parts = [f"locked {len(outcome.lock.models)} model(s)"]
        if outcome.resolved:
            parts.append("pinned: " + ", ".join(outcome.resolved))
        if outcome.removed:
            parts.append("removed: " + ", ".join(outcome.removed))
        output.info("; ".join(parts))
    else:
        output.info("models.lock is up to date")
    return 0


def cmd_sync(args: argparse.Namespace, output: Output) -> int:
    from .. import uptodate

    markers = (_runtime.LOCK_NAME, _runtime.MANIFEST_NAME) if args.frozen else (_runtime.MANIFEST_NAME,)
    root = _runtime.find_project(args.project, markers=markers)
    _env.jobs(args.jobs)  # a bad value is an error even when there is nothing to do
    _env.check_transfer_settings()
    if not args.dry_run:
        state = uptodate.check(root, frozen=args.frozen, groups=tuple(args.group), environment=args.env, all_variants=args.all_variants)
        if state is not None:  # nothing to do, known from the state alone
            if args.json:
                output.json(uptodate.noop_report(root, state))
            else:
                output.info(f"{len(state.get('models', {}))} model(s) up to date in {root / state['view']}")
            return 0

    from ..syncer import SyncOptions, sync_project

    options = SyncOptions(
        locked=args.locked,
        frozen=args.frozen,
        offline=True if args.offline else None,
        dry_run=args.dry_run,
        groups=tuple(args.group),
        jobs=args.jobs,
        environment=args.env,
        all_variants=args.all_variants,
        may_fork=True,  # this process is ours: many small files may go to worker processes
    )
    report = sync_project(root, options, reporter=output.reporter("syncing"))
    for warning in report.warnings:
        output.warn(warning)
    if args.json:
        output.json(report.to_json())
        return 0
    plan = report.plan
    if args.dry_run:
        for name in report.lock_pending:
            output.data(f"lock   {name}  (new or changed in models.toml)")
        for item in plan.fetch:
            output.data(f"fetch  {item.model}/{item.file.path}  {human_size(item.file.size)}")
        for item in plan.link:
            output.data(f"place  {item.model}/{item.file.path}")
        for key in plan.remove:
            output.data(f"remove {key}")
        if plan.empty and not report.lock_pending:
            output.info("nothing to do: the view matches models.lock")
        return 0
    if report.lock_written:
        output.info("updated models.lock")
    if plan.empty:
        output.info(f"{len(plan.models)} model(s) up to date in {report.view_root}")
    else:
        outcome = report.outcome
        fetched = human_size(outcome.fetched_bytes) if outcome else "0 B"
        output.info(f"synced {len(plan.models)} model(s) into {report.view_root} (fetched {fetched}, placed {len(plan.link)} file(s))")
    return 0


def cmd_status(args: argparse.Namespace, output: Output) -> int:
    from ..status import model_status

    root = _runtime.find_project(args.project, markers=(_runtime.LOCK_NAME, _runtime.MANIFEST_NAME))
    report = model_status(root, environment=args.env)
    if args.json:
        output.json(report)
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("model", "variant", "group", "files", "size", "status"):
        table.add_column(column, justify="right" if column in ("files", "size") else "left")
    colors = {"synced": "green", "cached": "cyan", "partial": "yellow", "missing": "red", "corrupt": "red"}
    for row in report["models"]:
        color = colors.get(row["status"], "white")
        table.add_row(
            row["name"], row["variant"] or "-", ",".join(row["groups"]), str(row["files"]), human_size(row["size"]), f"[{color}]{row['status']}[/]"
        )
    output.out.print(table)
    if report["lock_stale"]:
        output.warn("models.lock is out of date with models.toml: run `modelsync lock`")
    return 0


def cmd_detect(args: argparse.Namespace, output: Output) -> int:
    from .. import hardware, markers

    facts = hardware.detect(need=frozenset(markers.FACT_TYPES))
    if args.json:
        output.json(facts.to_json())
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("fact", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", no_wrap=True)  # whole, even in an 80-column log: it says where a value came from
    for name in markers.FACT_TYPES:
        fact = facts.fact(name)
        value = "-" if fact is None else _show(fact.value)
        table.add_row(name, value, fact.source if fact else "[dim]not on this machine[/]")
    output.out.print(table)
    return 0


def _show(value: object) -> str:
    if isinstance(value, (set, frozenset, list, tuple)):
        return " ".join(sorted(str(item) for item in value)) or "(none)"
    return str(value)


def cmd_explain(args: argparse.Namespace, output: Output) -> int:
    from ..explain import explain

    root = _runtime.find_project(args.project, markers=(_runtime.LOCK_NAME, _runtime.MANIFEST_NAME))
    report = explain(root, args.name, args.env)
    if args.json:
        output.json(report)
        return 0
    where = f"environment {report['environment']!r}" if report["environment"] else "this machine"
    output.data(f"model {report['model']} on {where}:")
    if not report["variants"]:
        output.data("  no variants: every machine gets the same files")
    for variant in report["variants"]:
        mark = "->" if variant["name"] == report["winner"] else "  "
        verdict = "holds" if variant["holds"] else "does not hold"
        when = f"when {variant['when']}" if variant["when"] else "fallback (no `when`)"
        output.data(f"{mark} {variant['name']}: {when}: {verdict}" if variant["when"] else f"{mark} {variant['name']}: {when}")
        for clause in variant["clauses"]:
            seen = "missing on this machine" if clause["value"] is None else f"{clause['fact']} = {_show(clause['value'])}"
            source = f" ({clause['source']})" if clause.get("source") else ""
            output.data(f"      {'true ' if clause['result'] else 'false'}  {clause['text']}   [{seen}{source}]")
    if report["winner"]:
        output.data(f"selected: {report['winner']}")
    elif report["variants"]:
        output.data("selected: none: no variant fits and there is no fallback")
    return 0


def cmd_path(args: argparse.Namespace, output: Output) -> int:
    output.data(str(_runtime.path(args.name, args.file, args.project)))
    return 0


def cmd_pyinstaller_args(args: argparse.Namespace, output: Output) -> int:
    import warnings

    from ..pyinstaller import command_line_args

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = command_line_args(args.project, args.bundle)
    for warning in caught:
        output.warn(str(warning.message))
    for line in lines:
        output.data(line)
    return 0


COMMANDS = {
    "init": cmd_init,
    "lock": cmd_lock,
    "sync": cmd_sync,
    "status": cmd_status,
    "path": cmd_path,
    "detect": cmd_detect,
    "explain": cmd_explain,
    "pyinstaller-args": cmd_pyinstaller_args,
}


if __name__ == "__main__":
    sys.exit(main())
