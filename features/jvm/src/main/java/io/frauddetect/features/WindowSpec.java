package io.frauddetect.features;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * What one operator computes, as handed over by features/operators.py (from features/definitions.py): which
 * columns hold the key, the event time, the id and the measures, and each window's name, measure and hours.
 */
final class WindowSpec implements Serializable {
  private static final long serialVersionUID = 1L;

  final String key;
  final String seconds;
  final String id;
  final String[] measures;
  final String[] windowNames;
  final int[] windowMeasure;
  final int[] windowFirst;
  final int[] windowLast;
  final int lookbackHours;
  final Long ttlMs; // an idle key's state expires after this long (processing time); null: never
  final String[] bypass;
  final String dedupeExempt;    // label increments: never duplicates (null: none)
  final String duplicateColumn; // null: no duplicate detection
  final String[] drop;

  private WindowSpec(JsonNode json) {
    key = text(json, "key");
    seconds = text(json, "seconds");
    id = text(json, "id");
    measures = strings(json, "measures");
    JsonNode windows = required(json, "windows");
    int n = windows.size();
    windowNames = new String[n];
    windowMeasure = new int[n];
    windowFirst = new int[n];
    windowLast = new int[n];
    for (int w = 0; w < n; w++) {
      JsonNode window = windows.get(w);
      windowNames[w] = text(window, "name");
      windowMeasure[w] = List.of(measures).indexOf(text(window, "measure"));
      if (windowMeasure[w] < 0) {
        throw new IllegalArgumentException("window " + windowNames[w] + ": measure " + text(window, "measure")
            + " is not among the measures " + List.of(measures));
      }
      windowFirst[w] = required(window, "first").asInt();
      windowLast[w] = required(window, "last").asInt();
      if (windowLast[w] > 0 || windowFirst[w] > windowLast[w]) {
        throw new IllegalArgumentException("window " + windowNames[w] + ": expected first <= last <= 0, found "
            + windowFirst[w] + ", " + windowLast[w]);
      }
    }
    lookbackHours = required(json, "lookback_hours").asInt();
    ttlMs = json.hasNonNull("ttl_ms") ? json.get("ttl_ms").asLong() : null;
    bypass = strings(json, "bypass");
    dedupeExempt = json.hasNonNull("dedupe_exempt") ? json.get("dedupe_exempt").asText() : null;
    duplicateColumn = json.hasNonNull("duplicate_column") ? json.get("duplicate_column").asText() : null;
    String[] dropped = strings(json, "drop");
    drop = java.util.Arrays.copyOf(dropped, dropped.length + 1);
    drop[dropped.length] = WindowedSums.GROUP;
  }

  static WindowSpec parse(String text) {
    try {
      return new WindowSpec(new ObjectMapper().readTree(text));
    } catch (IOException e) {
      throw new IllegalArgumentException("operator spec: expected JSON, found " + text, e);
    }
  }

  boolean dedupe() {
    return duplicateColumn != null;
  }

  /** The operator's output: the input's columns but `drop`, then one double per window, then the duplicate
   *  flag when duplicates are detected. */
  StructType outputSchema(StructType input) {
    List<StructField> fields = new ArrayList<>();
    List<String> dropped = List.of(drop);
    for (StructField f : input.fields()) {
      if (!dropped.contains(f.name())) fields.add(f);
    }
    for (String name : windowNames) fields.add(DataTypes.createStructField(name, DataTypes.DoubleType, true));
    if (dedupe()) fields.add(DataTypes.createStructField(duplicateColumn, DataTypes.BooleanType, true));
    return DataTypes.createStructType(fields);
  }

  private static JsonNode required(JsonNode json, String field) {
    JsonNode value = json.get(field);
    if (value == null || value.isNull()) {
      throw new IllegalArgumentException("operator spec: expected a field '" + field + "', found none in " + json);
    }
    return value;
  }

  private static String text(JsonNode json, String field) {
    return required(json, field).asText();
  }

  private static String[] strings(JsonNode json, String field) {
    JsonNode list = required(json, field);
    String[] out = new String[list.size()];
    for (int i = 0; i < out.length; i++) out[i] = list.get(i).asText();
    return out;
  }
}
