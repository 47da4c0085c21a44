"""Tests of input_pipeline.py's batches without wasted padding: same model outputs."""

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import input_pipeline
import modeling
import script_io
from test_modeling import tiny_config

SEQ_LENGTH = 16


def padded_examples(lengths, seed=0):
  """Returns numpy features of sequences of the given real lengths, padded to SEQ_LENGTH."""
  rng = np.random.RandomState(seed)
  lengths = np.array(lengths)
  input_mask = (np.arange(SEQ_LENGTH)[None, :] < lengths[:, None]).astype(np.int32)
  return dict(input_ids=(rng.randint(1, 50, input_mask.shape) * input_mask).astype(np.int32),
              input_mask=input_mask,
              segment_ids=(rng.randint(0, 2, input_mask.shape) * input_mask).astype(np.int32),
              label_ids=np.arange(len(lengths), dtype=np.int32))


def evaluate(fetches):
  with tf.Session() as session:
    return session.run(fetches)


def all_batches(dataset):
  next_batch = tf.data.make_one_shot_iterator(dataset).get_next()
  batches = []
  with tf.Session() as session:
    while True:
      try:
        batches.append(session.run(next_batch))
      except tf.errors.OutOfRangeError:
        return batches


@pytest.mark.parametrize("length_multiple, expected_length", [(1, 11), (4, 12), (5, 15),
                                                              (7, 14), (10, SEQ_LENGTH)])
def test_trim_to_longest_sequence(length_multiple, expected_length):
  features = padded_examples([3, 11, 7])
  with tf.Graph().as_default():
    trimmed = evaluate(input_pipeline.trim_to_longest_sequence(
        {name: tf.constant(value) for name, value in features.items()}, length_multiple))
  for name in input_pipeline.SEQUENCE_FEATURES:
    np.testing.assert_array_equal(trimmed[name], features[name][:, :expected_length])
  np.testing.assert_array_equal(trimmed["label_ids"], features["label_ids"])


def test_trim_keeps_a_full_batch_and_other_per_position_features_on_request():
  features = padded_examples([SEQ_LENGTH, 2])
  features["masked_lm_positions"] = np.array([[1, 5], [1, 0]], np.int32)
  with tf.Graph().as_default():
    tensors = {name: tf.constant(value) for name, value in features.items()}
    full = evaluate(input_pipeline.trim_to_longest_sequence(tensors, 8))
    short = evaluate(input_pipeline.trim_to_longest_sequence(
        {name: tensor[1:] for name, tensor in tensors.items()}, 1,
        sequence_features=("input_mask", "segment_ids")))
  assert full["input_ids"].shape == (2, SEQ_LENGTH)
  np.testing.assert_array_equal(full["masked_lm_positions"], features["masked_lm_positions"])
  assert short["input_mask"].shape == (1, 2) and short["segment_ids"].shape == (1, 2)
  assert short["input_ids"].shape == (1, SEQ_LENGTH)


@pytest.mark.parametrize("compute_type", [tf.float32, tf.bfloat16])
def test_trimming_leaves_the_outputs_at_real_positions_unchanged(compute_type):
  features = padded_examples([5, 9, 2], seed=1)
  with tf.Graph().as_default():
    placeholders = {name: tf.placeholder(tf.int32, [3, None])
                    for name in input_pipeline.SEQUENCE_FEATURES}
    model = modeling.BertModel(tiny_config(), False, placeholders["input_ids"],
                               placeholders["input_mask"], placeholders["segment_ids"],
                               compute_type=compute_type)
    trimmed = input_pipeline.trim_to_longest_sequence(
        {name: tf.constant(features[name]) for name in placeholders})
    fetches = [model.get_sequence_output(), model.get_pooled_output()]
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      trimmed = session.run(trimmed)
      full_sequence, full_pooled = session.run(
          fetches, {placeholders[name]: features[name] for name in placeholders})
      short_sequence, short_pooled = session.run(
          fetches, {placeholders[name]: trimmed[name] for name in placeholders})

  assert short_sequence.shape == (3, 9, 32)
  real = features["input_mask"][:, :9].astype(bool)
  tolerance = 1e-5 if compute_type == tf.float32 else 2e-2
  np.testing.assert_allclose(short_sequence[real], full_sequence[:, :9][real], atol=tolerance)
  np.testing.assert_allclose(short_pooled, full_pooled, atol=tolerance)


