import sys
from pathlib import Path

# bench/ holds scripts, not a package: its helper modules import each other by bare name. Last
# on the path, so that bench/service.py never shadows the service package.
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
