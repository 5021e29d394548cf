"""Configuration layering and its error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs.core.config import _read_layer, load_config, parse_override
from jobs.core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    write(tmp_path / "conf/base/kafka.yaml", "kafka:\n  bootstrap_servers: 127.0.0.1:9092\n  partitions: 2\n")
    write(tmp_path / "conf/base/paths.yaml", "paths:\n  lake: .state/lake\nspark:\n  extra: {}\n")
    write(tmp_path / "conf/local/kafka.yaml", "kafka:\n  partitions: 1\n")
    (tmp_path / "conf/cluster").mkdir()
    return tmp_path / "conf"


def test_environment_layer_overrides_base_and_keeps_the_rest(conf: Path):
    cfg = load_config("local", conf_dir=conf)
    assert cfg.data == {
        "kafka": {"bootstrap_servers": "127.0.0.1:9092", "partitions": 1},
        "paths": {"lake": ".state/lake"},
        "spark": {"extra": {}},
    }
    assert load_config("cluster", conf_dir=conf).get("kafka.partitions") == 2


def test_overrides_come_last_and_relative_paths_resolve_against_the_project_root(conf: Path):
    cfg = load_config("local", {"kafka.partitions": 8, "spark.extra.spark.sql.foo": "bar"}, conf_dir=conf)
    assert cfg.get("kafka.partitions") == 8
    assert cfg.get("spark.extra") == {"spark.sql.foo": "bar"}
    assert cfg.path("paths.lake") == str(conf.parent / ".state/lake")
    assert load_config("local", {"paths.lake": "s3a://b/lake"}, conf_dir=conf).path("paths.lake") == "s3a://b/lake"


def test_env_is_read_from_the_environment_variable(conf: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FRAUD_ENV", "cluster")
    assert load_config(conf_dir=conf).env == "cluster"


def test_same_key_in_two_files_of_one_layer_names_both_files(conf: Path):
    write(conf / "local/more.yaml", "kafka:\n  partitions: 3\n")
    with pytest.raises(
        ConfigError,
        match=r"key 'kafka.partitions' is defined twice in layer 'local': in .*kafka.yaml and in .*more.yaml",
    ):
        load_config("local", conf_dir=conf)


def test_same_key_twice_in_one_file_is_an_error(conf: Path):
    write(conf / "local/kafka.yaml", "kafka:\n  partitions: 1\n  partitions: 3\n")
    with pytest.raises(ConfigError, match=r"kafka.yaml: key 'partitions' is written twice \(lines 2 and 3\)"):
        load_config("local", conf_dir=conf)


def test_unknown_key_in_a_layer_names_the_file_and_suggests(conf: Path):
    write(conf / "local/kafka.yaml", "kafka:\n  partitons: 1\n")
    with pytest.raises(
        ConfigError,
        match=r"local/kafka.yaml: unknown configuration key 'kafka.partitons'.*did you mean 'kafka.partitions'",
    ):
        load_config("local", conf_dir=conf)


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match=r"command-line override: unknown configuration key 'kafka.bootstrap'"):
        load_config("local", {"kafka.bootstrap": "x"})


def test_secrets_are_refused_in_files(conf: Path):
    write(conf / "cluster/s3.yaml", "paths:\n  s3_secret_key: abc\n")
    with pytest.raises(
        ConfigError, match=r"s3.yaml: key 'paths.s3_secret_key' looks like a secret.*environment variable"
    ):
        load_config("cluster", conf_dir=conf)


def test_unknown_environment_lists_the_known_ones(conf: Path):
    with pytest.raises(ConfigError, match=r"unknown environment 'prod': expected one of \['cluster', 'local'\]"):
        load_config("prod", conf_dir=conf)
    # the project's conf/ also holds monitoring files, which are no environment
    with pytest.raises(ConfigError, match=r"unknown environment 'prometheus': expected one of \['cluster', 'local'\]"):
        load_config("prometheus")


def test_parse_override_reads_yaml_values():
    assert parse_override("kafka.partitions=4") == ("kafka.partitions", 4)
    assert parse_override("paths.lake=s3a://b/x") == ("paths.lake", "s3a://b/x")
    with pytest.raises(ConfigError, match=r"--set expects KEY=VALUE .* found 'kafka.partitions'"):
        parse_override("kafka.partitions")


def test_the_project_conf_loads_in_every_environment():
    for env in ("local", "cluster"):
        cfg = load_config(env)
        assert set(cfg.get("kafka.topics")) == {"transactions", "alerts", "labels"}
    assert load_config("cluster").get("spark.master") is None
    assert load_config("local").get("spark.master") == "local[2]"


def documented_keys(page: str) -> tuple[set[str], set[str]]:
    """The keys the tables of docs/configuration.md name in their first column, and the prefixes they name
    with a wildcard (`spark.extra.*`, `tables.<name>`). A cell lists keys in backticks, separated by commas;
    `.port` after `kafka.broker.host` is `kafka.broker.port`; `a.{b,c}` is `a.b` and `a.c`."""
    keys: set[str] = set()
    prefixes: set[str] = set()
    for line in page.splitlines():
        if not line.startswith("| `"):
            continue
        parent = ""
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if name.startswith("."):
                name = parent + name
            parent = name.rsplit(".", 1)[0]
            if name.endswith(".*") or name.endswith(".<name>"):
                prefixes.add(name.rsplit(".", 1)[0] + ".")
            elif braces := re.fullmatch(r"(.*)\{(.*)\}", name):
                keys |= {braces.group(1) + part for part in braces.group(2).split(",")}
            else:
                keys.add(name)
    return keys, prefixes


def test_every_key_of_conf_base_is_documented_in_docs_configuration():
    root = Path(__file__).resolve().parents[1]
    flat, _ = _read_layer(root / "conf" / "base")
    keys, prefixes = documented_keys((root / "docs" / "configuration.md").read_text())
    missing = sorted(k for k in flat if k not in keys and not (k + ".").startswith(tuple(prefixes)))
    assert missing == [], f"keys of conf/base without a row in docs/configuration.md: {missing}"
    assert sorted(k for k in keys if k not in flat) == [], "rows of docs/configuration.md for keys conf/base lacks"
