"""The library logs through logging.getLogger("xai_pool") and never prints; only the commands print,
and only they name command-line flags."""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from xai_pool.commands._logging import configure_logging

PACKAGE = Path(__file__).resolve().parents[1] / "xai_pool"
# Only these may print and quote flags: the command-line layer.
COMMAND_LAYER = ("commands/", "cli.py")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _library_files() -> list[Path]:
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if not str(p.relative_to(PACKAGE)).startswith(COMMAND_LAYER)]
    assert len(files) > 40  # the scan really sees the package
    return files


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return {
        id(node.body[0].value)
        for node in nodes
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }


def test_the_library_never_calls_print() -> None:
    calls = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                calls.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert calls == [], f"log through logging.getLogger('xai_pool...') instead: {calls}"


def _cli_flags() -> set[str]:
    """Every long option of ``xai-pool`` and its subcommands."""
    from xai_pool.cli import build_parser

    parser = build_parser()
    parsers = [parser, *(a.choices[name] for a in parser._subparsers._group_actions for name in a.choices)]
    return {flag for p in parsers for action in p._actions for flag in action.option_strings if flag.startswith("--")}


def _quoted_flags(path: Path, flags: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    return [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {flag}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        for flag in FLAG.findall(node.value)
        if flag in flags
    ]


def test_library_messages_do_not_quote_command_line_flags() -> None:
    flags = _cli_flags()
    assert {"--lr", "--out", "--resume", "--device", "--masks"} <= flags
    quoted = [hit for path in _library_files() for hit in _quoted_flags(path, flags)]
    assert quoted == [], f"name the Python argument; the command re-words its errors with flags: {quoted}"


def test_the_flag_scan_sees_flags() -> None:
    # The scan above must be able to fail: it finds the flags in a command's messages.
    hits = _quoted_flags(PACKAGE / "commands" / "train.py", _cli_flags())
    assert {hit.split()[-1] for hit in hits} >= {"--lr", "--resume", "--overwrite"}
    assert FLAG.findall("pass resume=True, not x--y or 1--2") == []


def test_importing_xai_pool_prints_nothing() -> None:
    code = "import xai_pool, xai_pool.report, xai_pool.metrics, xai_pool.saliency, xai_pool.viz, xai_pool.train"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""


def test_training_a_classifier_logs_its_epochs_and_prints_nothing(capsys, caplog, monkeypatch) -> None:
    from xai_pool.zoo import train_gap_classifier

    # Only what the library writes itself: no handler an application (a module-scoped fixture
    # that ran a command) may have installed.
    monkeypatch.setattr(logging.getLogger("xai_pool"), "handlers", [])

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    data = (torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,)))
    with caplog.at_level(logging.INFO, logger="xai_pool"):
        train_gap_classifier(model, data, data, epochs=2, batch_size=8, progress=False)
    assert capsys.readouterr() == ("", "")
    lines = [r.getMessage() for r in caplog.records if r.name == "xai_pool.zoo"]
    assert len(lines) == 2 and lines[0].startswith("epoch   1  train loss") and "test loss" in lines[0]


def test_the_commands_show_log_lines_on_the_current_stderr(capsys) -> None:
    # (tests/conftest.py puts the logger back as it was after each test)
    xai_pool_logger = configure_logging()
    configure_logging()  # a second command in the same process adds no second handler
    ours = [h for h in xai_pool_logger.handlers if h not in logging.getLogger().handlers]
    assert len(ours) == 1 and xai_pool_logger.level == logging.INFO
    logging.getLogger("xai_pool.pipeline").info("[1/4] a step")
    logging.getLogger("xai_pool.pipeline").debug("not shown")
    assert capsys.readouterr() == ("", "[1/4] a step\n")
    with contextlib.redirect_stderr(io.StringIO()) as redirected:  # the stderr of now, not of the first call
        logging.getLogger("xai_pool.pipeline").info("[2/4] another step")
    assert redirected.getvalue() == "[2/4] another step\n" and capsys.readouterr() == ("", "")
    configure_logging(quiet=True)
    logging.getLogger("xai_pool.train").info("an epoch")
    logging.getLogger("xai_pool.train").warning("a warning")
    assert capsys.readouterr().err == "a warning\n"
