"""What every script needs to face its user: one-line errors and whole output files.

A user mistake (a missing file, a bad flag value, a malformed line) raises `InputError`; the
scripts run their `main` through `run_main`, which prints such an error as one line and exits
with status 1 instead of showing a traceback. So do the errors TensorFlow raises at run time for
the usual mistakes (`error_line`): a corrupt TFRecord file, ids beyond the model's vocabulary, a
NaN loss. Ctrl-C or SIGTERM end the run with one line and status 130 or 143. Setting the
environment variable BERT_TRACEBACK=1 shows the traceback above each such line.

Outputs are written under a temporary name and renamed when complete (`atomic_output`), so an
interrupted run never leaves a half-written file behind; `write_eval_results` writes the results
of an evaluation so. `check_output_dir` and `check_output_file` make sure, before any work, that
the outputs can be written. `load_tokenizer` builds the tokenizer of the flags, with such errors
for a bad vocabulary or a --do_lower_case that contradicts the checkpoint.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import traceback
import uuid

from absl import app
import runner
import tensorflow.compat.v1 as tf
import tokenization

# A checkpoint converted from the Hugging Face layout (convert_hf_checkpoint.py) carries the
# casing of its tokenizer in this file next to bert_config.json: {"do_lower_case": false}.
# Google's released checkpoints have none; their casing is guessed from the folder name.
CASING_FILE_NAME = "do_lower_case.json"


class InputError(ValueError):
  """A mistake in the user's input: bad flag value, missing or malformed file.

  The message is shown as is, on one line, so it must name the flag, file or line at fault.
  """


class WorkerLostError(RuntimeError):
  """A worker of a multi-worker run stopped answering; the message names it and says how to
  resume, on one line."""


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised as Ctrl-C raises KeyboardInterrupt so that the same clean-up runs."""


# Set to 1 to see the traceback of an error that run_main shows as one line.
TRACEBACK_VARIABLE = "BERT_TRACEBACK"

# The lines of a TensorFlow error message that only say where it happened.
_TENSORFLOW_CONTEXT = ("Graph execution error", "Detected at node", "Node:", "From /job:")

# The nodes that read checkpoints: tf.train.init_from_checkpoint's, and a Saver's.
_CHECKPOINT_READING_NODES = ("checkpoint_initializer", "RestoreV2")

# What an embedding lookup (tf.gather) says of an id beyond its table.
_ID_OUT_OF_RANGE = re.compile(r"indices\[[\d,]*\] = -?\d+ is not in \[0, (\d+)\)")


def run_main(main):
  """Runs `main` with absl's `app.run`; the errors of `error_line` end it with one line.

  Such an error prints "ERROR: <line>" and exits with status 1; Ctrl-C (KeyboardInterrupt) and
  SIGTERM (`Terminated`) print one line too and exit with 128 + the signal number, 130 and 143;
  so does a training run the runner stopped at a step boundary on either signal
  (`runner.TrainingInterrupted`, whose line names the checkpoint it resumes from). With
  BERT_TRACEBACK=1 in the environment the traceback is printed above the line. Other
  exceptions, the bugs, show their traceback as usual.

  Args:
    main: the script's main(argv).
  """

  def main_reporting_errors(argv):
    # TensorFlow's logger has its own handler and would also pass each record on to the one
    # absl puts on the root logger: every line would be printed twice.
    tensorflow_logger = tf.get_logger()
    if tensorflow_logger.handlers:
      tensorflow_logger.propagate = False
    try:
      return main(argv)
    except runner.TrainingInterrupted as interrupted:
      _print_error(str(interrupted))
      _exit(128 + (signal.SIGTERM if interrupted.signal_name == "SIGTERM" else signal.SIGINT))
    except Exception as error:  # pylint: disable=broad-except
      line = error_line(error)
      if line is None:
        raise
      _print_error(line)
      _exit(1)

  with _raising_terminated_on_sigterm():
    try:
      app.run(main_reporting_errors)
    except KeyboardInterrupt as interrupt:
      signal_number = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
      _print_error("interrupted by %s; no output file was left half-written" %
                   signal.Signals(signal_number).name)
      _exit(128 + signal_number)


