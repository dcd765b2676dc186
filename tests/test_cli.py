"""The console script: --help and --version work; errors are messages, not tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xai_pool import __version__
from xai_pool.cli import main


def test_version_and_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's version action exits with 0
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"xai-pool {__version__}"
    assert main([]) == 0
    assert "commands" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "xai_pool", "--help"], capture_output=True, text=True, check=True)
    assert "xai-pool" in out.stdout


def _parser_with(func) -> object:
    import argparse

    parser = argparse.ArgumentParser(prog="xai-pool")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("probe").set_defaults(func=func)
    return parser


def test_people_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys) -> None:
    import xai_pool.cli as cli

    def missing_extra(_args) -> int:
        raise ImportError("the pretrained weights are not installed; pip install 'xai_pool[pretrained]'")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(missing_extra))
    assert main(["probe"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "xai-pool probe: error: the pretrained weights are not installed; pip install 'xai_pool[pretrained]'\n"
    )

    def bug(_args) -> int:
        raise KeyError("internal")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(bug))
    with pytest.raises(KeyError, match="internal"):
        main(["probe"])
