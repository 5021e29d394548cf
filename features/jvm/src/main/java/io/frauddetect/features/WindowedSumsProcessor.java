package io.frauddetect.features;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.streaming.ExpiredTimerInfo;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessorWithInitialState;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import org.apache.spark.sql.types.StructType;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Adds a key's windows to each of its rows, micro-batch by micro-batch, in event order; keeps the key's
 * hourly buckets in one value. Rows grouped under {@link WindowedSums#BYPASS_KEY} go out unchanged with
 * null windows and touch no state. With duplicate detection, a row whose id the key counted before (or
 * earlier in the batch) goes out flagged, with null windows, and counts nowhere.
 *
 * <p>A key idle for the spec's TTL is removed by a processing-time timer: one is registered when the key's
 * state is created, and when it fires, the key is removed if it was not updated since, else the timer is
 * set again for TTL after the last update. Spark's own state TTL does the same at the price of an index
 * write and delete at every update, which made the card operator 2.4 times slower with a million cards
 * (benchmarks/results/state_layout.json).
 */
final class WindowedSumsProcessor extends StatefulProcessorWithInitialState<Long, Row, Row, Row> {
  private static final long serialVersionUID = 1L;

  private final WindowSpec spec;
  private final int[] keep;          // input indexes that go out
  private final int[] measureIndex;
  private final int secondsIndex;
  private final int idIndex;
  private final int exemptIndex;     // -1: no row is exempt from duplicate detection
  private final int outWidth;
  private transient ValueState<byte[]> buckets;

  WindowedSumsProcessor(WindowSpec spec, StructType input) {
    this.spec = spec;
    List<String> dropped = List.of(spec.drop);
    List<Integer> kept = new ArrayList<>();
    for (int i = 0; i < input.fields().length; i++) {
      if (!dropped.contains(input.fields()[i].name())) kept.add(i);
    }
    keep = kept.stream().mapToInt(Integer::intValue).toArray();
    measureIndex = Arrays.stream(spec.measures).mapToInt(input::fieldIndex).toArray();
    secondsIndex = input.fieldIndex(spec.seconds);
    idIndex = input.fieldIndex(spec.id);
    exemptIndex = spec.dedupeExempt != null ? input.fieldIndex(spec.dedupeExempt) : -1;
    outWidth = keep.length + spec.windowNames.length + (spec.dedupe() ? 1 : 0);
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    buckets = getHandle().getValueState("buckets", Encoders.BINARY(), TTLConfig.NONE());
  }

  /** Write a key's buckets, updated now; a new key gets its idle-expiry timer. */
  private void store(HourlyBuckets value, boolean created, long nowMs) {
    value.touchedMs = nowMs;
    buckets.update(value.encode());
    if (created && spec.ttlMs != null) getHandle().registerTimer(nowMs + spec.ttlMs);
  }

  @Override
  public scala.collection.Iterator<Row> handleExpiredTimer(Long key, TimerValues timerValues,
                                                           ExpiredTimerInfo expiredTimerInfo) {
    byte[] stored = buckets.get();
    if (stored != null && spec.ttlMs != null) {
      long touched = HourlyBuckets.decode(stored, spec.measures.length).touchedMs;
      if (timerValues.getCurrentProcessingTimeInMs() - touched >= spec.ttlMs) {
        buckets.clear();
      } else {
        getHandle().registerTimer(touched + spec.ttlMs);
      }
    }
    return CollectionConverters.asScala(java.util.Collections.<Row>emptyIterator());
  }

  @Override
  public void handleInitialState(Long key, Row initial, TimerValues timerValues) {
    List<Integer> hours = initial.getList(1);
    List<Double> sums = initial.getList(2);
    int measures = spec.measures.length;
    int[] h = hours.stream().mapToInt(Integer::intValue).toArray();
    double[] s = sums.stream().mapToDouble(Double::doubleValue).toArray();
    if (s.length != h.length * measures) {
      throw new IllegalArgumentException("initial state of key " + key + ": expected " + h.length * measures
          + " sums (" + h.length + " hours x " + measures + " measures), found " + s.length);
    }
    List<Long> ids = initial.getList(3);
    List<Integer> idHours = initial.getList(4);
    byte[] stored = buckets.get();
    HourlyBuckets current = HourlyBuckets.decode(stored, measures);
    store(current.plus(h, s, measures).plusIds(ids.stream().mapToLong(Long::longValue).toArray(),
        idHours.stream().mapToInt(Integer::intValue).toArray()), stored == null,
        timerValues.getCurrentProcessingTimeInMs());
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(Long key, scala.collection.Iterator<Row> rows,
                                                        TimerValues timerValues) {
    List<Row> input = new ArrayList<>();
    CollectionConverters.asJava(rows).forEachRemaining(input::add);
    List<Row> out = key == WindowedSums.BYPASS_KEY ? passThrough(input)
        : update(input, timerValues.getCurrentProcessingTimeInMs());
    return CollectionConverters.asScala(out.iterator());
  }

  private List<Row> passThrough(List<Row> input) {
    List<Row> out = new ArrayList<>(input.size());
    for (Row row : input) out.add(output(row, null, -1, false));
    return out;
  }

  private List<Row> update(List<Row> input, long nowMs) {
    int n = input.size();
    int measures = spec.measures.length;
    long[] seconds = new long[n];
    long[] ids = new long[n];
    for (int i = 0; i < n; i++) {
      seconds[i] = input.get(i).getLong(secondsIndex);
      ids[i] = input.get(i).getLong(idIndex);
    }
    Integer[] order = new Integer[n];
    for (int i = 0; i < n; i++) order[i] = i;
    Arrays.sort(order, (a, b) -> seconds[a] != seconds[b] ? Long.compare(seconds[a], seconds[b]) : Long.compare(ids[a], ids[b]));

    byte[] stored = buckets.get(); // null when the key has no state yet
    HourlyBuckets state = HourlyBuckets.decode(stored, measures);
    boolean[] duplicate = new boolean[n];
    List<Long> newIds = new ArrayList<>();
    List<Integer> newIdHours = new ArrayList<>();
    if (spec.dedupe()) {
      Set<Long> seen = new HashSet<>(); // ids counted earlier in this batch
      for (int i : order) {
        Row row = input.get(i);
        if (exemptIndex >= 0 && !row.isNullAt(exemptIndex) && row.getBoolean(exemptIndex)) continue;
        if (state.counted(ids[i]) || seen.contains(ids[i])) {
          duplicate[i] = true;
        } else {
          seen.add(ids[i]);
          newIds.add(ids[i]);
          newIdHours.add(hourOf(seconds[i]));
        }
      }
    }
    int events = 0;
    for (int i = 0; i < n; i++) if (!duplicate[i]) events++;
    int[] hour = new int[events];
    double[] values = new double[events * measures];
    int[] eventOf = new int[n];
    int e = 0;
    for (int i : order) {
      if (duplicate[i]) continue;
      Row row = input.get(i);
      hour[e] = hourOf(seconds[i]);
      for (int m = 0; m < measures; m++) {
        values[e * measures + m] = row.isNullAt(measureIndex[m]) ? 0.0 : row.getDouble(measureIndex[m]);
      }
      eventOf[i] = e++;
    }
    double[] windows = new double[events * spec.windowNames.length];
    HourlyBuckets after = state.update(hour, values, measures, spec.windowMeasure, spec.windowFirst,
        spec.windowLast, spec.lookbackHours, newIds.stream().mapToLong(Long::longValue).toArray(),
        newIdHours.stream().mapToInt(Integer::intValue).toArray(), windows);
    if (events > 0) store(after, stored == null, nowMs);

    List<Row> out = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      out.add(duplicate[i] ? output(input.get(i), null, -1, true) : output(input.get(i), windows, eventOf[i], false));
    }
    return out;
  }

  private Row output(Row row, double[] windows, int event, boolean duplicate) {
    Object[] values = new Object[outWidth];
    for (int i = 0; i < keep.length; i++) values[i] = row.get(keep[i]);
    int count = spec.windowNames.length;
    if (windows != null) {
      for (int w = 0; w < count; w++) values[keep.length + w] = windows[event * count + w];
    }
    if (spec.dedupe()) values[outWidth - 1] = duplicate;
    return RowFactory.create(values);
  }

  private static int hourOf(long epochSeconds) {
    return (int) Math.floorDiv(epochSeconds, 3600L);
  }
}
