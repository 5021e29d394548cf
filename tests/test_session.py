"""The one session factory: its settings, and the error when the jars are missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs.core.config import load_config
from jobs.core.errors import SetupError
from jobs.core.session import s3a_settings, spark_settings

ROOT = Path(__file__).resolve().parent.parent


def test_settings_of_the_local_session():
    settings = spark_settings(load_config("local"))
    # local mode: on the driver's class path, where make jars put them (spark.jars would copy them)
    jars = settings.pop("spark.driver.extraClassPath").split(os.pathsep)
    assert any("delta-spark_4.2_2.13-4.4.0.jar" in j for j in jars)
    assert any("spark-sql-kafka-0-10_2.13-4.2.0.jar" in j for j in jars)
    assert any("hadoop-aws-3.5.0.jar" in j for j in jars)
    for key in ("spark.pyspark.python", "spark.pyspark.driver.python"):
        settings.pop(key)
    assert settings == {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.streaming.stateStore.providerClass": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.sql.session.timeZone": "UTC",
        # Spark SQL's warehouse under .state/, not the working directory
        "spark.sql.warehouse.dir": load_config("local").path("paths.warehouse"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": "2",
        "spark.ui.enabled": "true",
        "spark.sql.streaming.noDataMicroBatches.enabled": "false",
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "4g",
        "spark.driver.extraJavaOptions": "-Xss64m",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
        # a checkpoint on the local disk through Hadoop's FileSystem: FileContext starts processes per file
        "spark.sql.streaming.checkpointFileManagerClass": (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        ),
    }


def test_a_cluster_session_sends_the_jars_to_its_executors():
    settings = spark_settings(load_config("cluster"))
    assert "spark.driver.extraClassPath" not in settings
    jars = settings["spark.jars"].split(",")
    assert any("delta-spark_4.2_2.13-4.4.0.jar" in j for j in jars) and any("fraud-operators.jar" in j for j in jars)


def test_a_class_path_of_the_users_is_kept_after_the_jars():
    cfg = load_config("local", {"spark.extra": {"spark.driver.extraClassPath": "/opt/bank/ojdbc.jar"}})
    path = spark_settings(cfg)["spark.driver.extraClassPath"].split(os.pathsep)
    assert path[-1] == "/opt/bank/ojdbc.jar" and any("delta-spark" in p for p in path[:-1])


def test_a_store_other_than_aws_gets_its_s3a_settings():
    cfg = load_config(
        "local", {"s3.endpoint": "https://minio.bank:9000", "s3.path_style_access": True, "s3.region": "eu-west-1"}
    )
    assert s3a_settings(cfg) == {
        "spark.hadoop.fs.s3a.endpoint": "https://minio.bank:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
    }
    assert s3a_settings(load_config("cluster")) == {}  # AWS: the SDK finds the endpoint and region itself
    assert spark_settings(cfg)["spark.hadoop.fs.s3a.endpoint"] == "https://minio.bank:9000"


def test_missing_jar_folder_says_which_command_fetches_it(tmp_path):
    cfg = load_config("local", {"paths.spark_jars": str(tmp_path / "nothing")})
    with pytest.raises(
        SetupError, match=r"no JVM jars in .*nothing \(paths.spark_jars\): run `make jars` \(part of `make setup`\)"
    ):
        spark_settings(cfg)


def test_a_driver_spark_submit_started_away_from_the_jars_leaves_them_to_spark_submit(tmp_path, monkeypatch):
    """YARN's cluster mode: the driver runs in a container, without the project's folders; spark-submit's
    --jars brought the jars, and the session must neither fail nor replace spark.jars by an empty list."""
    cfg = load_config("cluster", {"paths.spark_jars": str(tmp_path / "nothing")})
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "40000")
    settings = spark_settings(cfg)
    assert "spark.jars" not in settings and "spark.driver.extraClassPath" not in settings
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT")  # not under spark-submit: the missing folder is an error
    with pytest.raises(SetupError, match=r"no JVM jars in .*nothing"):
        spark_settings(cfg)


def test_the_running_session_has_them(spark, tmp_path):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.master") == "local[2]"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert conf.get("spark.sql.streaming.stateStore.providerClass").endswith("RocksDBStateStoreProvider")
    # Delta's classes are loaded from the jar folder (Class.forName raises without Delta's jar, where py4j's
    # `_jvm.io.delta...` gives a package object for any name), its extension among the session's
    jvm = spark.sparkContext._jvm
    for name in ("io.delta.tables.DeltaTable", "io.delta.sql.DeltaSparkSessionExtension"):
        assert jvm.java.lang.Class.forName(name).getName() == name
    assert "io.delta.sql.DeltaSparkSessionExtension" in conf.get("spark.sql.extensions")
    assert conf.get("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled") == "true"
    assert conf.get("spark.sql.streaming.noDataMicroBatches.enabled") == "false"
    # a query's checkpoint files on the local disk go through the FileSystem-based manager (conf/local/spark.yaml)
    hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()
    path = jvm.org.apache.hadoop.fs.Path(f"file://{tmp_path}")
    manager = jvm.org.apache.spark.sql.execution.streaming.checkpointing.CheckpointFileManager.create(path, hadoop_conf)
    assert manager.getClass().getSimpleName() == "FileSystemBasedCheckpointFileManager"
    # the driver JVM was started with the larger thread stack (conf/local/spark.yaml): the streaming query's
    # thread overflowed the default one
    jvm_args = list(
        spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    )
    assert "-Xss64m" in jvm_args


def test_the_state_server_logs_only_errors(spark):
    from jobs.core.session import STATE_SERVER_LOGGER, quiet_state_server

    quiet_state_server(spark)
    jvm = spark.sparkContext._jvm
    level = jvm.org.apache.logging.log4j.LogManager.getLogger(STATE_SERVER_LOGGER).getLevel()
    assert level.toString() == "ERROR"
    properties = (ROOT / "spark-submit/log4j2.properties").read_text()
    assert (
        f"logger.twsstate.name = {STATE_SERVER_LOGGER}" in properties and "logger.twsstate.level = error" in properties
    )


def test_a_missing_or_stale_operator_jar_names_make_operators(tmp_path):
    from jobs.core.session import OPERATOR_DIGEST, operator_jars, operator_sources_digest

    with pytest.raises(SetupError, match=r"no JVM jars in .*operators \(paths.operator_jars\): run `make operators`"):
        operator_jars(tmp_path / "operators")
    built = tmp_path / "built"
    built.mkdir()
    (built / "fraud-operators.jar").write_bytes(b"jar")
    (built / OPERATOR_DIGEST).write_text("0" * 64 + "\n")  # built from other sources
    with pytest.raises(SetupError, match=r"built from other sources than features/jvm holds now: run `make operators`"):
        operator_jars(built)
    (built / OPERATOR_DIGEST).write_text(f"{operator_sources_digest()}\n")
    assert operator_jars(built) == [str(built / "fraud-operators.jar")]


def test_the_operator_digest_follows_the_java_sources(tmp_path):
    from jobs.core.session import operator_sources_digest

    source = tmp_path / "features/jvm/src/main/java/X.java"
    source.parent.mkdir(parents=True)
    source.write_text("class X {}")
    (tmp_path / "spark-submit").mkdir()
    (tmp_path / "spark-submit/pom.xml").write_text("<project/>")
    before = operator_sources_digest(tmp_path)
    source.write_text("class X { int y; }")
    assert operator_sources_digest(tmp_path) != before
    assert operator_sources_digest(tmp_path / "nothing") is None
