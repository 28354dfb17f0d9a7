"""docker-compose.yml as docker-compose reads it: YAML, then `${VAR}` interpolation from an
environment, with Compose's forms `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
`${VAR?message}` and `$$` for a literal dollar."""

import re
from pathlib import Path

import yaml

from tests.processes import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariableError(ValueError):
    pass


def referenced_variables(text: str) -> set[str]:
    return {match["name"] for match in VARIABLE.finditer(text) if match["name"]}


def interpolate(text: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name is None:
            return "$"
        value = env.get(name)
        unset_or_empty = value is None or (op is not None and op.startswith(":") and not value)
        if op in ("-", ":-"):
            return arg if unset_or_empty else value
        if op in ("?", ":?"):
            if unset_or_empty:
                raise MissingVariableError(f"{name}: {arg}")
            return value
        return value or ""

    return VARIABLE.sub(substitute, text)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as docker-compose reads .env (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def load(env: dict[str, str], path: Path = COMPOSE_FILE) -> dict:
    """The compose file interpolated with ``env``: every `${...}` of the YAML is replaced."""
    raw = yaml.safe_load(path.read_text())
    return _walk(raw, env)


def _walk(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node
