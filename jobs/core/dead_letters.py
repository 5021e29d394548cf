"""Why a message became a dead letter: one code from a closed set, in the column `reason` of `dead_letters`
beside its `errors` (which say it in words, naming the field, what was expected and what was found). What
counts dead letters reads the code, never the words."""

from __future__ import annotations

MALFORMED = "malformed"  # either topic: not a JSON object, a field missing, or a value of the wrong type
FUTURE = "future"  # a transaction dated too far after its message's Kafka timestamp
RULE = "rule:"  # followed by the cleaning rule's name: a well-formed transaction that breaks it
DUPLICATE = "duplicate"  # a transaction whose id its card had counted already
LABEL_UNKNOWN = "label_unknown_transaction"  # a label of a transaction that was never scored
LABEL_WRONG_PLACE = "label_wrong_place"  # a label whose card, terminal or time is not its transaction's

# the columns of `dead_letters` that a dead letter's writer gives (the table adds `dead_at`)
DEAD_LETTER_COLUMNS = ["topic", "partition", "offset", "kafka_timestamp", "key", "payload", "errors", "reason"]

REASONS = (MALFORMED, FUTURE, DUPLICATE, LABEL_UNKNOWN, LABEL_WRONG_PLACE)  # and RULE + each rule's name


def rule_reason(name: str) -> str:
    """The reason of a transaction that breaks the cleaning rule `name`."""
    return f"{RULE}{name}"
