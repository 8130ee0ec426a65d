"""`slatestream evaluate`: offline (loo) and prequential evaluation, JSON on stdout."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `evaluate` subcommand."""
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on ml-100k (loo | prequential) and print JSON",
        description="loo: last item test, second-to-last validation, full ranking over all "
        "items, already-seen items not excluded unless --exclude-seen (RecBole's protocol). "
        "prequential: rank before each event, then learn from it.",
    )
    p.add_argument("--dataset", default="ml-100k", choices=["ml-100k"])
    p.add_argument("--protocol", default="loo", choices=["loo", "prequential"])
    p.add_argument(
        "--model",
        default="gru",
        help="gru | bayes-gru | pop | river-mf | river-lr (comma-separated for prequential)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    p.add_argument(
        "--epochs", type=int, default=None, help="loo: max epochs (early stopping; default 100)"
    )
    p.add_argument(
        "--patience", type=int, default=None, help="loo: epochs without improvement (default 10)"
    )
    p.add_argument("--one-pass", action="store_true", help="loo: one streaming pass (trainer)")
    p.add_argument("--exclude-seen", action="store_true", help="loo: drop the user's seen items")
    p.add_argument("--dim", type=int, default=64, help="GRU item embedding size")
    p.add_argument("--hidden", type=int, default=128, help="GRU hidden size")
    p.add_argument("--lr", type=float, default=None, help="GRU learning rate (default 2e-3)")
    p.add_argument("--step-every", type=int, default=None, help="trainer: events per step")
    p.add_argument("--batch-users", type=int, default=None, help="trainer: users per step")
    p.add_argument("--max-events", type=int, default=None, help="prequential: stop early")
    p.add_argument(
        "--bucket", type=int, default=None, help="prequential: events per point (default 5000)"
    )
    p.add_argument("--plot", default=None, help="prequential: write HR@10 over time (PNG)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--progress", action="store_true", help="progress lines on stderr")
    p.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"slatestream: error: {msg}", file=sys.stderr)
    return 2


# flags that only one protocol reads: given with the other, they would be silently ignored
_LOO_ONLY = (("epochs", "--epochs"), ("patience", "--patience"))
_LOO_ONLY_SWITCHES = (("one_pass", "--one-pass"), ("exclude_seen", "--exclude-seen"))
_PREQUENTIAL_ONLY = (("bucket", "--bucket"), ("max_events", "--max-events"), ("plot", "--plot"))


def _protocol_problem(args: argparse.Namespace) -> str | None:
    """Why a flag given does not apply to the chosen protocol (it would be ignored), or None."""
    if args.protocol == "prequential":
        given = [flag for name, flag in _LOO_ONLY if getattr(args, name) is not None]
        given += [flag for name, flag in _LOO_ONLY_SWITCHES if getattr(args, name)]
        other = "loo"
    else:
        given = [flag for name, flag in _PREQUENTIAL_ONLY if getattr(args, name) is not None]
        other = "prequential"
    if not given:
        return None
    verb = "applies" if len(given) == 1 else "apply"
    return f"{', '.join(given)} only {verb} to --protocol {other}, not {args.protocol}"


def _plot_problem(path: Path) -> str | None:
    """Why the plot cannot be written at `path` (checked before a long run), or None."""
    from matplotlib.backend_bases import FigureCanvasBase

    if path.is_dir():
        return "is a directory"
    if not path.parent.is_dir():
        return f"directory {path.parent} does not exist"
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in formats:
        return f"unknown image format {path.suffix!r} (e.g. .png, .svg, .pdf)"
    # a real write probe (os.access passes everything for root; a read-only mount does not)
    try:
        if path.exists():
            with path.open("ab"):  # opened for writing, nothing written or truncated
                pass
        else:
            with tempfile.TemporaryFile(dir=path.parent):
                pass
    except OSError as exc:
        where = path if path.exists() else path.parent
        return f"cannot write {'the file' if where == path else f'in {where}'} ({exc.strerror})"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; bad input -> one line on stderr and exit code 2."""
    from models.datasets import DatasetError, load_movielens_100k
    from models.evaluation import MODEL_NAMES, plot_prequential, run_loo, run_prequential

    names = [m.strip() for m in str(args.model).split(",") if m.strip()]
    unknown = [m for m in names if m not in MODEL_NAMES]
    if not names or unknown:
        return _err(
            f"unknown model {unknown or args.model!r}; choose from {', '.join(MODEL_NAMES)}"
        )
    if args.protocol == "loo" and len(names) != 1:
        return _err("--protocol loo takes exactly one --model")
    if args.plot is not None and args.protocol != "prequential":
        return _err("--plot is for --protocol prequential")
    if problem := _protocol_problem(args):
        return _err(problem)
    epochs = 100 if args.epochs is None else args.epochs
    patience = 10 if args.patience is None else args.patience
    bucket = 5000 if args.bucket is None else args.bucket
    if epochs < 1 or patience < 1 or args.dim < 1 or args.hidden < 1:
        return _err("--epochs, --patience, --dim and --hidden must be >= 1")
    if bucket < 1 or (args.max_events is not None and args.max_events < 1):
        return _err("--bucket and --max-events must be >= 1")
    if args.seed < 0:
        return _err(f"--seed must be >= 0, not {args.seed}")
    if args.plot is not None and (problem := _plot_problem(Path(args.plot))):
        return _err(f"--plot {args.plot}: {problem}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        return _err(f"--lr must be a finite number > 0, not {args.lr}")
    if args.threads is not None and args.threads < 1:
        return _err(f"--threads must be >= 1, not {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        data = load_movielens_100k()
    except DatasetError as exc:
        return _err(str(exc))

    def log(msg: str) -> None:
        if args.progress:
            print(msg, file=sys.stderr, flush=True)

    gru_kw: dict[str, Any] = {"dim": args.dim, "hidden": args.hidden}
    if args.lr is not None:
        gru_kw["lr"] = args.lr
    for flag, key in (("step_every", "step_every_events"), ("batch_users", "batch_users")):
        value = getattr(args, flag)
        if value is not None:
            if value < 1:
                return _err(f"--{flag.replace('_', '-')} must be >= 1")
            gru_kw[f"trainer_{key}"] = value
    results = []
    for name in names:
        kw = gru_kw if name in ("gru", "bayes-gru") else {}
        if args.protocol == "loo":
            res = run_loo(
                name,
                data,
                seed=args.seed,
                epochs=epochs,
                patience=patience,
                one_pass=args.one_pass,
                exclude_seen=args.exclude_seen,
                log=log,
                **kw,
            )
            res.pop("history", None) if not args.progress else None
        else:
            res = run_prequential(
                name,
                data,
                seed=args.seed,
                bucket=bucket,
                max_events=args.max_events,
                log=log,
                **kw,
            )
        results.append(res)
    if args.plot:
        try:
            plot_prequential(results, args.plot)
        except OSError as exc:  # the disk filled up or the directory went away meanwhile
            return _err(f"--plot {args.plot}: cannot write ({exc.strerror or exc})")
    print(json.dumps(results[0] if len(results) == 1 else results))
    return 0
