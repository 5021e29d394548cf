#!/usr/bin/env bash
# Fetch the JVM jars declared in spark-submit/pom.xml into a folder per profile, with Maven.
#   spark-submit/fetch-jars.sh DEST_DIR [PYSPARK_JARS_DIR]
# DEST_DIR/spark: Spark's extra jars (Kafka connector, Delta, hadoop-aws), without the jars pyspark already
#                 ships (same file name, same version after Maven's mediation against spark-sql, see pom.xml);
# DEST_DIR/kafka: the Kafka broker;
# DEST_DIR/s3proxy: S3Proxy, the tests' S3 API server;
# DEST_DIR/hdfs: Hadoop's MiniDFSCluster and MiniYARNCluster, the tests' HDFS and YARN.
# Each folder is filled in a temporary folder first and moved into place, so an interrupted run leaves
# no half-filled folder behind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:?usage: fetch-jars.sh DEST_DIR [PYSPARK_JARS_DIR]}
pyspark_jars=${2:-}
command -v mvn >/dev/null || { echo "fetch-jars: Maven (mvn) is required to fetch the JVM jars: apt-get install -y maven" >&2; exit 1; }
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
for profile in spark kafka s3proxy hdfs; do
  tmp="$dest/.$profile.tmp"
  rm -rf "$tmp"
  mvn -B -q -f "$here/pom.xml" -P "$profile" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp"
  if [ "$profile" = spark ] && [ -n "$pyspark_jars" ]; then
    for jar in "$tmp"/*.jar; do
      [ -e "$pyspark_jars/$(basename "$jar")" ] && rm -f "$jar"
    done
  fi
  rm -rf "${dest:?}/$profile"
  mv "$tmp" "$dest/$profile"
  echo "fetch-jars: $(ls "$dest/$profile" | wc -l) jars in $dest/$profile"
done
