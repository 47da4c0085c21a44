"""Tests of script_io: the one-line messages of run-time errors, and the checks of outputs and
positive flags made before any work."""

import os

import pytest
import script_io
import tensorflow.compat.v1 as tf


def test_input_error_is_its_own_line():
  assert script_io.error_line(script_io.InputError("--vocab_file: no such file: v")) == (
      "--vocab_file: no such file: v")


def test_ids_beyond_the_vocabulary():
  error = tf.errors.InvalidArgumentError(
      None, None, "indices[28,0] = 101 is not in [0, 100)\n\t [[{{node bert/embeddings/Gather}}]]")
  assert script_io.error_line(error) == (
      "a token id is beyond the model's vocab_size=100 (indices[28,0] = 101 is not in [0, "
      "100)): check that the vocabulary (--vocab_file, or the one the TFRecord files were made "
      "with) is the model's; vocab_size in --bert_config_file must be at least its number of "
      "tokens")


# TensorFlow 2.15's message of an error in a session run.
GRAPH_EXECUTION_ERROR = """Graph execution error:

Detected at node '%s' defined at (most recent call last):
    File "run_classifier.py", line 1080, in <module>
Node: '%s'
%s
	 [[{{node %s}}]]"""


@pytest.mark.parametrize("error_type, node, reason, line", [
    (tf.errors.DataLossError, "IteratorGetNext",
     "truncated record at 299624' failed with Read less bytes than requested",
     "a file is corrupt or truncated: truncated record at 299624' failed with Read less bytes "
     "than requested"),
    (tf.errors.OutOfRangeError, "checkpoint_initializer_35", "Read less bytes than requested",
     "a file is corrupt or truncated (a checkpoint: --init_checkpoint, or the latest in "
     "--output_dir): Read less bytes than requested"),
    (tf.errors.DataLossError, "save/RestoreV2",
     "Unable to open table file /m/model.ckpt-3.index: Data loss: not an sstable",
     "a file is corrupt or truncated (a checkpoint: --init_checkpoint, or the latest in "
     "--output_dir): Unable to open table file /m/model.ckpt-3.index: Data loss: not an "
     "sstable"),
])
def test_corrupt_or_truncated_file(error_type, node, reason, line):
  error = error_type(None, None, GRAPH_EXECUTION_ERROR % (node, node, reason, node))
  assert script_io.error_line(error) == line


def test_end_of_input_is_not_a_truncated_file():
  assert script_io.error_line(tf.errors.OutOfRangeError(None, None, "End of sequence")) is None


def test_nan_loss_with_and_without_its_step():
  error = tf.train.NanLossDuringTrainingError()
  assert script_io.error_line(error).startswith(
      "the training loss is NaN. The usual causes: a learning rate too high")
  error.step = 7
  assert script_io.error_line(error).startswith("the training loss is NaN at step 7. ")


@pytest.mark.parametrize("error", [
    ValueError("a bug"),
    tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2,3] vs. [2,4]"),
])
def test_other_errors_keep_their_traceback(error):
  assert script_io.error_line(error) is None


def test_output_dir_is_checked_without_making_it(tmp_path):
  missing = str(tmp_path / "a" / "b")
  script_io.check_output_dir(missing, "output_dir")
  script_io.check_output_dir(str(tmp_path), "output_dir")
  assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("path, message", [
    ("/proc/out", r"^--output_dir=/proc/out cannot be made: cannot write a file in /proc \(.+\)$"),
    ("/proc", r"^--output_dir=/proc cannot be written: cannot write a file in /proc \(.+\)$"),
    ("{tmp}/file", r"^--output_dir=\S+/file is a file, not a folder$"),
    ("{tmp}/file/out", r"^--output_dir=\S+/file/out cannot be made: \S+/file is a file$"),
    ("", r"^--output_dir is required$"),
])
def test_output_dir_that_cannot_be_written(tmp_path, path, message):
  (tmp_path / "file").write_text("")
  with pytest.raises(script_io.InputError, match=message):
    script_io.check_output_dir(path.format(tmp=tmp_path), "output_dir")


def test_output_file_is_checked_without_leaving_a_file(tmp_path):
  script_io.check_output_file(str(tmp_path / "out.jsonl"), "output_file")
  assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("path, message", [
    ("/proc/out.jsonl",
     r"^--output_file=/proc/out.jsonl cannot be written: cannot write a file in /proc \(.+\)$"),
    ("{tmp}/missing/out.jsonl",
     r"^--output_file=\S+/missing/out.jsonl cannot be written: no folder \S+/missing$"),
    ("{tmp}", r"^--output_file=\S+ is a folder, not a file$"),
])
def test_output_file_that_cannot_be_written(tmp_path, path, message):
  with pytest.raises(script_io.InputError, match=message):
    script_io.check_output_file(path.format(tmp=tmp_path), "output_file")


def test_check_positive_names_the_first_flag_not_above_zero():
  script_io.check_positive({"train_batch_size": 32, "eval_batch_size": None})
  with pytest.raises(script_io.InputError, match=r"^--eval_batch_size=0 must be positive$"):
    script_io.check_positive({"train_batch_size": 32, "eval_batch_size": 0,
                              "predict_batch_size": -1})
