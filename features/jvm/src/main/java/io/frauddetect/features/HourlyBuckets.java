package io.frauddetect.features;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * One key's hourly buckets: for each hour that holds events, the sum of each measure; and, when the
 * operator drops duplicates, the ids of the transactions it counted, each with its hour, its tag (another
 * key of the transaction, which a label of it must name) and the label the key counts for it.
 *
 * <p>The arithmetic knows no feature: a window is a measure index and a range of hours relative to an
 * event's hour (features/definitions.py, handed over as data). Windows of whole hours are what makes the
 * state exact: the batch job (features/batch.py) sums the same hours.
 */
final class HourlyBuckets {
  static final int DAY_HOURS = 24;

  /** The tag of an id whose tag is not known (a state value written without tags): any tag matches it. */
  static final int ANY_TAG = Integer.MIN_VALUE;

  final int[] hours;   // ascending, distinct
  final double[] sums; // hours.length x measures, row-major
  final long[] ids;    // ascending, distinct
  final int[] idHours; // the hour of each id, for expiry
  final int[] idTags;  // the tag of each id
  final byte[] idLabels; // the label counted for each id (0 or 1)
  long touchedMs;      // processing time of the key's last update, for the idle expiry

  HourlyBuckets(int[] hours, double[] sums, long[] ids, int[] idHours, int[] idTags, byte[] idLabels) {
    this.hours = hours;
    this.sums = sums;
    this.ids = ids;
    this.idHours = idHours;
    this.idTags = idTags;
    this.idLabels = idLabels;
  }

  static HourlyBuckets empty() {
    return new HourlyBuckets(new int[0], new double[0], new long[0], new int[0], new int[0], new byte[0]);
  }

  /** The state value: the last update's time, counts, then hours, sums, ids, id hours, id tags and id labels,
   *  big-endian. */
  byte[] encode() {
    ByteBuffer out = ByteBuffer.allocate(16 + 4 * hours.length + 8 * sums.length + 17 * ids.length);
    out.putLong(touchedMs).putInt(hours.length).putInt(ids.length);
    for (int h : hours) out.putInt(h);
    for (double s : sums) out.putDouble(s);
    for (long id : ids) out.putLong(id);
    for (int h : idHours) out.putInt(h);
    for (int t : idTags) out.putInt(t);
    out.put(idLabels);
    return out.array();
  }

  static HourlyBuckets decode(byte[] bytes, int measures) {
    if (bytes == null || bytes.length == 0) return empty();
    ByteBuffer in = ByteBuffer.wrap(bytes);
    long touchedMs = in.getLong();
    int buckets = in.getInt();
    int idCount = in.getInt();
    int[] hours = new int[buckets];
    double[] sums = new double[buckets * measures];
    long[] ids = new long[idCount];
    int[] idHours = new int[idCount];
    for (int i = 0; i < buckets; i++) hours[i] = in.getInt();
    for (int i = 0; i < sums.length; i++) sums[i] = in.getDouble();
    for (int i = 0; i < idCount; i++) ids[i] = in.getLong();
    for (int i = 0; i < idCount; i++) idHours[i] = in.getInt();
    int[] idTags = new int[idCount];
    byte[] idLabels = new byte[idCount];
    if (in.remaining() >= 5 * idCount) { // a value written without tags and labels: any tag, no label counted
      for (int i = 0; i < idCount; i++) idTags[i] = in.getInt();
      in.get(idLabels);
    } else {
      Arrays.fill(idTags, ANY_TAG);
    }
    HourlyBuckets decoded = new HourlyBuckets(hours, sums, ids, idHours, idTags, idLabels);
    decoded.touchedMs = touchedMs;
    return decoded;
  }

  boolean counted(long id) {
    return Arrays.binarySearch(ids, id) >= 0;
  }

  /** The index of a counted id, or a negative number. */
  int indexOf(long id) {
    return Arrays.binarySearch(ids, id);
  }

