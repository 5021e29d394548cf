package io.frauddetect.features;

import static org.apache.spark.sql.functions.coalesce;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.lit;
import static org.apache.spark.sql.functions.when;

import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.KeyValueGroupedDataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.types.StructType;

/**
 * The entry point Python calls (features/operators.py, through py4j): one stateful operator that adds
 * windowed sums per key to every row of a stream.
 */
public final class WindowedSums {
  /** The group of the rows that bypass the state (a message, not a transaction). */
  static final long BYPASS_KEY = Long.MIN_VALUE;
  /** The column that holds each row's group, dropped from the output. */
  static final String GROUP = "operator_group";

  private WindowedSums() {}

  /**
   * Group the rows by the spec's key and add its windows to each, with Spark's {@code transformWithState}
   * (Append mode; processing-time mode, for the idle-expiry timers, when the spec has a TTL).
   *
   * @param rows the input; a row whose key, time or id is null, or any of whose `bypass` columns is true,
   *     goes out unchanged, with null windows
   * @param specJson the operator's spec (see WindowSpec)
   * @param initial the state to start from when the query has no checkpoint yet: one row per key with columns
   *     (key bigint, hours array&lt;int&gt; ascending, sums array&lt;double&gt; hours x measures, ids
   *     array&lt;bigint&gt; of the transactions counted, id_hours array&lt;int&gt; their hours); Spark reads it
   *     in the query's first batch only
   * @return the rows with the windows (and the duplicate flag)
   */
  public static Dataset<Row> apply(Dataset<Row> rows, String specJson, Dataset<Row> initial) {
    WindowSpec spec = WindowSpec.parse(specJson);
    // the group of each row as a column, so that grouping reads one column (a key function would
    // deserialize every row once more just to compute it)
    Column bypassed = lit(false);
    for (String b : spec.bypass) bypassed = bypassed.or(coalesce(col(b), lit(false)));
    // a row without its key, time or id cannot be placed in any state: it goes through untouched
    Column incomplete = col(spec.key).isNull().or(col(spec.seconds).isNull()).or(col(spec.id).isNull());
    Column group = when(bypassed.or(incomplete), lit(BYPASS_KEY)).otherwise(col(spec.key).cast("long"));
    Dataset<Row> keyed = rows.withColumn(GROUP, group);
    StructType input = keyed.schema();
    KeyValueGroupedDataset<Long, Row> grouped = keyed.groupBy(col(GROUP)).as(Encoders.LONG(), Encoders.row(input));
    KeyValueGroupedDataset<Long, Row> seed = initial.groupBy(col("key")).as(Encoders.LONG(), Encoders.row(initial.schema()));
    TimeMode mode = spec.ttlMs == null ? TimeMode.None() : TimeMode.ProcessingTime();
    return grouped.transformWithState(new WindowedSumsProcessor(spec, input), mode, OutputMode.Append(), seed,
        Encoders.row(spec.outputSchema(input)), Encoders.row(initial.schema()));
  }
}
