"""The one Spark session factory, used by every job and by the tests.

`configure_spark(builder, cfg)` takes a builder and returns it with this project's settings (the style of
Delta's `configure_spark_with_delta_pip`), so a caller can still add its own before `getOrCreate()`.
The JVM jars come from the folders `make jars` filled from `spark-submit/pom.xml` and `make operators` built
from `features/jvm`: nothing is downloaded when Spark starts (no spark.jars.packages).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.core.config import Config
from jobs.core.errors import SetupError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


def list_jars(folder: str | Path, what: str = "paths.spark_jars", target: str = "make jars") -> list[str]:
    """Return the jar files of a folder filled by `target`, or raise SetupError saying how to fill it."""
    path = Path(folder)
    jars = sorted(str(p) for p in path.glob("*.jar")) if path.is_dir() else []
    if not jars:
        raise SetupError(
            f"no JVM jars in {path} ({what}): run `{target}` (part of `make setup`), which fetches or builds "
            "them with Maven from spark-submit/pom.xml"
        )
    return jars


ROOT = Path(__file__).resolve().parents[2]
# what the operators' jar is built from (make operators): its digest is kept beside the jar
OPERATOR_SOURCES = ("features/jvm", "spark-submit/pom.xml")
OPERATOR_DIGEST = "sources.sha256"


def operator_sources_digest(root: Path = ROOT) -> str | None:
    """The SHA-256 of the operators' sources (OPERATOR_SOURCES: the Java files and both poms), or None where
    they are not there (a cluster's driver, which gets the jar alone)."""
    files: list[Path] = []
    for name in OPERATOR_SOURCES:
        path = root / name
        files += (
            sorted(p for p in path.rglob("*") if p.suffix in (".java", ".xml"))
            if path.is_dir()
            else [path]
            if path.is_file()
            else []
        )
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def operator_jars(folder: str | Path, root: Path = ROOT) -> list[str]:
    """The operators' jar (`make operators`), or SetupError if it is missing or older than its sources."""
    jars = list_jars(folder, "paths.operator_jars", "make operators")
    expected = operator_sources_digest(root)
    recorded = Path(folder) / OPERATOR_DIGEST
    if expected is not None and (not recorded.is_file() or recorded.read_text().strip() != expected):
        raise SetupError(
            f"the stream's operators in {folder} (paths.operator_jars) were built from other sources "
            "than features/jvm holds now: run `make operators` (part of `make setup`) to rebuild them"
        )
    return jars


def session_jars(cfg: Config) -> list[str]:
    """The jars the session adds: those of `paths.spark_jars` and `paths.operator_jars`. None for a driver
    that spark-submit started where the project's folders are not, as in YARN's cluster mode (the driver in a
    container): spark-submit's `--jars` (spark-submit/submit.sh) brought them already."""
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # this Python was started by spark-submit's JVM
    if submitted and not Path(cfg.path("paths.spark_jars")).is_dir():
        return []
    return list_jars(cfg.path("paths.spark_jars")) + operator_jars(cfg.path("paths.operator_jars"))


def spark_settings(cfg: Config) -> dict[str, str]:
    """Return the Spark settings this project sets on every session (jars, Delta, RocksDB, UTC, Arrow)."""
    jars = session_jars(cfg)
    master = cfg.get("spark.master")
    local = bool(master) and str(master).startswith("local")
    jar_settings = {"spark.driver.extraClassPath": os.pathsep.join(jars)} if local else {"spark.jars": ",".join(jars)}
    settings = {
        # In local mode the executors are the driver's JVM: the jars go on its class path where they are.
        # spark.jars would copy each of them (700 MB with the AWS SDK) into a temporary folder at every
        # start, a folder a killed job leaves behind. A cluster's executors are sent them (spark.jars).
        **(jar_settings if jars else {}),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB_PROVIDER,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": cfg.path("paths.warehouse"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": str(cfg.get("spark.shuffle_partitions")),
        "spark.ui.enabled": str(bool(cfg.get("spark.ui_enabled"))).lower(),
        # The stateful operators run in processing-time mode (for state TTL), in which Spark would run an
        # empty micro-batch at every trigger, forever under availableNow. Nothing here uses a watermark,
        # so empty batches have no work to do; TTL is enforced in the batches that have data.
        "spark.sql.streaming.noDataMicroBatches.enabled": "false",
        # A commit writes the changed state rows, not a snapshot of the RocksDB files (benchmarks/state_layout.py)
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # A cached frame is kept uncompressed: the stream caches each micro-batch only for the few seconds
        # its sinks read it, and choosing an encoding per column costs CPU there (make bench-stream)
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
    }
    settings.update(s3a_settings(cfg))
    if local:
        # Python workers must be this interpreter (the project's venv), whatever PATH says.
        settings["spark.pyspark.python"] = sys.executable
        settings["spark.pyspark.driver.python"] = sys.executable
    extra = {str(k): str(v) for k, v in (cfg.get("spark.extra") or {}).items()}
    if local and "spark.driver.extraClassPath" in extra:  # a class path of the user's comes after the jars
        extra["spark.driver.extraClassPath"] = os.pathsep.join(
            (settings["spark.driver.extraClassPath"], extra["spark.driver.extraClassPath"])
        )
    settings.update(extra)
    return settings


def s3a_settings(cfg: Config) -> dict[str, str]:
    """Hadoop's S3A settings of `s3.*`: the endpoint, path-style access and region of a non-AWS S3 API."""
    settings: dict[str, str] = {}
    if cfg.get("s3.path_style_access"):
        settings["spark.hadoop.fs.s3a.path.style.access"] = "true"
    if cfg.get("s3.endpoint"):
        settings["spark.hadoop.fs.s3a.endpoint"] = str(cfg.get("s3.endpoint"))
    if cfg.get("s3.region"):
        settings["spark.hadoop.fs.s3a.endpoint.region"] = str(cfg.get("s3.region"))
    return settings


def configure_spark(builder: SparkSession.Builder, cfg: Config) -> SparkSession.Builder:
    """Add this project's settings to a SparkSession builder and return it.

    Args:
        builder: a `SparkSession.builder`, possibly with settings of the caller's.
        cfg: the loaded configuration (spark.* and paths.spark_jars are read).

    Returns:
        The same builder, for chaining.

    Example:
        >>> spark = configure_spark(SparkSession.builder.appName("x"), load_config()).getOrCreate()
    """
    master = cfg.get("spark.master")
    if master:
        builder = builder.master(str(master))
    if master and str(master).startswith("local"):
        # A session started from Python takes its workers' interpreter from PYSPARK_PYTHON, not from
        # spark.pyspark.python (which only spark-submit reads): without it workers run the system python3.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in spark_settings(cfg).items():
        builder = builder.config(key, value)
    return builder


def get_spark(cfg: Config, app: str) -> SparkSession:
    """Build (or reuse) the session for one job, named ``<spark.app_name>-<app>``."""
    from pyspark.sql import SparkSession

    spark = configure_spark(SparkSession.builder.appName(f"{cfg.get('spark.app_name')}-{app}"), cfg).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    quiet_state_server(spark)
    return spark


# The stream's state server logs a WARN at each lookup of a key not in state yet, i.e. once per new card
# (a million lines for a million cards); a new card is expected. spark-submit/log4j2.properties does the
# same for the executors of a cluster.
STATE_SERVER_LOGGER = "org.apache.spark.sql.execution.python.streaming.TransformWithStateInPySparkStateServer"


def quiet_state_server(spark: SparkSession) -> None:
    """Log only errors of the state server, in this JVM (the driver, and in local mode the executors)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        STATE_SERVER_LOGGER, jvm.org.apache.logging.log4j.Level.ERROR
    )
