"""A Docker engine for the compose tests, and the stand-in base images it needs.

Nothing can be pulled from Docker Hub on our machines, so the images the compose file and the
Dockerfile name (python, postgres, redis) are built here from Debian under those exact names:
a debootstrap root filesystem imported as a base, then one small Dockerfile per stand-in
(tests/compose/standins/). The root filesystem and the images are cached on the machine, so only
the first run pays for them.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import unavailable

STANDINS = Path(__file__).resolve().parent / "standins"
CACHE = Path(os.environ.get("GRADQ_COMPOSE_CACHE", "/var/cache/gradq"))
DEBIAN_MIRROR = os.environ.get("GRADQ_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_IMAGE = "gradq-standin/debian:bookworm"
# Each stand-in under the name docker-compose.yml and the Dockerfile use.
STANDIN_IMAGES = {
    "python:3.11-slim-bookworm": "python.Dockerfile",
    "postgres:15-bookworm": "postgres.Dockerfile",
    "redis:7.0-bookworm": "redis.Dockerfile",
}
MACHINE_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ENGINE_START_SECONDS = 60


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def ensure_engine() -> None:
    """A Docker engine that answers, started (and installed, as root) if need be; otherwise
    skip, or fail under CI=true."""
    if engine_answers():
        return
    if os.geteuid() != 0:
        unavailable("no Docker engine answers, and only root can install or start one")
    if shutil.which("dockerd") is None or shutil.which("docker-compose") is None:
        installed = subprocess.run(
            ["apt-get", "install", "-y", "-q", "docker.io", "docker-compose", "debootstrap"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            text=True,
        )
        if installed.returncode != 0:
            unavailable(f"docker.io could not be installed: {installed.stderr[-500:]}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "dockerd.log", "ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_SECONDS
    while not engine_answers():
        if time.monotonic() > deadline:
            unavailable(f"dockerd did not answer within {ENGINE_START_SECONDS} s")
        time.sleep(1)


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def debian_rootfs() -> Path:
    """A minimal Debian bookworm root filesystem, made once and cached."""
    rootfs = CACHE / "rootfs-bookworm"
    if (rootfs / ".complete").exists():
        return rootfs
    if shutil.which("debootstrap") is None:
        unavailable("debootstrap is not installed (apt-get install debootstrap)")
    shutil.rmtree(rootfs, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR)
    (rootfs / ".complete").touch()
    return rootfs


def build_standins() -> None:
    """The base image, then every stand-in; Docker's layer cache makes a rebuild instant."""
    if not image_exists(BASE_IMAGE):
        rootfs = debian_rootfs()
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--exclude=./.complete", "-c", "."], stdout=subprocess.PIPE
        )
        run("docker", "import", "-", BASE_IMAGE, stdin=tar.stdout)
        if tar.wait() != 0:
            raise RuntimeError("tar of the Debian root filesystem failed")
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(STANDINS, context, dirs_exist_ok=True)
        shutil.copy(MACHINE_CA_BUNDLE, Path(context) / "ca-certificates.crt")
        for name, dockerfile in STANDIN_IMAGES.items():
            run("docker", "build", "-q", "-t", name, "-f", str(Path(context) / dockerfile), context)