def test_bucket_by_length_groups_similar_lengths_and_keeps_every_example():
  lengths = [1, 16, 4, 5, 8, 9, 12, 3, 13, 2, 16, 6]
  features = padded_examples(lengths)
  with tf.Graph().as_default():
    dataset = input_pipeline.bucket_by_length(
        tf.data.Dataset.from_tensor_slices(features), batch_size=2, bucket_width=4,
        drop_remainder=False)
    batches = all_batches(dataset)
  seen = []
  for batch in batches:
    batch_lengths = batch["input_mask"].sum(1)
    bound = batch["input_ids"].shape[1]
    assert bound % 4 == 0
    assert np.all(batch_lengths <= bound) and np.all(batch_lengths > bound - 4)
    for index, label in enumerate(batch["label_ids"]):
      np.testing.assert_array_equal(batch["input_ids"][index],
                                    features["input_ids"][label, :bound])
    seen.extend(batch["label_ids"])
  assert sorted(seen) == list(range(len(lengths)))
  # Buckets (0, 4], (4, 8], (8, 12], (12, 16] hold 4, 3, 2 and 3 examples.
  assert sorted(len(batch["label_ids"]) for batch in batches) == [1, 1, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("seq_length, expected", [(32, 8), (128, 8), (256, 16), (512, 32)])
def test_length_multiple_keeps_at_most_16_shapes(seq_length, expected):
  assert input_pipeline.length_multiple(seq_length) == expected
  assert seq_length // input_pipeline.length_multiple(seq_length) <= 16


def test_batch_sorted_by_length_sorts_within_windows_only():
  lengths = [9, 2, 16, 4, 3, 12, 1, 7, 5, 16]
  features = padded_examples(lengths)
  with tf.Graph().as_default():
    dataset = input_pipeline.batch_sorted_by_length(
        tf.data.Dataset.from_tensor_slices(features), batch_size=2, window_batches=2,
        length_multiple=4)
    batches = all_batches(dataset)
  order = [list(batch["label_ids"]) for batch in batches]
  assert order == [[1, 3], [0, 2], [6, 4], [7, 5], [8, 9]]
  assert [batch["input_ids"].shape[1] for batch in batches] == [4, 16, 4, 12, 16]
  for batch in batches:
    length = batch["input_mask"].shape[1]
    np.testing.assert_array_equal(batch["input_mask"],
                                  features["input_mask"][batch["label_ids"], :length])


def test_restore_input_order():
  shuffled = [{"example_index": index, "value": index * 10} for index in (2, 0, 3, 1, 5, 4)]
  assert list(input_pipeline.restore_input_order(shuffled)) == [
      {"value": index * 10} for index in range(6)]
  # Predictions without an index pass through as they come.
  assert list(input_pipeline.restore_input_order([{"value": 2}, {"value": 1}])) == [
      {"value": 2}, {"value": 1}]


def write_example_records(path, records):
  """Writes tf.train.Examples of {name: list of ints} to the TFRecord file `path`."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      features = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
                  for name, values in record.items()}
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=features)).SerializeToString())
  return str(path)


def test_record_ids_are_checked_against_the_vocab_size(tmp_path):
  path = write_example_records(tmp_path / "a.tfrecord", [
      {"input_ids": [101, 7, 102, 0], "masked_lm_ids": [99, 0]}])
  lengths = {"input_ids": (4, "max_seq_length")}
  assert input_pipeline.check_record_lengths(path, lengths, 103, id_features=("input_ids",))
  assert input_pipeline.check_record_lengths(path, lengths)
  assert not input_pipeline.check_record_lengths(
      write_example_records(tmp_path / "empty.tfrecord", []), lengths)
  with pytest.raises(script_io.InputError, match=(
      r"^\S+a.tfrecord: records hold input_ids up to 102 but --bert_config_file has "
      r"vocab_size=100: make the records with the vocab.txt of the model")):
    input_pipeline.check_record_lengths(path, lengths, 100,
                                        id_features=("input_ids", "masked_lm_ids"))


def test_corrupt_file_is_named(tmp_path):
  good = write_example_records(tmp_path / "good.tfrecord", [{"input_ids": [1, 2]}] * 3)
  whole = write_example_records(tmp_path / "whole.tfrecord", [{"input_ids": [1, 2]}] * 3)
  with open(whole, "rb") as reader:
    data = reader.read()
  cut = str(tmp_path / "cut.tfrecord")
  with open(cut, "wb") as writer:
    writer.write(data[:-10])  # Through the data of the last record.
  with pytest.raises(script_io.InputError, match=(
      r"^\S+cut.tfrecord is corrupt or truncated \(truncated record at \d+: .+\): write it "
      r"again, or leave it out of the input$")):
    with input_pipeline.naming_corrupt_files([good, cut]):
      raise tf.errors.DataLossError(None, None, "truncated record at 40")
  # A DataLossError of no input file is passed on as it is.
  with pytest.raises(tf.errors.DataLossError):
    with input_pipeline.naming_corrupt_files([good]):
      raise tf.errors.DataLossError(None, None, "not an sstable")
