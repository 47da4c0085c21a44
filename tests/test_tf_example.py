"""Tests of tf_example.py: the original's record bytes on every protobuf, in every process.

The pre-training records are also compared byte for byte with the original's fixtures
(test_create_pretraining_data.py).
"""

import collections
import os
import subprocess
import sys

import google.protobuf
import pytest
import support
import tensorflow.compat.v1 as tf
import tf_example


def int_feature(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def float_feature(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def original_features(names):
  """A feature dictionary with `names` in the original's insertion order, varied values."""
  features = collections.OrderedDict()
  for index, name in enumerate(names):
    if name in ("masked_lm_weights", "label_ids"):
      features[name] = float_feature([1.0, 0.5 * index])
    else:
      features[name] = int_feature([index, -index, 300 * index, 0])
  return features


# Each record the original writes, its features in the order its code adds them.
ORIGINAL_RECORDS = {
    "pretraining": ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                    "masked_lm_ids", "masked_lm_weights", "next_sentence_labels"),
    "classifier": ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example"),
    "squad_training": ("unique_ids", "input_ids", "input_mask", "segment_ids",
                       "start_positions", "end_positions", "is_impossible"),
    "squad_prediction": ("unique_ids", "input_ids", "input_mask", "segment_ids"),
}

def entry_names(serialized):
  """The feature names of a serialized Example, in the order its map entries are written."""
  example = tf.train.Example.FromString(serialized)
  names = list(example.features.feature)
  return sorted(names, key=lambda name: serialized.index(
      b"\n" + tf_example.varint(len(name)) + name.encode()))


@pytest.mark.parametrize("record", sorted(ORIGINAL_RECORDS))
def test_serialized_example_holds_the_features_in_the_original_order(record):
  features = original_features(ORIGINAL_RECORDS[record])
  serialized = tf_example.serialize_example(features)
  expected = tf.train.Example(features=tf.train.Features(feature=features))
  assert tf.train.Example.FromString(serialized) == expected
  assert entry_names(serialized) == list(tf_example.feature_order(features))
  assert sorted(tf_example.feature_order(features)) == sorted(features)


@pytest.mark.skipif(not support.PROTOBUF_WRITES_THE_ORIGINAL_ORDER, reason=(
    "the original's records were written by TensorFlow 2.15's protobuf 4, whose map order "
    "protobuf %s does not keep" % google.protobuf.__version__))
@pytest.mark.parametrize("record", sorted(ORIGINAL_RECORDS))
def test_bytes_equal_protobuf_4_serializing_the_original_dictionary(record):
  """The orders of tf_example are what protobuf 4 writes for the original's dictionaries."""
  features = original_features(ORIGINAL_RECORDS[record])
  expected = tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
  assert tf_example.serialize_example(features) == expected


def test_a_record_the_original_never_wrote_keeps_the_order_given():
  features = original_features(["label_ids", "input_ids", "word_ids"])
  serialized = tf_example.serialize_example(features)
  assert entry_names(serialized) == ["label_ids", "input_ids", "word_ids"]
  assert tf.train.Example.FromString(serialized) == tf.train.Example(
      features=tf.train.Features(feature=features))


def test_empty_and_long_values_and_names():
  features = collections.OrderedDict()
  features["empty"] = int_feature([])
  features["long_" + "x" * 200] = int_feature(list(range(-50, 5000)))
  features["bytes"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00" * 300]))
  serialized = tf_example.serialize_example(features)
  assert tf.train.Example.FromString(serialized) == tf.train.Example(
      features=tf.train.Features(feature=features))
  assert entry_names(serialized) == list(features)


def test_varint_matches_protobuf():
  for value in (0, 1, 127, 128, 300, 2 ** 31, 2 ** 63 - 1, -1, -300):
    encoded = tf.train.Int64List(value=[value]).SerializeToString()
    # Field 1, packed: tag, length, then the one varint.
    assert encoded[2:] == tf_example.varint(value), value


SERIALIZE_ALL = """
import test_tf_example, tf_example
for names in test_tf_example.ORIGINAL_RECORDS.values():
  features = test_tf_example.original_features(names)
  print(tf_example.serialize_example(features).hex())
"""


@pytest.mark.slow
def test_every_process_writes_the_same_bytes():
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
      [support.REPO_DIR, os.path.join(support.REPO_DIR, "tests")]))
  outputs = set()
  for _ in range(3):
    result = subprocess.run(
        [sys.executable, "-c", SERIALIZE_ALL], env=environment, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs.add(result.stdout)
  in_this_process = "".join(
      tf_example.serialize_example(original_features(names)).hex() + "\n"
      for names in ORIGINAL_RECORDS.values())
  assert outputs == {in_this_process}
