package io.frauddetect.features;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
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
 * earlier in the batch) goes out flagged, with null windows, and counts nowhere. With labels, a label row
 * of a transaction the key counted (same id, hour and tag) replaces the label counted for it and adds the
 * difference to the label measures at the transaction's hour; it goes out with null windows, the
 * difference and the label before it (both null when no such transaction is counted).
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
  private final int labelRowIndex;   // -1: the operator takes no labels
  private final int labelValueIndex;
  private final int tagIndex;
  private final int orderIndex;
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
    labelRowIndex = spec.labels() ? input.fieldIndex(spec.labelRow) : -1;
    labelValueIndex = spec.labels() ? input.fieldIndex(spec.labelValue) : -1;
    tagIndex = spec.labels() ? input.fieldIndex(spec.labelTag) : -1;
    orderIndex = spec.labels() ? input.fieldIndex(spec.labelOrder) : -1;
    outWidth = keep.length + spec.windowNames.length + (spec.dedupe() ? 1 : 0) + (spec.labels() ? 2 : 0);
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
    long[] ids = initial.<Long>getList(3).stream().mapToLong(Long::longValue).toArray();
    int[] idHours = initial.<Integer>getList(4).stream().mapToInt(Integer::intValue).toArray();
    int[] tags = new int[ids.length];
    byte[] labels = new byte[ids.length];
    if (initial.length() > 6) { // the ids' tags and labels
      List<Integer> t = initial.getList(5);
      List<Integer> l = initial.getList(6);
      for (int i = 0; i < ids.length; i++) {
        tags[i] = t.get(i) == null ? HourlyBuckets.ANY_TAG : t.get(i);
        labels[i] = (byte) (l.get(i) == null ? 0 : (int) l.get(i));
      }
    } else {
      Arrays.fill(tags, HourlyBuckets.ANY_TAG);
    }
    byte[] stored = buckets.get();
    HourlyBuckets current = HourlyBuckets.decode(stored, measures);
    store(current.plus(h, s, measures).plusIds(ids, idHours, tags, labels), stored == null,
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
    for (Row row : input) out.add(output(row, null, -1, false, null, null));
    return out;
  }

  private boolean isLabel(Row row) {
    return labelRowIndex >= 0 && !row.isNullAt(labelRowIndex) && row.getBoolean(labelRowIndex);
  }

  private int tagOf(Row row) {
    return row.isNullAt(tagIndex) ? HourlyBuckets.ANY_TAG : ((Number) row.get(tagIndex)).intValue();
  }

  private List<Row> update(List<Row> input, long nowMs) {
    int n = input.size();
    int measures = spec.measures.length;
    long[] seconds = new long[n];
    long[] ids = new long[n];
    boolean[] label = new boolean[n];
    long[] arrival = new long[n];
    for (int i = 0; i < n; i++) {
      Row row = input.get(i);
      seconds[i] = row.getLong(secondsIndex);
      ids[i] = row.getLong(idIndex);
      label[i] = isLabel(row);
      arrival[i] = label[i] && !row.isNullAt(orderIndex) ? row.getLong(orderIndex) : 0L;
    }
    // event order: time, then id; a label after its transaction, labels of one id in their order
    Integer[] order = new Integer[n];
    for (int i = 0; i < n; i++) order[i] = i;
    Arrays.sort(order, (a, b) -> seconds[a] != seconds[b] ? Long.compare(seconds[a], seconds[b])
        : ids[a] != ids[b] ? Long.compare(ids[a], ids[b])
        : label[a] != label[b] ? Boolean.compare(label[a], label[b]) : Long.compare(arrival[a], arrival[b]));

    byte[] stored = buckets.get(); // null when the key has no state yet
    HourlyBuckets state = HourlyBuckets.decode(stored, measures);
    byte[] labels = state.idLabels; // copied at the first label that changes one
    boolean labelsChanged = false;
    boolean[] duplicate = new boolean[n];
    Integer[] increment = new Integer[n];
    Integer[] previous = new Integer[n];
    Map<Long, Integer> fresh = new HashMap<>(); // id -> its index among the ids this batch counts
    List<Long> newIds = new ArrayList<>();
    List<Integer> newIdHours = new ArrayList<>();
    List<Integer> newIdTags = new ArrayList<>();
    List<Byte> newIdLabels = new ArrayList<>();
    int[] hour = new int[n];
    double[] values = new double[n * measures];
    int[] eventOf = new int[n];
    int events = 0;
    for (int i : order) {
      Row row = input.get(i);
      int h = hourOf(seconds[i]);
      if (label[i]) {
        // the transaction it labels: counted by this key at this hour with this tag, in this batch or before
        int tag = tagOf(row);
        Integer f = fresh.get(ids[i]);
        int at = f == null ? state.indexOf(ids[i]) : -1;
        int current;
        if (f != null && newIdHours.get(f) == h && (newIdTags.get(f) == tag || newIdTags.get(f) == HourlyBuckets.ANY_TAG)) {
          current = newIdLabels.get(f);
        } else if (at >= 0 && state.idHours[at] == h && (state.idTags[at] == tag || state.idTags[at] == HourlyBuckets.ANY_TAG)) {
          current = labels[at];
        } else {
          continue; // not found: goes out with a null increment
        }
        int value = row.isNullAt(labelValueIndex) ? 0 : row.getInt(labelValueIndex);
        increment[i] = value - current;
        previous[i] = current;
        if (f != null) {
          newIdLabels.set(f, (byte) value);
        } else {
          if (!labelsChanged) {
            labels = labels.clone();
            labelsChanged = true;
          }
          labels[at] = (byte) value;
        }
        if (value == current) continue; // a repeated label changes no sum
        hour[events] = h;
        for (int m : spec.labelMeasures) values[events * measures + m] = value - current;
        events++;
        continue;
      }
      if (spec.dedupe()) {
        if (state.counted(ids[i]) || fresh.containsKey(ids[i])) {
          duplicate[i] = true;
          continue;
        }
        fresh.put(ids[i], newIds.size());
        newIds.add(ids[i]);
        newIdHours.add(h);
        newIdTags.add(spec.labels() ? tagOf(row) : HourlyBuckets.ANY_TAG);
        newIdLabels.add((byte) (spec.labels() && !row.isNullAt(labelValueIndex) ? row.getInt(labelValueIndex) : 0));
      }
      hour[events] = h;
      for (int m = 0; m < measures; m++) {
        values[events * measures + m] = row.isNullAt(measureIndex[m]) ? 0.0 : row.getDouble(measureIndex[m]);
      }
      eventOf[i] = events++;
    }
    double[] windows = new double[events * spec.windowNames.length];
    HourlyBuckets base = labelsChanged ? state.withLabels(labels) : state;
    HourlyBuckets after = base.update(Arrays.copyOf(hour, events), Arrays.copyOf(values, events * measures), measures,
        spec.windowMeasure, spec.windowFirst, spec.windowLast, spec.lookbackHours,
        newIds.stream().mapToLong(Long::longValue).toArray(), newIdHours.stream().mapToInt(Integer::intValue).toArray(),
        newIdTags.stream().mapToInt(Integer::intValue).toArray(), bytes(newIdLabels), windows);
    if (events > 0 || labelsChanged) store(after, stored == null, nowMs);

    List<Row> out = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      Row row = input.get(i);
      if (label[i]) out.add(output(row, null, -1, false, increment[i], previous[i]));
      else if (duplicate[i]) out.add(output(row, null, -1, true, null, null));
      else out.add(output(row, windows, eventOf[i], false, null, null));
    }
    return out;
  }

  private static byte[] bytes(List<Byte> list) {
    byte[] out = new byte[list.size()];
    for (int i = 0; i < out.length; i++) out[i] = list.get(i);
    return out;
  }

  private Row output(Row row, double[] windows, int event, boolean duplicate, Integer increment, Integer previous) {
    Object[] values = new Object[outWidth];
    for (int i = 0; i < keep.length; i++) values[i] = row.get(keep[i]);
    int count = spec.windowNames.length;
    if (windows != null) {
      for (int w = 0; w < count; w++) values[keep.length + w] = windows[event * count + w];
    }
    int next = keep.length + count;
    if (spec.dedupe()) values[next++] = duplicate;
    if (spec.labels()) {
      values[next++] = increment;
      values[next] = previous;
    }
    return RowFactory.create(values);
  }

  private static int hourOf(long epochSeconds) {
    return (int) Math.floorDiv(epochSeconds, 3600L);
  }
}
