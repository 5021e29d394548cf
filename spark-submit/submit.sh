#!/usr/bin/env bash
# Submit one of the project's jobs with spark-submit, with exactly the jars of spark-submit/pom.xml.
#
#   spark-submit/submit.sh [--master M] [--deploy-mode client|cluster] [--image IMAGE] JOB.py [job options]
#
#   local:       spark-submit/submit.sh jobs/stream/ingest_stream.py --env local --available-now
#   YARN:        spark-submit/submit.sh --master yarn --deploy-mode cluster jobs/stream/ingest_stream.py --env cluster
#   Kubernetes:  spark-submit/submit.sh --master k8s://https://API:6443 --deploy-mode cluster \
#                    --image registry/fraud:0.1.0 jobs/stream/ingest_stream.py --env cluster
#
# What it ships: the jars of .jars/spark (make jars) and .jars/operators (make operators) with --jars; the packages jobs/, features/, models/
# as one zip with --py-files (not jobs/dev/, the local broker); the conf/ folder as an archive unpacked as ./conf next to the driver and
# executors (FRAUD_CONF_DIR points there). Python dependencies (setup.cfg) must be installed on the nodes
# (or in the image on Kubernetes); spark-submit/log4j2.properties is the driver's and executors' logging
# configuration. Secrets come from the environment, never from conf/.
# Extra spark-submit options: SPARK_SUBMIT_OPTS_EXTRA="--conf spark.executor.memory=8g ..."
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
master=${MASTER:-local[2]}
deploy_mode=client
image=""
while [ $# -gt 0 ]; do
  case "$1" in
    --master) master=$2; shift 2 ;;
    --deploy-mode) deploy_mode=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
job=${1:?"usage: spark-submit/submit.sh [--master M] [--deploy-mode D] [--image I] JOB.py [options] (see --help)"}
shift
[ -f "$root/$job" ] || [ -f "$job" ] || { echo "submit: job file $job not found (expected e.g. jobs/stream/ingest_stream.py)" >&2; exit 2; }
jar_dir="$root/.jars/spark"
operator_dir="$root/.jars/operators"
ls "$jar_dir"/*.jar >/dev/null 2>&1 || { echo "submit: no jars in $jar_dir: run \`make jars\` first" >&2; exit 2; }
ls "$operator_dir"/*.jar >/dev/null 2>&1 || { echo "submit: no jar in $operator_dir: run \`make operators\` first" >&2; exit 2; }
jars=$(ls "$jar_dir"/*.jar "$operator_dir"/*.jar | paste -sd, -)
spark_submit=${SPARK_SUBMIT:-$(command -v spark-submit || echo "$root/.venv/bin/spark-submit")}

dist="$root/.state/dist"
mkdir -p "$dist"
python=${PYTHON:-$(command -v python3 || echo "$root/.venv/bin/python")}
# submissions that run at once (a schedule's jobs) share these zips: each is built aside and replaces the
# shared one in one rename, only when its content changed, so no job reads a zip another is writing
stage=$(mktemp -d "$dist/.build-XXXXXX")
trap 'rm -rf "$stage"' EXIT
# the packages without jobs/dev (the local broker: development only) and without bytecode caches
(cd "$root" && "$python" - "$stage/fraud_pkgs.zip" <<'PY'
import pathlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
    for top in ("jobs", "features", "models"):
        for path in sorted(pathlib.Path(top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.parts[:2] != ("jobs", "dev"):
                archive.write(path)
PY
)
(cd "$root" && "$python" -m zipfile -c "$stage/conf.zip" conf)
for zip in fraud_pkgs.zip conf.zip; do
  cmp -s "$stage/$zip" "$dist/$zip" || mv -f "$stage/$zip" "$dist/$zip"
done
rm -rf "$stage"
trap - EXIT

args=(--master "$master" --deploy-mode "$deploy_mode" --name "fraud-$(basename "$job" .py)"
      --jars "$jars" --py-files "$dist/fraud_pkgs.zip" --archives "$dist/conf.zip#confpkg"
      --conf spark.executorEnv.FRAUD_CONF_DIR=confpkg/conf
      --files "$root/spark-submit/log4j2.properties"
      --conf spark.executor.extraJavaOptions=-Dlog4j2.configurationFile=log4j2.properties)
# -Xss64m: the streaming query's thread overflowed the default 1 MB stack in a regular expression (see
# conf/local/spark.yaml)
if [ "$deploy_mode" = client ]; then
  args+=(--driver-java-options "-Xss64m -Dlog4j2.configurationFile=$root/spark-submit/log4j2.properties")
else
  args+=(--conf "spark.driver.extraJavaOptions=-Xss64m -Dlog4j2.configurationFile=log4j2.properties")
fi
case "$master" in
  yarn) args+=(--conf spark.yarn.appMasterEnv.FRAUD_CONF_DIR=confpkg/conf) ;;
  k8s://*)
    [ -n "$image" ] || { echo "submit: Kubernetes needs --image (an image with Python, Java 17 and the project's deps)" >&2; exit 2; }
    args+=(--conf spark.kubernetes.container.image="$image"
           --conf spark.kubernetes.driverEnv.FRAUD_CONF_DIR=confpkg/conf) ;;
esac
if [ "$deploy_mode" = client ]; then export FRAUD_CONF_DIR=${FRAUD_CONF_DIR:-$root/conf}; fi
# shellcheck disable=SC2086
exec "$spark_submit" "${args[@]}" ${SPARK_SUBMIT_OPTS_EXTRA:-} "$root/$job" "$@"
