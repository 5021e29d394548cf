package io.frauddetect.features;

import org.apache.spark.api.java.function.MapFunction;
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

  private WindowedSums() {}

  /**
   * Group the rows by the spec's key and add its windows to each, with Spark's {@code transformWithState}
   * (Append mode; processing-time mode when the state has a TTL).
   *
   * @param rows the input; a row whose key is null or any of whose `bypass` columns is true goes out
   *     unchanged, with null windows
   * @param specJson the operator's spec (see WindowSpec)
   * @param initial the state to start from when the query has no checkpoint yet: one row per key with columns
   *     (key bigint, hours array&lt;int&gt; ascending, sums array&lt;double&gt; hours x measures, ids
   *     array&lt;bigint&gt; of the transactions counted, id_hours array&lt;int&gt; their hours); Spark reads it
   *     in the query's first batch only
   * @return the rows with the windows (and the duplicate flag)
   */
  public static Dataset<Row> apply(Dataset<Row> rows, String specJson, Dataset<Row> initial) {
    WindowSpec spec = WindowSpec.parse(specJson);
    StructType input = rows.schema();
    int keyIndex = input.fieldIndex(spec.key);
    int[] bypass = new int[spec.bypass.length];
    for (int i = 0; i < bypass.length; i++) bypass[i] = input.fieldIndex(spec.bypass[i]);
    MapFunction<Row, Long> keyOf = row -> {
      for (int b : bypass) {
        if (!row.isNullAt(b) && row.getBoolean(b)) return BYPASS_KEY;
      }
      return row.isNullAt(keyIndex) ? BYPASS_KEY : ((Number) row.get(keyIndex)).longValue();
    };
    KeyValueGroupedDataset<Long, Row> grouped = rows.groupByKey(keyOf, Encoders.LONG());
    MapFunction<Row, Long> initialKey = row -> row.getLong(0);
    KeyValueGroupedDataset<Long, Row> seed = initial.groupByKey(initialKey, Encoders.LONG());
    TimeMode mode = spec.ttlDays == null ? TimeMode.None() : TimeMode.ProcessingTime();
    return grouped.transformWithState(new WindowedSumsProcessor(spec, input), mode, OutputMode.Append(), seed,
        Encoders.row(spec.outputSchema(input)), Encoders.row(initial.schema()));
  }
}
