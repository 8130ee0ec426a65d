"""`slatestream ope`: off-policy estimates of a slate policy's expected clicks per slate from a
JSON-lines feedback log (user_id, slate, clicks = clicked positions, propensities), or from a
dump of the pipeline's own `<prefix>.feedback` topic (clicks = objects with a position)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from bandits import make_policy
from bandits.base import BanditError, FeedbackError
from bandits.ope import (
    ESTIMATORS,
    evaluate,
    load_feedback_log,
    require_propensities,
    results_table,
)

_CLI_POLICIES = (
    "random",
    "greedy",
    "epsilon-greedy",
    "bayes-ucb",
    "ts",
    "in-slate-ts",
    "river-ts",
)
#: options that belong to one policy
_POLICY_OPTIONS = {"epsilon": "epsilon-greedy", "quantile": "bayes-ucb"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `ope` subcommand."""
    p = sub.add_parser(
        "ope",
        help="off-policy evaluation of a slate policy from logged feedback",
        description=(
            "Estimate a target policy's expected clicks per slate from feedback logged by "
            "another policy (IPS, SNIPS, DR with the item-position model; pseudo-inverse for "
            "uniformly random logging). The target learns from the first --train-fraction of "
            "the log and is evaluated on the rest."
        ),
    )
    p.add_argument(
        "--logs",
        required=True,
        help="JSON-lines feedback file (plain records or a dump of the feedback topic)",
    )
    p.add_argument("--policy", required=True, choices=_CLI_POLICIES, help="target policy")
    p.add_argument("--k", type=int, default=None, help="evaluate the first k positions")
    p.add_argument("--train-fraction", type=float, default=0.5)
    p.add_argument(
        "--estimators", default=",".join(ESTIMATORS), help="comma list of ips,snips,dr,pi"
    )
    p.add_argument("--alpha", type=float, default=0.05, help="CI level is 1 - alpha")
    p.add_argument("--epsilon", type=float, default=None, help="epsilon-greedy exploration")
    p.add_argument(
        "--quantile", type=float, default=None, help="bayes-ucb: the posterior quantile (0.98)"
    )
    p.add_argument("--prior-alpha", type=float, default=None, help="Beta prior alpha")
    p.add_argument("--prior-beta", type=float, default=None, help="Beta prior beta")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"slatestream: error: {msg}", file=sys.stderr)
    return 2


def _skipped_note(skipped: dict[str, int]) -> str:
    """`late records and duplicates skipped` summary ('' when none were)."""
    parts = []
    if skipped.get("late"):
        parts.append(f"{skipped['late']} late (their slates count in the on-time records)")
    if skipped.get("duplicate"):
        parts.append(f"{skipped['duplicate']} redelivered (event_id seen before)")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Fit the target on the head of the log, estimate on the tail, print the results."""
    if not 0.0 <= args.train_fraction < 1.0:
        return _fail(f"--train-fraction must be in [0, 1), got {args.train_fraction}")
    if args.k is not None and args.k < 1:
        return _fail(f"--k must be >= 1, got {args.k}")
    estimators = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
    kw: dict[str, Any] = {"seed": args.seed}
    for option, owner in _POLICY_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            if args.policy != owner:
                return _fail(f"--{option} only applies to --policy {owner}")
            kw[option] = value
    for name in ("prior_alpha", "prior_beta"):
        value = getattr(args, name)
        if value is not None:
            if args.policy == "random":
                return _fail("the random policy takes no prior")
            kw[name] = value
    try:
        log = load_feedback_log(args.logs)
        logs = log.records
        if not logs:
            note = _skipped_note(log.skipped)
            raise FeedbackError(
                f"{args.logs}: no feedback records to evaluate" + (f" ({note})" if note else "")
            )
        policy = make_policy(args.policy, **kw)
        n_train = int(len(logs) * args.train_fraction)
        # checked before the target learns, naming the file line of a record without them
        where = [f"{args.logs}:{line}" for line in log.lines[n_train:]]
        require_propensities(logs[n_train:], where)
        for fb in logs[:n_train]:
            policy.update(fb)
        results = evaluate(
            logs[n_train:],
            policy,
            estimators=estimators,
            k=args.k,
            alpha=args.alpha,
            rng=np.random.default_rng(args.seed),
        )
    except OSError as exc:
        return _fail(f"cannot read {args.logs}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        return _fail(f"cannot read {args.logs}: not UTF-8 text (expected JSON lines)")
    except (BanditError, ValueError, TypeError) as exc:
        return _fail(str(exc))
    if args.json:
        out = {
            "policy": args.policy,
            "train_records": n_train,
            "eval_records": len(logs) - n_train,
            "skipped": log.skipped,
            "results": {k: r.to_dict() for k, r in results.items()},
        }
        print(json.dumps(out, indent=1))
    else:
        print(f"# policy {args.policy}: trained on {n_train}, evaluated on {len(logs) - n_train}")
        note = _skipped_note(log.skipped)
        if note:
            print(f"# skipped records: {note}")
        print(f"# expected clicks per slate, {100 * (1 - args.alpha):.0f}% CI")
        print(results_table(results))
        if "pi" in estimators and "pi" not in results:
            print("# pi: skipped (needs uniformly random logging: propensity 1/n everywhere)")
    return 0
