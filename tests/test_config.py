"""Configuration layering and its error messages."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from jobs.core import settings
from jobs.core.config import load_config, parse_override
from jobs.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


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
    cfg = load_config("local", conf_dir=conf, checked=False)
    assert cfg.data == {
        "kafka": {"bootstrap_servers": "127.0.0.1:9092", "partitions": 1},
        "paths": {"lake": ".state/lake"},
        "spark": {"extra": {}},
    }
    assert load_config("cluster", conf_dir=conf, checked=False).get("kafka.partitions") == 2


def test_overrides_come_last_and_relative_paths_resolve_against_the_project_root(conf: Path):
    cfg = load_config(
        "local", {"kafka.partitions": 8, "spark.extra.spark.sql.foo": "bar"}, conf_dir=conf, checked=False
    )
    assert cfg.get("kafka.partitions") == 8
    assert cfg.get("spark.extra") == {"spark.sql.foo": "bar"}
    assert cfg.path("paths.lake") == str(conf.parent / ".state/lake")
    assert (
        load_config("local", {"paths.lake": "s3a://b/lake"}, conf_dir=conf, checked=False).path("paths.lake")
        == "s3a://b/lake"
    )


def test_env_is_read_from_the_environment_variable(conf: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FRAUD_ENV", "cluster")
    assert load_config(conf_dir=conf, checked=False).env == "cluster"


def test_same_key_in_two_files_of_one_layer_names_both_files(conf: Path):
    write(conf / "local/more.yaml", "kafka:\n  partitions: 3\n")
    with pytest.raises(
        ConfigError,
        match=r"key 'kafka.partitions' is defined twice in layer 'local': in .*kafka.yaml and in .*more.yaml",
    ):
        load_config("local", conf_dir=conf, checked=False)


def test_same_key_twice_in_one_file_is_an_error(conf: Path):
    write(conf / "local/kafka.yaml", "kafka:\n  partitions: 1\n  partitions: 3\n")
    with pytest.raises(ConfigError, match=r"kafka.yaml: key 'partitions' is written twice \(lines 2 and 3\)"):
        load_config("local", conf_dir=conf, checked=False)


def test_unknown_key_in_a_layer_names_the_file_and_suggests(conf: Path):
    write(conf / "local/kafka.yaml", "kafka:\n  partitons: 1\n")
    with pytest.raises(
        ConfigError,
        match=r"local/kafka.yaml: unknown configuration key 'kafka.partitons'.*did you mean 'kafka.partitions'",
    ):
        load_config("local", conf_dir=conf, checked=False)


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match=r"command-line override: unknown configuration key 'kafka.bootstrap'"):
        load_config("local", {"kafka.bootstrap": "x"})


def test_secrets_are_refused_in_files(conf: Path):
    write(conf / "cluster/s3.yaml", "paths:\n  s3_secret_key: abc\n")
    with pytest.raises(
        ConfigError, match=r"s3.yaml: key 'paths.s3_secret_key' looks like a secret.*environment variable"
    ):
        load_config("cluster", conf_dir=conf, checked=False)


def test_unknown_environment_lists_the_known_ones(conf: Path):
    with pytest.raises(ConfigError, match=r"unknown environment 'prod': expected one of \['cluster', 'local'\]"):
        load_config("prod", conf_dir=conf, checked=False)
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


def test_docs_configuration_is_the_page_the_schema_makes():
    """`make config-docs` writes it; a key added to conf/ and the schema without it fails here."""
    page = ROOT / "docs" / "configuration.md"
    assert settings.page(page.read_text()) == page.read_text(), "docs/configuration.md is stale: run make config-docs"


def test_every_key_of_the_schema_is_read_by_the_code():
    code = "\n".join(
        p.read_text()
        for d in ("jobs", "features", "models")
        for p in (ROOT / d).rglob("*.py")
        if p.name != "settings.py"
    )
    unread = [
        key
        for key, _ in settings.keys()
        if f'"{key}' not in code
        and f"'{key}" not in code
        and not (key.startswith("tables.") and f'"{key.split(".")[1]}"' in code)
    ]
    assert unread == []


def test_the_schema_and_conf_base_hold_the_same_keys(tmp_path: Path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    with (conf / "base" / "stream.yaml").open("a") as extra:
        extra.write("  nobody_reads_this: 1\n")
    with pytest.raises(
        ConfigError, match=r"stream.nobody_reads_this: unknown configuration key \(jobs/core/settings.py"
    ):
        load_config("local", conf_dir=conf)
    text = (conf / "base" / "stream.yaml").read_text()
    (conf / "base" / "stream.yaml").write_text(
        text.replace("  metrics_port: 9108", "").replace("  nobody_reads_this: 1\n", "")
    )
    with pytest.raises(ConfigError, match=r"stream.metrics_port: the key is missing"):
        load_config("local", conf_dir=conf)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("stream.trigger_interval", "1 month", r"expected a duration such as .*, found '1 month'"),
        ("stream.metrics_port", 70000, r"expected a whole number from 0 to 65535, found 70000"),
        ("kafka.max_offsets_per_trigger", 0, r"expected a whole number of 1 or more, found 0"),
        ("kafka.fetch_max_wait_ms", -1, r"expected a whole number from 0 to 60000, found -1"),
        ("stream.state_ttl_days", "x", r"expected a whole number of days of 1 or more, or null, found 'x'"),
        ("stream.explanations_table_seconds", True, r"expected a number of seconds of 0 or more, found True"),
        ("kafka.starting_offsets", "oldest", r"expected 'earliest', 'latest' or .*, found 'oldest'"),
        ("desk.chart_hours", 0, r"expected a number above 0, found 0"),
        ("spark.extra.spark.driver.memory", [4], r"spark.extra.spark.driver.memory: expected a text, a number .*"),
        ("kafka.security.protocol", "SASL_SSL", r"kafka.security.sasl_mechanism: SASL_SSL needs one of .*, found None"),
    ],
)
def test_a_wrong_value_names_its_key_what_was_expected_and_what_was_found(key, value, message):
    with pytest.raises(
        ConfigError, match=(rf"{re.escape(key)}: " if not message.startswith(key.split(".")[0]) else "") + message
    ):
        load_config("local", {key: value})
