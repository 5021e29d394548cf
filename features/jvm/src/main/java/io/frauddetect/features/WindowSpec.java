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
 * columns hold the key, the event time, the id and the measures, and each window's name, measure and hours;
 * and, for an operator that counts labels, which rows are labels and where they say what.
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
  final String duplicateColumn; // null: no duplicate detection
  // labels (all null when the operator takes none): a row whose `labelRow` is true labels the transaction of
  // its id with `labelValue` (0 or 1; a transaction's own value is the label it carries, null 0); it must
  // name the transaction's tag (`labelTag`, kept per id) and hour; labels of one id apply in `labelOrder`
  final String labelRow;
  final String labelValue;
  final String labelTag;
  final String labelOrder;
  final int[] labelMeasures;    // the measures a label's change adds to
  static final String INCREMENT = "label_increment"; // out: what the label changed (null: its transaction not found)
  static final String PREVIOUS = "label_previous";   // out: the label counted before it
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
    duplicateColumn = json.hasNonNull("duplicate_column") ? json.get("duplicate_column").asText() : null;
    JsonNode labels = json.get("labels");
    if (labels != null && !labels.isNull()) {
      if (duplicateColumn == null) {
        throw new IllegalArgumentException("operator spec: labels need the transaction ids a key counted: expected a "
            + "duplicate_column with them, found none");
      }
      labelRow = text(labels, "row");
      labelValue = text(labels, "value");
      labelTag = text(labels, "tag");
      labelOrder = text(labels, "order");
      String[] names = strings(labels, "measures");
      labelMeasures = new int[names.length];
      for (int i = 0; i < names.length; i++) {
        labelMeasures[i] = List.of(measures).indexOf(names[i]);
        if (labelMeasures[i] < 0) {
          throw new IllegalArgumentException("labels: measure " + names[i] + " is not among the measures " + List.of(measures));
        }
      }
    } else {
      labelRow = labelValue = labelTag = labelOrder = null;
      labelMeasures = new int[0];
    }
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

  boolean labels() {
    return labelRow != null;
  }

  /** The operator's output: the input's columns but `drop`, then one double per window, then the duplicate
   *  flag when duplicates are detected, then each label's increment and previous label when it takes labels. */
  StructType outputSchema(StructType input) {
    List<StructField> fields = new ArrayList<>();
    List<String> dropped = List.of(drop);
    for (StructField f : input.fields()) {
      if (!dropped.contains(f.name())) fields.add(f);
    }
    for (String name : windowNames) fields.add(DataTypes.createStructField(name, DataTypes.DoubleType, true));
    if (dedupe()) fields.add(DataTypes.createStructField(duplicateColumn, DataTypes.BooleanType, true));
    if (labels()) {
      fields.add(DataTypes.createStructField(INCREMENT, DataTypes.IntegerType, true));
      fields.add(DataTypes.createStructField(PREVIOUS, DataTypes.IntegerType, true));
    }
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
