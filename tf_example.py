# coding=utf-8
"""`tf.train.Example` records serialized byte for byte as the original's, on every protobuf.

An Example holds its features in a protocol buffer map, and protobuf writes the entries of a
map in an order of its own: the protobuf 4 of TensorFlow 2.15 in a hash table's order, fixed by
the names and by how the map was filled; the protobuf 7 of TensorFlow 2.21 in an order that
changes from process to process. The original's TFRecords were written by the former.
`serialize_example` writes the entries in the order the original's records have, given below
for each record the original writes, so our TFRecords equal its byte for byte and do not
change from run to run.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

# The order of the map entries in the original's records, as protobuf 4 writes a
# `tf.train.Example(features=tf.train.Features(feature=features))` built from the original's
# feature dictionary. Each order holds for exactly its set of names.
_ORIGINAL_FEATURE_ORDERS = (
    # create_pretraining_data.py
    ("masked_lm_ids", "input_ids", "masked_lm_positions", "next_sentence_labels", "input_mask",
     "masked_lm_weights", "segment_ids"),
    # run_classifier.py
    ("is_real_example", "input_mask", "input_ids", "segment_ids", "label_ids"),
    # run_squad.py, training
    ("is_impossible", "input_ids", "end_positions", "unique_ids", "start_positions",
     "input_mask", "segment_ids"),
    # run_squad.py, prediction
    ("unique_ids", "input_mask", "input_ids", "segment_ids"),
)

_ORIGINAL_ORDER_OF_NAMES = {frozenset(order): order for order in _ORIGINAL_FEATURE_ORDERS}

# Tags of the length-delimited fields: Example.features (1), Features.feature (1, the map), and
# the key (1) and value (2) of a map entry.
_FEATURES_TAG = b"\n"
_ENTRY_TAG = b"\n"
_KEY_TAG = b"\n"
_VALUE_TAG = b"\x12"


def feature_order(names):
  """Returns the feature names in the order of the original's records.

  Args:
    names: the feature names of one record, in the order the features were added.

  Returns:
    Tuple of the names: in the original's order for a record the original writes, else in the
    order given.
  """
  names = tuple(names)
  return _ORIGINAL_ORDER_OF_NAMES.get(frozenset(names), names)


def serialize_example(features):
  """Returns `tf.train.Example(features=tf.train.Features(feature=features))` serialized.

  The map entries follow `feature_order(features)`; the bytes are those the original wrote.

  Args:
    features: dictionary feature name -> `tf.train.Feature`, in the order they were added.
  """
  entries = []
  for name in feature_order(features):
    key = name.encode("utf-8")
    value = features[name].SerializeToString()
    entry_head = length_prefix(_KEY_TAG, len(key)) + key + length_prefix(_VALUE_TAG, len(value))
    entry_length = len(entry_head) + len(value)
    entries.append(length_prefix(_ENTRY_TAG, entry_length) + entry_head + value)
  serialized_features = b"".join(entries)
  return length_prefix(_FEATURES_TAG, len(serialized_features)) + serialized_features


def length_prefix(tag, length):
  """The tag and length that precede the bytes of a length-delimited field."""
  return tag + varint(length)


def varint(value):
  """The protocol buffer encoding of the integer `value` (negative ones as 64-bit)."""
  value &= (1 << 64) - 1
  encoded = bytearray()
  while value > 0x7f:
    encoded.append((value & 0x7f) | 0x80)
    value >>= 7
  encoded.append(value)
  return bytes(encoded)
