"""`ptmeval` command line: `ptmeval estimate [--configfile my.yaml]`, `ptmeval schema`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ptmeval.errors import PtmevalError

DEFAULT_CONFIG = Path("config") / "config.yaml"


def merged_config(configfiles: list[str], base: Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """The config as Snakemake builds it: the default file, then each --configfile over it
    (mappings merged key by key, lists replaced)."""

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for key, value in b.items():
            out[key] = (
                merge(out[key], value)
                if isinstance(value, dict) and isinstance(out.get(key), dict)
                else value
            )
        return out

    data: dict[str, Any] = {}
    for path in ([str(base)] if base.exists() else []) + list(configfiles):
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise PtmevalError(f"'{path}': cannot read the config ({err})") from None
        if not isinstance(loaded, dict):
            raise PtmevalError(f"'{path}': the config must be a mapping")
        data = merge(data, loaded)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ptmeval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="expected wall time and peak memory per stage")
    est.add_argument("--configfile", action="append", default=[], help="config over the default")
    est.add_argument("--cache", default="results", help="results folder with cached profiles")
    est.add_argument("--cores", type=int, default=None, help="cores Snakemake will use")
    est.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.add_parser("schema", help="print the config's JSON schema")
    args = parser.parse_args(argv)
    try:
        if args.command == "schema":
            import json

            from ptmeval.config import json_schema

            print(json.dumps(json_schema(), indent=2))
            return 0
        from ptmeval.config import load_config
        from ptmeval.estimate import as_json, estimate, format_estimate

        cfg = load_config(merged_config(args.configfile))
        table = estimate(cfg, Path(args.cache), cores=args.cores)
        print(as_json(table) if args.json else format_estimate(table))
        return 0
    except PtmevalError as err:
        print(f"ptmeval: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