def end_with_error(line):
  """Prints "ERROR: line" and ends the process at once with status 1, from any thread.

  For a worker whose main thread is blocked inside TensorFlow, waiting for a peer that stopped
  answering (`training_guard.PeerWatch`): no exception or signal handler reaches that thread.
  What the scripts write is complete or not there yet: outputs are renamed into place once
  whole (`atomic_output`), and a checkpoint counts (in the "checkpoint" file, where training
  resumes from) only once TensorFlow has written all of it.
  """
  print("ERROR: %s" % line, file=sys.stderr)
  _end_process(1)


def _exit(status):
  """Ends the process with `status`, leaving the line just printed the last of its output.

  A worker of a cluster (TF_CONFIG set) ends at once: while Python shut it down, TensorFlow's
  runtime would log under that line, several lines each, the heartbeats it fails to send to
  the peers that already left. Its outputs are complete or removed by then. Elsewhere,
  `sys.exit`.
  """
  if os.environ.get("TF_CONFIG"):
    _end_process(status)
  sys.exit(status)


def _end_process(status):
  """Flushes the logs and the output streams, then ends the process with `status` at once."""
  logging.shutdown()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def error_line(error):
  """Returns the one line that tells the user what went wrong, or None for a bug.

  Args:
    error: an exception that ended a script's main: an `InputError` or a `WorkerLostError`
      (shown as they are), or one TensorFlow raises
      at run time for a usual mistake: DataLossError, or OutOfRangeError "Read less bytes than
      requested" (a corrupt or truncated file; TensorFlow names no file, but whether it was a
      checkpoint shows), InvalidArgumentError of an embedding lookup (an id beyond the model's
      vocab_size), NanLossDuringTrainingError (with the step where its `step` attribute gives
      it).
  """
  if isinstance(error, (InputError, WorkerLostError)):
    return str(error)
  if isinstance(error, tf.train.NanLossDuringTrainingError):
    step = getattr(error, "step", None)
    return (
        "the training loss is NaN%s. The usual causes: a learning rate too high "
        "(--learning_rate, and --num_warmup_steps or --warmup_proportion), float16 without "
        "loss scaling, or bad data (ids or labels out of range)" %
        ("" if step is None else " at step %d" % step))
  reason = _tensorflow_reason(error.message) if isinstance(error, tf.errors.OpError) else ""
  if (isinstance(error, tf.errors.DataLossError) or
      isinstance(error, tf.errors.OutOfRangeError) and reason.startswith("Read less bytes")):
    in_checkpoint = any(node in error.message for node in _CHECKPOINT_READING_NODES)
    return "a file is corrupt or truncated%s: %s" % (
        " (a checkpoint: --init_checkpoint, or the latest in --output_dir)" if in_checkpoint
        else "", reason)
  if isinstance(error, tf.errors.UnavailableError):
    return ("another worker of the cluster stopped answering (%s): restart every worker with "
            "the same command to resume from the latest checkpoint" % reason)
  if isinstance(error, tf.errors.InvalidArgumentError):
    match = _ID_OUT_OF_RANGE.search(error.message)
    if match:
      return (
          "a token id is beyond the model's vocab_size=%s (%s): check that the vocabulary "
          "(--vocab_file, or the one the TFRecord files were made with) is the model's; "
          "vocab_size in --bert_config_file must be at least its number of tokens" %
          (match.group(1), match.group(0)))
  return None


def _tensorflow_reason(message):
  """The line of a TensorFlow error message that says what went wrong.

  A session's message is "Graph execution error:", "Detected at node ...", the stack of where
  the node was made, "Node: ...", then the reason, then "[[the node]]" lines.
  """
  for line in message.strip().splitlines():
    if line.strip() and not line[0].isspace() and not line.startswith(_TENSORFLOW_CONTEXT):
      return line.strip()
  return message.strip()


def _print_error(line):
  """Prints "ERROR: line" on stderr; with BERT_TRACEBACK=1, the current traceback first."""
  if os.environ.get(TRACEBACK_VARIABLE, "0") not in ("", "0"):
    traceback.print_exc()
  print("ERROR: %s" % line, file=sys.stderr)