  /** These buckets with other labels for their ids (one per id, in the ids' order). */
  HourlyBuckets withLabels(byte[] labels) {
    HourlyBuckets out = new HourlyBuckets(hours, sums, ids, idHours, idTags, labels);
    out.touchedMs = touchedMs;
    return out;
  }

  /** Buckets before this hour are past every window: the look-back before the newest hour, rounded down to a
   *  whole day (UTC), so that expiry moves a day at a time. */
  static int expiryHour(int newest, int lookbackHours) {
    return Math.floorDiv(newest - lookbackHours, DAY_HOURS) * DAY_HOURS;
  }

  /**
   * Compute the windows of a micro-batch's events of this key and fold the events into new buckets.
   *
   * @param hour each event's hour, the events in event order (time, then transaction id)
   * @param values each event's measures, events x measures, row-major
   * @param measures how many measures an event carries
   * @param windowMeasure, windowFirst, windowLast each window's measure and hour range: hours
   *     [hour + first, hour + last]; last == 0 means the event's own hour up to and including the event
   * @param lookbackHours how far back the windows reach: older buckets are dropped
   * @param newIds ids to remember with this update (with their hours, tags and labels in newIdHours,
   *     newIdTags and newIdLabels), or null
   * @param out receives the windows, events x windows, row-major
   * @return the new buckets
   */
  HourlyBuckets update(int[] hour, double[] values, int measures, int[] windowMeasure, int[] windowFirst,
                       int[] windowLast, int lookbackHours, long[] newIds, int[] newIdHours, int[] newIdTags,
                       byte[] newIdLabels, double[] out) {
    int n = hour.length;
    int merged = hours.length + n;
    // the state's buckets and the events in one sequence: by hour, a bucket before the events of its hour
    int[] mergedHour = new int[merged];
    double[] cumulative = new double[(merged + 1) * measures]; // cumulative[i] = sum of the first i
    int[] position = new int[n];
    int b = 0;
    int e = 0;
    for (int i = 0; i < merged; i++) {
      boolean bucket = e == n || (b < hours.length && hours[b] <= hour[e]);
      int base = i * measures;
      if (bucket) {
        mergedHour[i] = hours[b];
        for (int m = 0; m < measures; m++) cumulative[base + measures + m] = cumulative[base + m] + sums[b * measures + m];
        b++;
      } else {
        mergedHour[i] = hour[e];
        position[e] = i;
        for (int m = 0; m < measures; m++) cumulative[base + measures + m] = cumulative[base + m] + values[e * measures + m];
        e++;
      }
    }
    int windows = windowMeasure.length;
    for (int j = 0; j < n; j++) {
      for (int w = 0; w < windows; w++) {
        int from = lowerBound(mergedHour, hour[j] + windowFirst[w]);
        int to = windowLast[w] == 0 ? position[j] + 1 : lowerBound(mergedHour, hour[j] + windowLast[w] + 1);
        int m = windowMeasure[w];
        out[j * windows + w] = to > from ? cumulative[to * measures + m] - cumulative[from * measures + m] : 0.0;
      }
    }
    return fold(mergedHour, cumulative, measures, lookbackHours, newIds, newIdHours, newIdTags, newIdLabels);
  }

  /** The merged sequence summed per hour, without the hours past the look-back; the ids likewise. */
  private HourlyBuckets fold(int[] mergedHour, double[] cumulative, int measures, int lookbackHours, long[] newIds,
                             int[] newIdHours, int[] newIdTags, byte[] newIdLabels) {
    int merged = mergedHour.length;
    if (merged == 0) return this;
    int newest = mergedHour[merged - 1];
    int expiry = expiryHour(newest, lookbackHours);
    int distinct = 0;
    for (int i = 0; i < merged; i++) {
      if (mergedHour[i] >= expiry && (i == 0 || mergedHour[i] != mergedHour[i - 1])) distinct++;
    }
    int[] outHours = new int[distinct];
    double[] outSums = new double[distinct * measures];
    int k = -1;
    for (int i = 0; i < merged; i++) {
      if (mergedHour[i] < expiry) continue;
      if (k < 0 || outHours[k] != mergedHour[i]) outHours[++k] = mergedHour[i];
      for (int m = 0; m < measures; m++) {
        outSums[k * measures + m] += cumulative[(i + 1) * measures + m] - cumulative[i * measures + m];
      }
    }
    HourlyBuckets folded = new HourlyBuckets(outHours, outSums, ids, idHours, idTags, idLabels);
    return newIds == null ? folded.withIds(new long[0], new int[0], new int[0], new byte[0], expiry)
        : folded.withIds(newIds, newIdHours, newIdTags, newIdLabels, expiry);
  }

