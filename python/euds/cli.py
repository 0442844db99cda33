"""The ``euds`` command line: ``score``, ``select``, ``run``, ``report``, ``bench``,
``finetune``, ``experiment``, ``tune``, ``models prepare`` / ``models info`` and ``info``.

One module on purpose (it is longer than the others for that): every command's parser, its
translation into the typed API and the one rule of how a failure is reported (one line; exit 2
for a bad input, argument or output, 1 for an internal error, 130 / 143 when interrupted or
terminated). The options of the configurations are built from their fields
(:class:`~euds.config.ScoreConfig`, :class:`~euds.config.SelectConfig`,
:class:`~euds.research.finetune.FinetuneConfig`), never written out here a second time."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from euds._core import EudsError
from euds._version import __version__
from euds.config import (
    GENERATIVE,
    INFORMATION,
    READING,
    SCORING,
    SEMANTIC,
    ScoreConfig,
    SelectConfig,
)
from euds.signals import SIGNALS

log = logging.getLogger("euds")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="euds: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # faiss's loader reports at INFO which SIMD build it tried and failed to import.
    logging.getLogger("faiss").setLevel(logging.WARNING)
    # One line on stderr for every failure, never a traceback unless --debug: exit 2 for a
    # bad input, argument or output (and anything euds itself reports), 1 for an internal
    # error, 130 when interrupted, 143 when terminated (SIGTERM: schedulers, `timeout`), which
    # unwinds like Ctrl-C does: locks released, temporary files removed.
    previous = _on_sigterm()
    try:
        if args.threads:
            from euds import set_num_threads

            set_num_threads(args.threads)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"euds {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"euds {args.command}: terminated", file=sys.stderr)
        return 143
    except (ValueError, IndexError, EudsError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"euds {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        print(
            f"euds {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
            "(run again with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so that every ``finally`` and context
    manager runs, as for Ctrl-C (a ``BaseException``, so no ``except Exception`` swallows it)."""