@contextlib.contextmanager
def _raising_terminated_on_sigterm():
  """Makes SIGTERM raise `Terminated` in the block, where it has its default action.

  The default ends the process at once, before `atomic_output` can remove a temporary file.
  A handler set by someone else is left alone; signal handlers are set from the main thread.
  """
  if (threading.current_thread() is not threading.main_thread() or
      signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
    yield
    return

  def raise_terminated(unused_signal_number, unused_frame):
    raise Terminated()

  signal.signal(signal.SIGTERM, raise_terminated)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def input_files_from_globs(patterns, flag_name):
  """Expands a comma-separated list of globs into the matching file names, in order.

  Args:
    patterns: string like "a/*.tfrecord,b/part-0001.tfrecord".
    flag_name: name of the flag the patterns came from, for the error message.

  Returns:
    List of file names.

  Raises:
    InputError: when a pattern matches no file.
  """
  files = []
  for pattern in patterns.split(","):
    pattern = pattern.strip()
    if not pattern:
      continue
    matches = tf.io.gfile.glob(pattern)
    if not matches:
      raise InputError("--%s: no file matches %r" % (flag_name, pattern))
    files.extend(matches)
  if not files:
    raise InputError("--%s names no file" % flag_name)
  return files


def require_file(path, flag_name):
  """Raises InputError unless `path`, given by --flag_name, is an existing file."""
  if not path:
    raise InputError("--%s is required" % flag_name)
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise InputError("--%s: no such file: %s" % (flag_name, path))


def check_positive(flag_values):
  """Raises InputError for the first flag of a dict of flag name -> value that is not above 0.

  For batch sizes and step counts, where 0 or less ends the original in a traceback (a
  division by zero, an Estimator or TPUConfig ValueError) or a run that never ends.
  """
  for flag_name, value in flag_values.items():
    if value is not None and value <= 0:
      raise InputError("--%s=%s must be positive" % (flag_name, value))


def check_output_dir(path, flag_name):
  """Checks, before any work, that the folder `path` (flag --flag_name) can be made and written.

  An existing folder must take a new file; else the nearest folder above it that exists must,
  as the script will make `path` there. Nothing is left behind: the file written to find out
  is removed, and no folder is made.

  Raises:
    InputError: `path` is a file, or a folder there cannot be made or written, with the reason.
  """
  if not path:
    raise InputError("--%s is required" % flag_name)
  if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
    raise InputError("--%s=%s is a file, not a folder" % (flag_name, path))
  existing = path.rstrip("/") or "/"
  while not tf.io.gfile.exists(existing):
    parent = os.path.dirname(existing) or "."
    if parent == existing:
      break
    existing = parent
  if not tf.io.gfile.isdir(existing):
    raise InputError("--%s=%s cannot be made: %s is a file" % (flag_name, path, existing))
  reason = _write_test_failure(existing)
  if reason:
    action = "written" if existing == path.rstrip("/") else "made"
    raise InputError("--%s=%s cannot be %s: %s" % (flag_name, path, action, reason))


def check_output_file(path, flag_name):
  """Checks, before any work, that the file `path` (flag --flag_name) can be written.

  Its folder must exist and take a new file (the output is written beside it under a temporary
  name, then renamed), and `path` must not be a folder. Nothing is left behind.

  Raises:
    InputError: naming the flag, the path and the reason.
  """
  if not path:
    raise InputError("--%s is required" % flag_name)
  if tf.io.gfile.isdir(path):
    raise InputError("--%s=%s is a folder, not a file" % (flag_name, path))
  directory = os.path.dirname(path) or "."
  if not tf.io.gfile.isdir(directory):
    raise InputError("--%s=%s cannot be written: no folder %s" % (flag_name, path, directory))
  reason = _write_test_failure(directory)
  if reason:
    raise InputError("--%s=%s cannot be written: %s" % (flag_name, path, reason))


def _write_test_failure(directory):
  """Writes and removes a file in `directory`; returns why that failed, or None if it worked."""
  test_file = os.path.join(directory, ".write-test-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8]))
  try:
    with tf.io.gfile.GFile(test_file, "w") as writer:
      writer.write("")
    tf.io.gfile.remove(test_file)
  except tf.errors.OpError as error:
    # TensorFlow's message is "PATH; REASON".
    return "cannot write a file in %s (%s)" % (directory, error.message.split("; ")[-1])
  except OSError as error:
    return "cannot write a file in %s (%s)" % (directory, error.strerror)
  return None


def read_recorded_casing(checkpoint_dir):
  """Returns the do_lower_case recorded in `checkpoint_dir`, or None if it records none.

  Raises:
    InputError: the folder's CASING_FILE_NAME does not hold {"do_lower_case": true or false}.
  """
  path = os.path.join(checkpoint_dir, CASING_FILE_NAME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as reader:
    text = reader.read()
  try:
    recorded = json.loads(text)
  except ValueError:
    recorded = None
  if not isinstance(recorded, dict) or not isinstance(recorded.get("do_lower_case"), bool):
    raise InputError('%s must hold {"do_lower_case": true} or {"do_lower_case": false}' % path)
  return recorded["do_lower_case"]


def _check_case_matches_checkpoint(do_lower_case, init_checkpoint):
  """Raises InputError if --do_lower_case contradicts the casing of --init_checkpoint.

  The casing is the one recorded next to the checkpoint (`read_recorded_casing`), else the one
  a Google checkpoint's folder name tells (`tokenization.validate_case_matches_checkpoint`).
  """
  if not init_checkpoint:
    return
  # --init_checkpoint names a checkpoint by the prefix of its files, or by a training folder.
  checkpoint_dir = (init_checkpoint if tf.io.gfile.isdir(init_checkpoint)
                    else os.path.dirname(init_checkpoint))
  recorded = read_recorded_casing(checkpoint_dir)
  if recorded is None:
    try:
      tokenization.validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
    except ValueError as error:
      raise InputError(" ".join(str(error).split())) from None
  elif recorded != bool(do_lower_case):
    raise InputError(
        "`--do_lower_case=%s` does not fit `--init_checkpoint=%s`: %s says the model was "
        "trained with do_lower_case=%s, so pass `--do_lower_case=%s`" %
        (not recorded, init_checkpoint, os.path.join(checkpoint_dir, CASING_FILE_NAME),
         recorded, recorded))


def load_tokenizer(vocab_file, do_lower_case, init_checkpoint=None):
  """Returns the `tokenization.FullTokenizer` of --vocab_file and --do_lower_case.

  Args:
    vocab_file: the WordPiece vocabulary (flag --vocab_file).
    do_lower_case: whether to lower-case (flag --do_lower_case).
    init_checkpoint: the checkpoint the tokens are for (flag --init_checkpoint), or None; its
      casing, where known, must agree with do_lower_case: the casing recorded next to a
      converted Hugging Face checkpoint (`read_recorded_casing`), or that of a Google checkpoint
      whose folder name says it is cased or uncased.

  Raises:
    InputError: --do_lower_case contradicts the checkpoint, or --vocab_file is missing,
      unreadable or not a WordPiece vocabulary (it has no [UNK] line).
  """
  _check_case_matches_checkpoint(do_lower_case, init_checkpoint)
  require_file(vocab_file, "vocab_file")
  try:
    return tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
  except ValueError as error:
    raise InputError("--vocab_file: %s" % error) from None


@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary name that is renamed to `path` when the block completes.

  Write a file (`tf.io.TFRecordWriter(temporary)`, `tf.io.gfile.GFile(temporary, "w")`) or
  make a folder under that name; a block that makes nothing leaves an empty file. If the block
  raises, whatever it made there is removed and `path` is left as it was. A folder replaces
  only an absent or empty folder at `path`.

  The name is unique to the process (`path.incomplete-PID-RANDOM`): the workers of a
  multi-worker run share --output_dir and write the same files with the same bytes; with one
  shared temporary name, one worker's rename would take away the file another is still
  writing. With a name each, every rename is atomic and the last one leaves the same bytes.
  """
  path = path.rstrip("/")
  temporary = "%s.incomplete-%d-%s" % (path, os.getpid(), uuid.uuid4().hex[:8])
  try:
    yield temporary
    if not tf.io.gfile.exists(temporary):
      # tf.io.gfile.GFile makes its file on the first write: a file of no lines has none yet.
      with tf.io.gfile.GFile(temporary, "w") as writer:
        writer.write("")
    tf.io.gfile.rename(temporary, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.isdir(temporary):
      tf.io.gfile.rmtree(temporary)
    elif tf.io.gfile.exists(temporary):
      tf.io.gfile.remove(temporary)
    raise


def write_eval_results(output_eval_file, result):
  """Writes Estimator eval results as sorted `key = value` lines and logs them."""
  with atomic_output(output_eval_file) as temporary, tf.io.gfile.GFile(temporary, "w") as writer:
    tf.logging.info("***** Eval results *****")
    for key in sorted(result.keys()):
      tf.logging.info("  %s = %s", key, str(result[key]))
      writer.write("%s = %s\n" % (key, str(result[key])))
