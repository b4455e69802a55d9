"""The CLI for operators: complete --help with working examples, -v/-q anywhere, and one
`relayd run` per state folder."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relayd.cli import build_parser, log_level, parse_args
from relayd.cli.statelock import LOCK_NAME, StateFolderBusyError, StateLock
from relayd.daemon.config import load_config
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork
from tests.cli.cli_support import Relayd, assert_clean_error


def commands(
    parser: argparse.ArgumentParser, path: str = "relayd"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")


def test_every_command_and_option_has_help_a_description_and_examples() -> None:
    problems: list[str] = []
    for path, parser in commands(build_parser()):
        if not parser.description:
            problems.append(f"{path}: no description")
        if not (parser.epilog or "").startswith("examples:\n  "):
            problems.append(f"{path}: no examples")
        for action in parser._actions:
            if not action.help and not isinstance(action, argparse._SubParsersAction):
                problems.append(f"{path}: {'/'.join(action.option_strings) or action.dest} has no help")
    assert problems == []


def example_lines(epilog: str) -> Iterator[str]:
    """Each example command, continuation lines joined, trailing explanation dropped."""
    text = re.sub(r"\\\n\s*", " ", epilog.removeprefix("examples:\n"))
    for line in text.splitlines():
        command = line.strip().split("   ")[0]  # "cmd    what it does"
        yield from (part.strip() for part in command.split("|"))


def test_every_example_parses_with_the_real_parser() -> None:
    """An example with a misspelt option would send an operator looking for it."""
    checked = 0
    for path, parser in commands(build_parser()):
        for example in example_lines(parser.epilog or ""):
            words = shlex.split(example.split("&&")[0])
            if words[:1] == ["sudo"]:
                words = words[1:]
            if words[:1] != ["relayd"] or "COMMAND" in words:
                continue
            try:
                args = parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{path}: example does not parse: {example}")
            assert callable(args.func), example
            checked += 1
    assert checked >= 25


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "check", "-c", "x.toml"],
        ["check", "-v", "-c", "x.toml"],
        ["check", "-c", "x.toml", "-v"],
        ["keys", "new", "--name", "a", "--role", "relay", "--out", "k", "-v"],
    ],
)
def test_verbose_is_accepted_anywhere(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.verbose, args.quiet) == (1, 0)


def test_counts_before_and_after_the_subcommand_add_up() -> None:
    args = parse_args(["-v", "run", "-c", "x.toml", "-v"])
    assert args.verbose == 2
    quiet = parse_args(["run", "-q", "-c", "x.toml"])
    assert (quiet.verbose, quiet.quiet) == (0, 1)
    assert log_level(0, 0) == logging.WARNING
    assert log_level(2, 0) == logging.DEBUG
    assert log_level(5, 0) == logging.DEBUG
    assert log_level(0, 1) == logging.ERROR


def test_verbose_after_the_subcommand_works_end_to_end(relayd: Relayd, tmp_path: Path) -> None:
    # `check` of a missing file fails the same either way; -v after the subcommand is accepted.
    after = relayd("check", "-c", tmp_path / "missing.toml", "-v")
    assert "unrecognized arguments" not in after.stderr
    assert_clean_error(after, "missing.toml")


def test_a_second_lock_on_the_state_folder_names_the_folder_and_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with StateLock(state):
        assert (state / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(StateFolderBusyError) as exc:
            StateLock(state).acquire()
        assert str(state) in str(exc.value)
        assert f"PID {os.getpid()}" in str(exc.value)
    # Released on exit: the next one gets it.
    with StateLock(state):
        pass


def test_a_second_relayd_run_on_one_state_folder_refuses(
    relayd: Relayd, tmp_path: Path, network: TestNetwork
) -> None:
    # Nothing listens on port 9: the first daemon keeps retrying, holding its state folder.
    config = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)
    state = load_config(config).state_dir
    first = subprocess.Popen(  # our own interpreter and module
        [sys.executable, "-m", "relayd", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (state / LOCK_NAME).exists() or not (state / LOCK_NAME).read_text().strip():
            assert first.poll() is None, "the first relayd exited"
            assert time.monotonic() < deadline, "the first relayd never took its lock"
            time.sleep(0.1)
        second = relayd("run", "-c", config)
        assert_clean_error(second, str(state), f"PID {first.pid}")
        assert first.poll() is None, "the first relayd keeps running"
    finally:
        first.terminate()
        first.wait(10)
    # Once the first is gone, the folder is free again (no stale lock).
    with StateLock(state):
        pass
