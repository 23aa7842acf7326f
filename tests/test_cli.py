import subprocess
import sys

from pixelmodels.cli import main


def test_models_lists_pixelcnn(capsys):
    assert main(["models"]) == 0
    assert "pixelcnn" in capsys.readouterr().out


def test_python_dash_m_is_the_same_program():
    out = subprocess.run([sys.executable, "-m", "pixelmodels", "models"], capture_output=True, text=True)
    assert out.returncode == 0 and "pixelcnn" in out.stdout


def test_unknown_command_fails():
    out = subprocess.run([sys.executable, "-m", "pixelmodels", "fly"], capture_output=True, text=True)
    assert out.returncode != 0 and "invalid choice" in out.stderr
