import sys
from pathlib import Path

# bench/ holds scripts, not a package: its helper modules import each other by bare name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
