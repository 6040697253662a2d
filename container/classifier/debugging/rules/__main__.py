"""Run the debugger rules on a tensors folder from the command line::

    python -m classifier.debugging.rules TENSORS_PATH [--rule NAME ...] [--param RULE.KEY=VALUE ...]
                               [--json OUT]

Prints one summary line per rule. Exit status: 0 when no rule fired, 1 when at least one
fired, 2 when a rule could not run (bad parameters, unreadable tensors).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from classifier.debugging.rules import ERROR, RULE_NAMES, run_rules

EXIT_OK, EXIT_FIRED, EXIT_ERROR = 0, 1, 2


def _parse_param(text: str) -> tuple[str, str, str]:
    key, sep, value = text.partition("=")
    rule, dot, name = key.partition(".")
    if not sep or not dot or rule not in RULE_NAMES or not name:
        raise argparse.ArgumentTypeError(
            f"--param takes RULE.NAME=VALUE with RULE one of {', '.join(RULE_NAMES)}; got {text!r}"
        )
    return rule, name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classifier.debugging.rules", description="Run the debugger rules on saved tensors."
    )
    parser.add_argument("tensors_path", help="the smdebug out_dir: a local folder or s3://bucket/prefix")
    parser.add_argument(
        "--rule", action="append", choices=RULE_NAMES, help="rule to run (repeatable; default: all)"
    )
    parser.add_argument(
        "--param",
        action="append",
        type=_parse_param,
        default=[],
        metavar="RULE.NAME=VALUE",
        help="rule parameter, e.g. overfit.patience=3 (repeatable)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = parser.parse_args(argv)
    # smdebug logs INFO lines to stdout; keep stdout to one summary line per rule.
    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    params: dict[str, dict] = {}
    for rule, name, value in args.param:
        params.setdefault(rule, {})[name] = value
    try:
        results = run_rules(args.tensors_path, args.rule, None, **params)
    except (FileNotFoundError, TypeError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    for result in results:
        print(result)
    if args.json:
        with open(args.json, "w") as out:
            json.dump([r.to_dict() for r in results], out, indent=2)
    if any(r.status == ERROR for r in results):
        return EXIT_ERROR
    return EXIT_FIRED if any(r.fired for r in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
