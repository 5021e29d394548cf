"""Layered configuration: `conf/base/*.yaml`, then one environment layer (`conf/local`, `conf/cluster`, ...),
then command-line overrides.

Rules, each checked with an error that names the file(s):
- a key written twice in one file, or in two files of the same layer, is an error;
- an environment layer or an override may only set keys that `conf/base` defines (typos fail loudly);
- secrets (keys named like password, secret, token, access_key) are never read from files: they come
  from environment variables only;
- relative paths under `paths.*` are resolved against the project root;
- the result is checked against the schema of every key (jobs/core/settings.py): its type and bounds.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jobs.core.errors import ConfigError
from jobs.core.settings import check

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR_ENV = "FRAUD_ENV"
ENV_VAR_CONF_DIR = "FRAUD_CONF_DIR"
DEFAULT_ENV = "local"
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|access_key|api_key|private_key)", re.IGNORECASE)
# A YAML mapping with children whose own keys are free (any spark.* setting): not checked against base.
_OPEN_SECTIONS = ("spark.extra",)
# folders of conf/ that are not environment layers: the base layer, and monitoring files for other tools
_NOT_ENVIRONMENTS = ("base", "grafana", "prometheus")


@dataclass(frozen=True)
class Config:
    """Resolved configuration: a nested mapping read by dotted key, plus where it came from."""

    data: Mapping[str, Any]
    env: str
    conf_dir: Path
    root: Path

    def get(self, key: str) -> Any:
        """Return the value at a dotted key, e.g. ``cfg.get("kafka.topics.transactions")``."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(
                    f"configuration key {key!r} is not defined (env {self.env!r}, conf dir {self.conf_dir})"
                )
            node = node[part]
        return node

    def path(self, key: str) -> str:
        """Return a location (local path or URI) from the configuration, made absolute if it is local."""
        return resolve_location(str(self.get(key)), self.root)

    def table_path(self, table: str) -> str:
        """Return the location of a Delta table named in `tables:` under `paths.lake`."""
        return join_location(self.path("paths.lake"), str(self.get(f"tables.{table}")))

    def checkpoint_path(self, query: str) -> str:
        """Return the checkpoint location of one streaming query under `paths.checkpoint`."""
        return join_location(self.path("paths.checkpoint"), query)


def resolve_location(value: str, root: Path) -> str:
    """Make a relative local path absolute against `root`; URIs (s3a://, hdfs://, file:/) pass unchanged.

    A relative SQLite URI (``sqlite:///.state/mlflow.db``) is made absolute too, so it does not depend on
    the working directory.
    """
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        return "sqlite:///" + str((root / value[len("sqlite:///") :]).resolve())
    if "://" in value or value.startswith("file:"):
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def join_location(base: str, name: str) -> str:
    """Join a table or query name to a local path or a URI."""
    return base.rstrip("/") + "/" + name


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML silently keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"{loader.name}: key {key!r} is written twice (lines {seen[key] + 1} and "
                f"{key_node.start_mark.line + 1}); keep one"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            loader = _UniqueKeyLoader(fh)
            loader.name = str(path)
            try:
                content = loader.get_single_data()
            finally:
                loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, found {type(content).__name__}")
    return content


def _leaves(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and dotted not in _OPEN_SECTIONS:
            yield from _leaves(value, dotted + ".")
        else:
            yield dotted, value


def _read_layer(layer_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Read every YAML file of one layer into flat dotted keys, refusing keys defined in two files."""
    flat: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for path in sorted(list(layer_dir.glob("*.yaml")) + list(layer_dir.glob("*.yml"))):
        for key, value in _leaves(_read_yaml(path)):
            if _SECRET_KEY.search(key.rsplit(".", 1)[-1]):
                raise ConfigError(
                    f"{path}: key {key!r} looks like a secret; secrets are never read from files under conf/. "
                    "Remove it and pass it through an environment variable"
                )
            clash = next((k for k in (key, *_parents(key)) if k in origin), None) or next(
                (k for k in origin if k.startswith(key + ".")), None
            )
            if clash is not None:
                raise ConfigError(
                    f"key {key!r} is defined twice in layer {layer_dir.name!r}: in {origin[clash]} and in {path}; "
                    "keep it in one file"
                )
            flat[key] = value
            origin[key] = path
    return flat, origin


def _set(flat: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key; keys inside an open section (spark.extra) merge into that section's mapping."""
    for section in _OPEN_SECTIONS:
        if key == section and isinstance(value, Mapping):
            flat[section] = {**flat.get(section, {}), **value}
            return
        if key.startswith(section + "."):
            flat[section] = {**flat.get(section, {}), key[len(section) + 1 :]: value}
            return
    flat[key] = value


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _check_known(key: str, base: Mapping[str, Any], where: str) -> None:
    if key in base or any(p in _OPEN_SECTIONS for p in _parents(key)):
        return
    close = difflib.get_close_matches(key, list(base), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(base))}"
    raise ConfigError(f"{where}: unknown configuration key {key!r} (conf/base does not define it){hint}")


def load_config(
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    conf_dir: str | Path | None = None,
    checked: bool = True,
) -> Config:
    """Load `conf/base`, then the environment layer, then overrides (dotted keys), and check the result
    against the schema (jobs/core/settings.py).

    Args:
        env: environment layer; default `$FRAUD_ENV`, else ``local``.
        overrides: dotted keys to set last, e.g. ``{"paths.lake": "/data/lake"}`` (from the command line).
        conf_dir: the conf folder; default `$FRAUD_CONF_DIR`, else the project's `conf/`.
        checked: False for a conf folder of another shape than the project's (the layering's own tests).

    Returns:
        The resolved Config.

    Example:
        >>> load_config("local", {"kafka.bootstrap_servers": "127.0.0.1:19092"}).get("kafka.partitions")
        2
    """
    env = env or os.environ.get(ENV_VAR_ENV) or DEFAULT_ENV
    conf = Path(conf_dir or os.environ.get(ENV_VAR_CONF_DIR) or PROJECT_ROOT / "conf").resolve()
    base_dir, env_dir = conf / "base", conf / env
    if not base_dir.is_dir():
        raise ConfigError(f"configuration folder {base_dir} does not exist; pass --conf-dir or set ${ENV_VAR_CONF_DIR}")
    if env in _NOT_ENVIRONMENTS or not env_dir.is_dir():
        layers = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in _NOT_ENVIRONMENTS)
        raise ConfigError(f"unknown environment {env!r}: expected one of {layers} (folders of {conf})")
    flat, _ = _read_layer(base_dir)
    env_flat, env_origin = _read_layer(env_dir)
    for key, value in env_flat.items():
        _check_known(key, flat, str(env_origin[key]))
        _set(flat, key, value)
    for key, value in (overrides or {}).items():
        _check_known(key, flat, "command-line override")
        _set(flat, key, value)
    tree = _unflatten(flat)
    if checked:
        check(tree)
    return Config(data=tree, env=env, conf_dir=conf, root=conf.parent)


def read_layer(layer_dir: Path) -> dict[str, Any]:
    """One layer's keys, dotted (docs/configuration.md's table shows each layer's values)."""
    return _read_layer(layer_dir)[0]


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``--set key=value`` override; the value is read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. kafka.partitions=4), found {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value
