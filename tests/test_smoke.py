import subprocess
import sys

from detector import __version__


def test_version_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "detector", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"detector {__version__}"