  /** These buckets with more counted ids (an initial state's), each with its hour, tag and label. */
  HourlyBuckets plusIds(long[] moreIds, int[] moreHours, int[] moreTags, byte[] moreLabels) {
    return withIds(moreIds, moreHours, moreTags, moreLabels, Integer.MIN_VALUE);
  }

  /** These buckets with their ids and more, keeping those whose hour is not before `expiry`, sorted by id. */
  private HourlyBuckets withIds(long[] moreIds, int[] moreHours, int[] moreTags, byte[] moreLabels, int expiry) {
    int n = ids.length + moreIds.length;
    long[] allIds = Arrays.copyOf(ids, n);
    int[] allHours = Arrays.copyOf(idHours, n);
    int[] allTags = Arrays.copyOf(idTags, n);
    byte[] allLabels = Arrays.copyOf(idLabels, n);
    System.arraycopy(moreIds, 0, allIds, ids.length, moreIds.length);
    System.arraycopy(moreHours, 0, allHours, ids.length, moreIds.length);
    System.arraycopy(moreTags, 0, allTags, ids.length, moreIds.length);
    System.arraycopy(moreLabels, 0, allLabels, ids.length, moreIds.length);
    Integer[] keep = new Integer[n];
    int kept = 0;
    for (int i = 0; i < n; i++) {
      if (allHours[i] >= expiry) keep[kept++] = i;
    }
    Integer[] order = Arrays.copyOf(keep, kept);
    Arrays.sort(order, (x, y) -> Long.compare(allIds[x], allIds[y]));
    long[] outIds = new long[kept];
    int[] outHours = new int[kept];
    int[] outTags = new int[kept];
    byte[] outLabels = new byte[kept];
    for (int i = 0; i < kept; i++) {
      outIds[i] = allIds[order[i]];
      outHours[i] = allHours[order[i]];
      outTags[i] = allTags[order[i]];
      outLabels[i] = allLabels[order[i]];
    }
    return new HourlyBuckets(hours, sums, outIds, outHours, outTags, outLabels);
  }

  /** These buckets plus others (an initial state), summed where the hours meet. */
  HourlyBuckets plus(int[] otherHours, double[] otherSums, int measures) {
    int[] allHours = new int[hours.length + otherHours.length];
    double[] allSums = new double[allHours.length * measures];
    int a = 0;
    int o = 0;
    int k = -1;
    while (a < hours.length || o < otherHours.length) {
      boolean mine = o == otherHours.length || (a < hours.length && hours[a] <= otherHours[o]);
      int h = mine ? hours[a] : otherHours[o];
      if (k < 0 || allHours[k] != h) allHours[++k] = h;
      for (int m = 0; m < measures; m++) {
        allSums[k * measures + m] += mine ? sums[a * measures + m] : otherSums[o * measures + m];
      }
      if (mine) a++; else o++;
    }
    return new HourlyBuckets(Arrays.copyOf(allHours, k + 1), Arrays.copyOf(allSums, (k + 1) * measures), ids, idHours,
        idTags, idLabels);
  }

  /** The first index whose hour is at least `hour` (hours ascending). */
  static int lowerBound(int[] sorted, int hour) {
    int lo = 0;
    int hi = sorted.length;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (sorted[mid] < hour) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
}
