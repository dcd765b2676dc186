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
