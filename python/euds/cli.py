"""The ``euds`` command line: ``score``, ``select`` and ``info``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from euds._core import EudsError
from euds._version import __version__
from euds.io import DEFAULT_BATCH_SIZE
from euds.signals import SIGNALS
from euds.signals.information import MODES
from euds.tokenizer import DEFAULT_MAX_TOKENS

log = logging.getLogger("euds")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="euds: %(message)s",
        stream=sys.stderr,
    )
    if args.threads:
        from euds import set_num_threads

        set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except (ValueError, IndexError, EudsError, OSError) as e:
        print(f"euds {args.command}: error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="euds", description="Entropy-based unsupervised data selection"
    )
    p.add_argument("--version", action="version", version=f"euds {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    common.add_argument("--threads", type=int, default=0, help="threads for the C++ kernels")
    sub = p.add_subparsers(dest="command", required=True)

    reading = argparse.ArgumentParser(add_help=False)
    reading.add_argument(
        "--text-field", default="text", help="field holding the text (default: text)"
    )
    reading.add_argument(
        "--id-field", default="id", help="field holding the record id; row numbers when absent"
    )
    reading.add_argument(
        "--format",
        choices=["jsonl", "csv", "tsv", "parquet"],
        help="input format (default: from the name)",
    )

    s = sub.add_parser("score", parents=[common, reading], help="score every record of a file")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", type=Path, required=True, help="score table (.parquet)")
    s.add_argument(
        "--signals",
        default="information",
        help=f"comma-separated subset of {','.join(SIGNALS)} (default: information)",
    )
    s.add_argument("--information-mode", choices=MODES, default="sample")
    s.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    s.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="records per batch")
    s.add_argument("--tokenizer", help="a tokenizer.json to use instead of SmolLM2's")
    s.add_argument(
        "--strict", action="store_true", help="fail on the first bad record instead of flagging it"
    )
    s.set_defaults(func=_cmd_score)

    sel = sub.add_parser(
        "select", parents=[common, reading], help="keep the records inside an entropy interval"
    )
    sel.add_argument("input", type=Path)
    sel.add_argument("--scores", type=Path, required=True, help="score table from `euds score`")
    sel.add_argument(
        "-o", "--output", type=Path, required=True, help="kept records (input's format)"
    )
    how = sel.add_mutually_exclusive_group(required=True)
    how.add_argument("--budget", type=float, help="share of records to keep, e.g. 0.16")
    how.add_argument(
        "--interval",
        action="append",
        metavar="SIGNAL=LO:HI",
        help="an interval per signal (quantiles unless --absolute); repeat for several",
    )
    sel.add_argument("--signals", help="comma-separated signals for --budget (default: all scored)")
    sel.add_argument("--method", choices=["single", "intersect", "mean-rank"])
    sel.add_argument(
        "--position", type=float, default=0.5, help="band position, 0 = lowest entropies"
    )
    sel.add_argument("--absolute", action="store_true", help="--interval gives score values")
    sel.add_argument("--on-nonfinite", choices=["raise", "drop"], default="raise")
    sel.add_argument("--seed", type=int, default=0, help="seed of the tie-break among equal scores")
    sel.set_defaults(func=_cmd_select)

    i = sub.add_parser("info", parents=[common], help="print how this build was compiled")
    i.set_defaults(func=lambda a: print(json.dumps(_info(), indent=2)))
    return p


def _info() -> dict:
    from euds import build_info

    return build_info()


def _cmd_score(args: argparse.Namespace) -> int:
    from euds.pipeline import ScoreConfig, score_file

    config = ScoreConfig(
        signals=tuple(s.strip() for s in args.signals.split(",") if s.strip()),
        information_mode=args.information_mode,
        max_tokens=args.max_tokens,
        text_field=args.text_field,
        id_field=args.id_field or None,
        batch_size=args.batch_size,
        strict=args.strict,
        format=args.format,
        tokenizer=args.tokenizer,
    )
    summary = score_file(args.input, args.output, config)
    log.info(
        "scored %d records in %.1f s (%.0f records/s; tokenising %.1f s) -> %s",
        summary.records,
        summary.seconds,
        summary.records_per_second(),
        summary.tokenize_seconds,
        summary.output,
    )
    if summary.flags or summary.unscored:
        log.info(
            "flags: %s; unscored (NaN): %d; truncated: %d",
            summary.flags,
            summary.unscored,
            summary.truncated,
        )
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


def _cmd_select(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from euds.cache import atomic_write_bytes, sha256_file
    from euds.io import write_selected
    from euds.pipeline import read_score_metadata
    from euds.select import select

    meta = read_score_metadata(args.scores)
    input_sha = sha256_file(args.input)
    if meta.get("input", {}).get("sha256") not in (None, input_sha):
        raise ValueError(
            f"{args.scores} was computed on another file (sha256 {meta['input']['sha256'][:12]}…, "
            f"{args.input} has {input_sha[:12]}…): rescore it with `euds score`"
        )
    table = pq.read_table(args.scores)
    signals = [s.strip() for s in args.signals.split(",")] if args.signals else None
    selection = select(
        table,
        signals=signals,
        method=args.method,
        budget=args.budget,
        position=args.position,
        intervals=_parse_intervals(args.interval) if args.interval else None,
        absolute=args.absolute,
        on_nonfinite=args.on_nonfinite,
        seed=args.seed,
    )
    config = meta.get("config", {})
    written = write_selected(
        args.input,
        args.output,
        selection.keep,
        format=args.format or config.get("format"),
        gzip_output=str(args.output).lower().endswith(".gz"),
    )
    counts = selection.counts
    if written != counts["kept"] or counts["kept"] + counts["dropped"] != counts["input"]:
        raise EudsError(f"selection bookkeeping is off: wrote {written}, counts {counts}")

    out = Path(args.output)
    decisions_path = out.with_name(out.name + ".decisions.parquet")
    decisions = pa.table(
        {
            "id": table.column("id"),
            "kept": pa.array(selection.keep),
            "reason": pa.array(selection.reason.astype(str)),
        }
    )
    from euds.cache import atomic_path

    with atomic_path(decisions_path) as tmp:
        pq.write_table(decisions, tmp)
    manifest = {
        "euds_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ["euds", *sys.argv[1:]]
        if sys.argv and Path(sys.argv[0]).name == "euds"
        else None,
        "input": {"path": str(args.input), "sha256": input_sha, "records": counts["input"]},
        "scores": {"path": str(args.scores), "sha256": sha256_file(args.scores), "config": config},
        "selection": selection.summary(),
        "output": {"path": str(out), "sha256": sha256_file(out), "records": written},
        "decisions": {"path": str(decisions_path), "sha256": sha256_file(decisions_path)},
    }
    manifest_path = out.with_name(out.name + ".manifest.json")
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=2, default=_jsonable).encode())
    log.info(
        "kept %d of %d records (%.2f%%), dropped %d %s -> %s (manifest %s)",
        counts["kept"],
        counts["input"],
        100.0 * counts["kept"] / max(counts["input"], 1),
        counts["dropped"],
        counts["dropped_by_reason"],
        out,
        manifest_path,
    )
    return 0


def _jsonable(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


if __name__ == "__main__":
    sys.exit(main())