def _on_sigterm() -> Any:
    """Turns SIGTERM into :class:`Terminated` while a command runs (main thread only); returns
    the handler to put back."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    return signal.signal(signal.SIGTERM, terminate)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="euds", description="Entropy-based unsupervised data selection"
    )
    p.add_argument("--version", action="version", version=f"euds {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    common.add_argument("--threads", type=int, default=0, help="threads for kernels and models")
    common.add_argument(
        "--debug", action="store_true", help="print the Python traceback of an error"
    )
    sub = p.add_subparsers(dest="command", required=True)

    reading = argparse.ArgumentParser(add_help=False)
    _add_config_options(reading, (READING,))

    s = sub.add_parser("score", parents=[common, reading], help="score every record of a file")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", type=Path, required=True, help="score directory")
    _add_scoring_options(s)
    s.add_argument(
        "--overwrite", action="store_true", help="replace a score directory of another run"
    )
    _add_engine_options(s, actors=True)
    s.set_defaults(func=_cmd_score)

    sel = sub.add_parser(
        "select", parents=[common, reading], help="keep the records inside an entropy interval"
    )
    sel.add_argument("input", type=Path)
    sel.add_argument("--scores", type=Path, required=True, help="score directory from `euds score`")
    sel.add_argument(
        "-o", "--output", type=Path, required=True, help="kept records (input's format)"
    )
    _add_selection_options(sel, budget_required=True)
    sel.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file that is not a selection euds wrote",
    )
    _add_engine_options(sel, actors=False)
    sel.set_defaults(func=_cmd_select)

    r = sub.add_parser(
        "run",
        parents=[common, reading],
        help="score (reusing scores), select and report: the main job",
    )
    r.add_argument("input", type=Path)
    r.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    _add_scoring_options(r)
    r.add_argument("--overwrite", action="store_true", help="replace scores of another run")
    _add_selection_options(r, budget_required=True, alone=False)
    _add_engine_options(r, actors=True)
    r.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", parents=[common], help="an HTML report of a score directory")
    rep.add_argument("scores", type=Path, help="score directory")
    rep.add_argument("-o", "--output", type=Path, required=True, help="report.html")
    rep.add_argument(
        "--selection", type=Path, help="a selection's .manifest.json (shades its interval)"
    )
    rep.add_argument(
        "--input",
        type=Path,
        help="the scored input, if it moved (for example texts; its sha256 must match the "
        "score directory's manifest)",
    )
    rep.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file that is not a report euds wrote",
    )
    rep.set_defaults(func=_cmd_report)

    b = sub.add_parser("bench", parents=[common, reading], help="measure this machine on your data")
    b.add_argument("input", type=Path)
    b.add_argument("--limit", type=int, default=1000, help="records to measure on (default 1000)")
    b.add_argument("--signals", default=",".join(SIGNALS))
    b.add_argument("--json", type=Path, help="also write the figures as JSON")
    b.add_argument(
        "--overwrite", action="store_true", help="replace a --json file that euds did not write"
    )
    b.set_defaults(func=_cmd_bench)

    f = sub.add_parser("finetune", parents=[common], help="fine-tune an encoder and evaluate it")
    f.add_argument(
        "--train", type=Path, required=True, help="JSONL (text, label) or SQuAD v1.1 JSON"
    )
    f.add_argument("--eval", type=Path, required=True)
    from euds.research.finetune import FinetuneConfig

    _add_fields(f, FinetuneConfig, "ft_")
    f.add_argument("-o", "--output", type=Path, help="metrics JSON")
    f.add_argument(
        "--overwrite", action="store_true", help="replace an output file that euds did not write"
    )
    f.set_defaults(func=_cmd_finetune)

    x = sub.add_parser(
        "experiment", parents=[common], help="which selection beats random (probe + fine-tunes)"
    )
    x.add_argument(
        "configs",
        type=Path,
        nargs="+",
        metavar="CONFIG",
        help="experiment CONFIG.toml files; the default is chosen on the dev sets of all of them",
    )
    x.add_argument(
        "--seeds",
        type=lambda v: [int(s) for s in v.split(",")],
        help="run only these of the configs' seeds, e.g. 0 or 0,1 (all by default); the data "
        "prepared and scored are always those of every seed and finished work is cached, so "
        "growing the list later only adds the new ones",
    )
    x.add_argument(
        "--no-finetune",
        action="store_true",
        help="screen with the probe only (seconds per subset); skip the configs' fine-tunes",
    )
    x.add_argument(
        "--finetune-only",
        type=lambda v: {s.strip() for s in v.split(",") if s.strip()},
        metavar="NAME,...",
        help="train only these configs' fine-tunes (the others report what is cached; the "
        "default is still chosen from every config), to share the work between processes",
    )
    x.add_argument(
        "--finetune-reverse",
        action="store_true",
        help="walk each fine-tune item's seeds from the last (a second process on the same "
        "item meets the first in the middle)",
    )
    x.set_defaults(func=_cmd_experiment)

    t = sub.add_parser("tune", parents=[common], help="choose the interval at a budget (proxy)")
    t.add_argument("--scores", type=Path, required=True, help="score directory of the pool")
    t.add_argument("--pool", type=Path, required=True, help="the pool (JSONL with labels)")
    t.add_argument("--dev", type=Path, required=True, help="a small labelled dev split (JSONL)")
    t.add_argument("--budget", type=float, required=True)
    t.add_argument("--label-field", default="label")
    t.set_defaults(func=_cmd_tune)

    m = sub.add_parser("models", parents=[common], help="prepare or inspect the cached models")
    msub = m.add_subparsers(dest="models_command", required=True)
    mp = msub.add_parser(
        "prepare",
        parents=[common],
        help="export the models to ONNX (once)",
        description="Exports SmolLM2 and all-MiniLM-L6-v2 into the cache, or, given PATHs, "
        "your own models: a Hugging Face causal-LM folder or GGUF file (for --model) or a "
        "sentence-transformers folder (for --embedder). Prints each cache folder.",
    )
    mp.add_argument("paths", nargs="*", metavar="PATH", help="your own model folder or GGUF")
    mp.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    mp.add_argument("--verify", action="store_true", help="check every cached file's sha256")
    mp.add_argument("--int8", action="store_true", help="also build the LM's int8 graphs")
    mp.add_argument("--reduced", action="store_true", help="also build the in-graph reduction")
    mp.set_defaults(func=_cmd_models_prepare)
    mi = msub.add_parser("info", parents=[common], help="print the cache entries' manifests")
    mi.set_defaults(func=_cmd_models_info)

    i = sub.add_parser("info", parents=[common], help="print how this build was compiled")
    i.set_defaults(func=_cmd_info)
    return p


def _add_engine_options(p: argparse.ArgumentParser, *, actors: bool) -> None:
    e = p.add_argument_group("engine")
    e.add_argument("--engine", choices=["local", "ray"], default="local")
    e.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    if actors:
        e.add_argument("--actors", type=int, default=1, help="Ray actors holding the models")
        e.add_argument("--cpus-per-actor", type=float, default=1.0)
        e.add_argument("--gpus-per-actor", type=float, default=0.0)


def _add_scoring_options(s: argparse.ArgumentParser) -> None:
    _add_config_options(s, (SCORING, INFORMATION, GENERATIVE, SEMANTIC))


def _add_config_options(p: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """The options of :class:`euds.config.ScoreConfig`'s fields in ``groups``, read from the
    fields themselves (their metadata holds help, flag and choices)."""
    made: dict[str, Any] = {}
    for f in fields(ScoreConfig):
        cli = f.metadata.get("cli")
        if not cli or cli["group"] not in groups:
            continue
        name = cli["group"]
        if name not in made:
            made[name] = p if name in (SCORING, READING) else p.add_argument_group(name)
        target = made[name]
        kwargs: dict[str, Any] = {"dest": f.name, "help": cli["help"], "default": f.default}
        if "action" in cli:
            kwargs["action"] = cli["action"]
        elif isinstance(f.default, bool):
            kwargs["action"] = "store_true"
        else:
            named = cli.get("type")
            kwargs["type"] = _OPTION_TYPES.get(named, named or _plain(f.default))
            if "choices" in cli:
                kwargs["choices"] = cli["choices"]
        target.add_argument(cli.get("flag", "--" + f.name.replace("_", "-")), **kwargs)


def _add_fields(p: argparse.ArgumentParser, cls: Any, prefix: str) -> None:
    """A flag per field of the configuration dataclass ``cls`` that has a command-line form
    (the field's metadata: help, choices, type), its value stored as ``prefix + name``."""
    for f in fields(cls):
        cli = f.metadata.get("cli")
        if not cli:
            continue
        kwargs: dict[str, Any] = {"dest": prefix + f.name, "default": f.default}
        kwargs["help"] = cli["help"] + ("" if f.default is None else f" (default {f.default})")
        if isinstance(f.default, bool):
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = cli.get("type") or _plain(f.default)
            kwargs["metavar"] = f.name.upper()
            if "choices" in cli:
                kwargs["choices"] = cli["choices"]
                del kwargs["metavar"]
        p.add_argument(cli.get("flag", "--" + f.name.replace("_", "-")), **kwargs)


def _fields_from(args: argparse.Namespace, cls: Any, prefix: str) -> dict[str, Any]:
    return {f.name: getattr(args, prefix + f.name) for f in fields(cls) if f.metadata.get("cli")}


def _plain(default: Any) -> Callable[[str], Any]:
    return str if default is None else type(default)


def _signal_list(value: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(",") if s.strip())


# Option types named in ScoreConfig's metadata.
_OPTION_TYPES: dict[Any, Callable[[str], Any]] = {
    "signals": _signal_list,
    "optional": lambda value: value or None,  # an empty value means "none"
}


def _add_selection_options(
    sel: argparse.ArgumentParser, *, budget_required: bool, alone: bool = True
) -> None:
    """The options of :class:`euds.config.SelectConfig`'s fields, read from the fields'
    metadata. ``alone`` (the select command) uses each field's short flag (--signals, --seed);
    `euds run` keeps those for scoring and takes the ``run_flag`` form (--select-signals,
    --tie-seed)."""
    from euds.selection import METHODS

    groups: dict[str, Any] = {}
    how = sel.add_mutually_exclusive_group(required=budget_required)
    for f in fields(SelectConfig):
        cli = f.metadata["cli"]
        flag = cli.get("flag", "--" + f.name.replace("_", "-"))
        names = (
            (flag, cli["run_flag"]) if alone and "run_flag" in cli else (cli.get("run_flag", flag),)
        )
        kwargs: dict[str, Any] = {"dest": "select_" + f.name, "help": cli["help"]}
        if isinstance(f.default, bool):
            kwargs["action"] = "store_true"
        else:
            kwargs["default"] = f.default
            kwargs["type"] = _SELECT_TYPES.get(cli.get("type"), _plain(f.default))
            if f.name == "budget":
                kwargs["type"] = float
            if "metavar" in cli:
                kwargs["metavar"] = cli["metavar"]
            if f.name == "method":
                kwargs["choices"] = METHODS
            elif "choices" in cli:
                kwargs["choices"] = cli["choices"]
        if f.name == "intervals":
            kwargs["action"] = "append"
            kwargs.pop("default")
        if f.name in ("budget", "intervals"):
            how.add_argument(*names, **kwargs)
            continue
        group = cli["group"]
        if group not in groups:
            groups[group] = sel if group == "selection" else sel.add_argument_group(group)
        groups[group].add_argument(*names, **kwargs)


def _select_config(args: argparse.Namespace) -> SelectConfig:
    values = {f.name: getattr(args, "select_" + f.name) for f in fields(SelectConfig)}
    if values["intervals"] is not None:
        values["intervals"] = _parse_intervals(values["intervals"])
    if isinstance(values["position"], str):
        values["position"] = _parse_position(values["position"])
    if values["tails"] is not None:
        values["tails"] = _parse_tails(values["tails"])
    if values["fences"] is not None:
        try:
            values["fences"] = float(values["fences"])
        except ValueError:
            raise ValueError(
                f"--fences {values['fences']!r} is not a number (Tukey's k, e.g. 1.5)"
            ) from None
    return SelectConfig(**values)


def _score_config(args: argparse.Namespace) -> ScoreConfig:
    values = {f.name: getattr(args, f.name) for f in fields(ScoreConfig) if f.metadata.get("cli")}
    return ScoreConfig(**values, threads=args.threads or None)


def _engine(args: argparse.Namespace):
    if args.engine == "ray":
        from euds.engines.ray import RayEngine

        return RayEngine(
            args.address,
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            gpus_per_actor=args.gpus_per_actor,
        )
    from euds.engines.local import LocalEngine

    return LocalEngine()


def _cmd_score(args: argparse.Namespace) -> int:
    from euds.engines import driver

    summary = driver.score(
        args.input,
        args.output,
        _score_config(args),
        _engine(args),
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    _log_summary(summary)
    return 0


def _command_line() -> list[str] | None:
    """The command as typed, for manifests (None when euds runs inside another program)."""
    return ["euds", *sys.argv[1:]] if sys.argv and Path(sys.argv[0]).name == "euds" else None


def _log_summary(summary) -> None:
    if summary.reused:
        log.info("%d records already scored in %s", summary.records, summary.output)
        return
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary.stage_seconds.items())
    log.info(
        "scored %d records (%d now%s) in %.1f s, %.1f records/s; %s -> %s",
        summary.records,
        summary.scored_now,
        f", resumed after {summary.resumed_from}" if summary.resumed_from else "",
        summary.seconds,
        summary.records_per_second(),
        stages,
        summary.output,
    )
    if summary.flags or any(summary.unscored.values()):
        log.info(
            "flags: %s; unscored (NaN): %s; truncated: %d",
            summary.flags,
            summary.unscored,
            summary.truncated,
        )


def _parse_position(text: str) -> float | dict[str, float]:
    """``--position``: ``0.5`` or ``information=0.7,generative=0.4``."""
    try:
        if "=" not in text:
            return float(text)
        out: dict[str, float] = {}
        for item in text.split(","):
            name, sep, value = item.partition("=")
            if not sep or name.strip() in out:
                raise ValueError
            out[name.strip()] = float(value)
        return out
    except ValueError:
        raise ValueError(
            f"--position {text!r} is not a number or SIGNAL=P,... "
            "(e.g. 0.5 or information=0.7,generative=0.4)"
        ) from None


def _parse_tails(text: str) -> tuple[float, float]:
    """``--tails LO:HI``."""
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(lo), float(hi)
    except ValueError:
        raise ValueError(f"--tails {text!r} is not LO:HI (e.g. 0.05:0.95)") from None


# Option types named in SelectConfig's metadata; the rest are parsed by _select_config, so that
# a malformed value is the command's one-line error (exit 2) like any other bad argument.
_SELECT_TYPES: dict[Any, Callable[[str], Any]] = {
    "signals": _signal_list,
    "position": str,
    "tails": str,
    "fences": str,
    "interval": str,
}


def _cmd_select(args: argparse.Namespace) -> int:
    from euds.subset import select_file

    engine = None
    if args.engine == "ray":
        from euds.engines.ray import RayEngine

        engine = RayEngine(args.address)
    result = select_file(
        args.input,
        args.scores,
        args.output,
        _select_config(args),
        format=args.format,
        command=_command_line(),
        engine=engine,
        overwrite=args.overwrite,
    )
    counts = result.selection.counts
    log.info(
        "kept %d of %d records (%.2f%%), dropped %d %s -> %s (manifest %s)",
        counts["kept"],
        counts["input"],
        100.0 * counts["kept"] / max(counts["input"], 1),
        counts["dropped"],
        counts["dropped_by_reason"],
        result.output,
        result.manifest,
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from euds.workflow import run

    result = run(
        args.input,
        args.output,
        _score_config(args),
        engine=_engine(args),
        overwrite=args.overwrite,
        progress=not args.quiet,
        command=_command_line(),
        selection=_select_config(args),
    )
    _log_summary(result.summary)
    counts = result.selected.selection.counts
    print(
        f"selected {counts['kept']:,} of {counts['input']:,} records -> {result.selected.output}\n"
        f"manifest: {result.selected.manifest}\n"
        f"report:   {result.report}\n"
        f"scores:   {result.scores}"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from euds.report import write_report

    path = write_report(
        args.scores,
        args.output,
        selection_manifest=args.selection,
        input_path=args.input,
        overwrite=args.overwrite,
    )
    print(f"report: {path}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from euds.bench import bench_file
    from euds.output import Protected, check_output, write_marked

    protected = Protected.of(inputs=[args.input])
    if args.json:  # before the measurements, not after them
        check_output(args.json, protected, overwrite=args.overwrite)
    result = bench_file(
        args.input,
        limit=args.limit,
        signals=tuple(s.strip() for s in args.signals.split(",") if s.strip()),
        text_field=args.text_field,
        id_field=args.id_field or None,
        format=args.format,
        threads=args.threads or None,
    )
    print(result.table())
    if args.json:
        data = json.dumps(result.as_dict(), indent=2).encode()
        write_marked(args.json, data, protected, overwrite=args.overwrite)
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from euds.research.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        **_fields_from(args, FinetuneConfig, "ft_"), threads=args.threads or None
    )
    metrics = finetune(args.train, args.eval, config, output=args.output, overwrite=args.overwrite)
    keys = ("train_steps", "accuracy", "macro_f1", "exact_match", "f1", "wall_seconds")
    print(json.dumps({k: metrics[k] for k in keys if k in metrics}))
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from euds.research.experiment import ExperimentConfig, run_experiments

    configs = [ExperimentConfig.from_toml(path) for path in args.configs]
    for config in configs:
        if args.no_finetune:
            config.confirm = []
        if args.threads:
            # The fine-tunes' thread count is part of their cache key, as
            # experiments/confirm_clean.py sets it: a run with the same --threads finds its runs.
            config.finetune = {**config.finetune, "threads": args.threads}
        config.check()
    names = {c.name for c in configs}
    if args.finetune_only and not args.finetune_only <= names:
        raise ValueError(
            f"--finetune-only names {sorted(args.finetune_only - names)}, not among "
            f"the configs {sorted(names)}"
        )
    summaries = run_experiments(
        configs,
        seeds=args.seeds,
        finetune_only=args.finetune_only,
        reverse=args.finetune_reverse,
    )
    for summary in summaries:
        print(f"{summary['name']}: {summary['output']}/results.md")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from euds.tuning import tune_score_dir

    choice = tune_score_dir(args.scores, args.pool, args.dev, args.budget, args.label_field)
    print(json.dumps({k: v for k, v in choice.items() if k != "trials"}, indent=2))
    return 0


def _cmd_models_prepare(args: argparse.Namespace) -> int:
    from euds.model_sources import source_for
    from euds.models import LmFiles, prepare_embedder, prepare_lm, prepare_source

    if args.paths:
        sources = [source_for(p) for p in args.paths]  # every path checked before any export
        prepared = [(s, prepare_source(s, force=args.force, verify=args.verify)) for s in sources]
    else:
        prepared = [(None, prepare_lm(force=args.force, verify=args.verify).folder)]
        prepared.append((None, prepare_embedder(force=args.force, verify=args.verify).folder))
    for source, folder in prepared:
        if source is None or source.role == "lm":
            files = LmFiles(folder)
            for names, wanted in (
                (("int8", "int8-block"), args.int8),
                (("reduced",), args.reduced),
            ):
                for name in names if wanted else ():
                    files.variant(name)
            if files.packing_off:
                log.info("%s runs padded batches: %s", folder, files.packing_off)
        print(folder)
    return 0


def _cmd_models_info(args: argparse.Namespace) -> int:
    from euds.models import embedder_files, lm_files

    out = {}
    for name, get in (("lm", lm_files), ("embedder", embedder_files)):
        try:
            files = get(prepare=False)
            out[name] = {"folder": str(files.folder), **files.manifest()}
        except EudsError as e:
            out[name] = {"prepared": False, "error": str(e)}
    print(json.dumps(out, indent=2))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from euds import build_info

    print(json.dumps(build_info(), indent=2))
    return 0


def _parse_intervals(items: list[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        lo, sep2, hi = rest.partition(":")
        try:
            if not (sep and sep2):
                raise ValueError
            out[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise ValueError(
                f"--interval {item!r} is not SIGNAL=LO:HI (e.g. information=0.1:0.9)"
            ) from None
    return out


if __name__ == "__main__":
    sys.exit(main())
