"""What `--help` says beyond each option: a description and examples for every command, and
`-v`/`-q` accepted anywhere on the line (before or after the subcommand).

Commands register their options in their own modules; `finish(parser)` walks the finished
tree once, so no command can be left without a description or examples (tests/cli checks).
"""

from __future__ import annotations

import argparse

# Per command path: examples an operator can paste (paths as in docs/deployment.md).
EXAMPLES: dict[str, str] = {
    "relayd": """\
  relayd demo                                   try everything on this machine, no radio
  relayd run -c /etc/relayd/relayd.toml -v      run a relay, logging at debug
  relayd COMMAND --help                         options and examples of one command""",
    "keys": "  relayd keys new --name ana --role dispatcher --out keys/ --passphrase",
    "keys new": """\
  relayd keys new --name root --role root --out keys/ --passphrase     keys/root.key, keys/root.pub
  relayd keys new --name relay-north --role relay --out keys/""",
    "trust": "  relayd trust show trust.json",
    "trust init": "  relayd trust init --root-key keys/root.key --out trust.json --expires 365d",
    "trust add": """\
  relayd trust add --bundle trust.json --root-key keys/root.key --pub keys/ana.pub --role dispatcher
  relayd trust add --bundle trust.json --root-key keys/root.key --pub keys/relay-north.pub --role relay \\
      --expires 180d""",
    "trust revoke": "  relayd trust revoke --bundle trust.json --root-key keys/root.key --key-id 1a2b3c4d",
    "trust show": "  relayd trust show trust.json --json",
    "alert": "  relayd alert compose --key keys/ana.key --kind alert --severity urgent 'ICE at 5th & Pine'",
    "alert compose": """\
  relayd alert compose --key keys/ana.key --kind alert --severity urgent --expires 30m \\
      'ICE at 5th & Pine: observers to the NE corner'
  relayd alert compose --key keys/ana.key --kind allclear --severity info \\
      --ref 3cba125fcb517d5b 'All clear'""",
    "alert verify": """\
  relayd alert compose --key keys/ana.key --kind test --severity info 'drill' | relayd alert verify \\
      --trust trust.json --root keys/root.pub""",
    "alerts": "  relayd alerts list --trust trust.json --root-pub keys/root.pub",
    "alerts list": """\
  relayd alerts list --broker mqtt://broker.lan:1883 --trust trust.json --root-pub keys/root.pub
  relayd alerts list --trust trust.json --root-pub keys/root.pub --json""",
    "alerts show": "  relayd alerts show 3cba125fcb517d5b --trust trust.json --root-pub keys/root.pub",
    "alerts end": """\
  relayd alerts end 3cba125fcb517d5b --kind allclear --key keys/ana.key --trust trust.json \\
      --root-pub keys/root.pub --text 'All clear at 5th & Pine'""",
    "sim": """\
  relayd sim config/sim/neighborhood.toml --time-scale 10 --summary
  relayd sim config/sim/one-relay.toml           then point relayd run at its printed port""",
    "run": """\
  relayd run -c /etc/relayd/relayd.toml
  relayd run -c relayd.toml -v                  debug logging (-q: warnings only)""",
    "check": "  relayd check -c /etc/relayd/relayd.toml && sudo systemctl restart relayd",
    "demo": """\
  relayd demo                                   the console with three relays and five handhelds
  relayd demo --headless --duration 20          a scripted run, summary at the end""",
    "doctor": "  relayd doctor -c /etc/relayd/relayd.toml --json",
    "setup": """\
  sudo relayd setup --relay-id relay-north --root-pub keys/root.pub --bundle trust.json \\
      --device /dev/ttyACM0 --broker mqtt://broker.lan:1883""",
    "cap": "  relayd cap --trust trust.json --root-pub keys/root.pub --listen 127.0.0.1:8080",
}

# Set on every command below the top level (the top level has -v/-q itself).
SUB_VERBOSE = "verbose_sub"
SUB_QUIET = "quiet_sub"


def add_verbosity(parser: argparse.ArgumentParser, *, top: bool) -> None:
    suffix = "" if top else "_sub"
    default: object = 0 if top else argparse.SUPPRESS
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, dest="verbose" + suffix,
        help="more log output (-vv for debug); anywhere on the line",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, dest="quiet" + suffix,
        help="less log output (warnings, then errors only); anywhere on the line",
    )  # fmt: skip


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal; examples kept line by line as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def finish(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every command a description, examples and -v/-q (recursively)."""
    examples = EXAMPLES.get(path or "relayd")
    if examples and not parser.epilog:
        parser.epilog = "examples:\n" + examples
    parser.formatter_class = HelpFormatter
    for action in parser._actions:  # argparse exposes subcommands no other way
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            if not sub.description and helps.get(name):
                sub.description = str(helps[name])[:1].upper() + str(helps[name])[1:] + "."
            add_verbosity(sub, top=False)
            finish(sub, f"{path} {name}".strip())


def combine_verbosity(args: argparse.Namespace) -> None:
    """`relayd -v run -v` is -vv: the counts before and after the subcommand add up."""
    args.verbose = getattr(args, "verbose", 0) + getattr(args, SUB_VERBOSE, 0)
    args.quiet = getattr(args, "quiet", 0) + getattr(args, SUB_QUIET, 0)
