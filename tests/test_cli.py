"""The console script: --help and --version work; errors are messages, not tracebacks."""

from __future__ import annotations

import subprocess
import sys

from xai_pool import __version__
from xai_pool.cli import main


def test_version_and_help(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "commands" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "xai_pool", "--help"], capture_output=True, text=True, check=True)
    assert "xai-pool" in out.stdout
