"""``tuneforge config fields|show``: every config key with its type, default and help; a config as it resolves."""

from __future__ import annotations

import argparse
import sys


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="config_cmd", required=True)
    f = sub.add_parser("fields", help="every key with its type, default and help (the configuration reference)")
    f.add_argument("prefix", nargs="?", default="", help="only keys starting with this, e.g. train. or peft.")
    s = sub.add_parser("show", help="a config file with overrides applied and every default filled in, as YAML")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-5")


def _run(args: argparse.Namespace) -> int:
    if args.config_cmd == "fields":
        from tuneforge.config_docs import collect_sections

        rows = [row for section in collect_sections() for row in section.rows if row[0].startswith(args.prefix)]
        if not rows:
            from tuneforge.config_typing import ConfigError

            raise ConfigError(f"no config key starts with {args.prefix!r}; `tuneforge config fields` lists them all")
        for key, tp, default, help_text in rows:
            print(f"{key}  ({tp}, default {default})\n    {' '.join(help_text.split())}")
        return 0
    import yaml

    from tuneforge.config import load_config

    cfg = load_config(args.config, args.overrides)  # checked as a run would check it
    sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    return 0


def register(register_command) -> None:
    register_command("config", "list every config key (`config fields`) or show a config resolved (`config show`)",
                     _args, _run)
