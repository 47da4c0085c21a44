"""Mistakes a user makes, each shown as the user sees it: one line, no traceback, and no failed
run that breaks the corrected one. Also what the original accepts and we run too."""

import json
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap

from absl import flags
from absl.testing import flagsaver
import pytest
import script_io
import support
import tensorflow.compat.v1 as tf

MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")
MODEL_CHECKPOINT = support.fixture_path("modeling", "bert_model.ckpt")
CLASSIFIER_CHECKPOINT = support.fixture_path("classifier", "finetuned.ckpt")
PRETRAINING_RECORDS = support.fixture_path("pretraining_data", "reference.tfrecord")
SQUAD_DEV = support.fixture_path("squad", "dev-v1.1.json")

CLASSIFIER_FLAGS = ["--task_name=mrpc", "--data_dir=" + support.fixture_path("classifier", "data"),
                    "--vocab_file=" + support.VOCAB_FILE, "--max_seq_length=64"]
PRETRAINING_FLAGS = ["--train_batch_size=8", "--num_warmup_steps=0", "--max_seq_length=128",
                     "--max_predictions_per_seq=20"]


def script_flags(script, tmp_path, bert_config_file=MODEL_CONFIG, output=None):
  """The flags of a short, valid run of `script` on the fixtures, its outputs under tmp_path."""
  config = "--bert_config_file=" + bert_config_file
  if script == "run_classifier":
    return CLASSIFIER_FLAGS + [config, "--do_train=true", "--num_train_epochs=0.2",
                               "--output_dir=" + (output or str(tmp_path / "out"))]
  if script == "run_squad":
    return [config, "--vocab_file=" + support.VOCAB_FILE, "--do_predict=true",
            "--predict_file=" + SQUAD_DEV, "--max_seq_length=96", "--max_query_length=24",
            "--doc_stride=32", "--output_dir=" + (output or str(tmp_path / "out"))]
  if script == "run_pretraining":
    return PRETRAINING_FLAGS + [config, "--input_file=" + PRETRAINING_RECORDS, "--do_eval=true",
                                "--max_eval_steps=1",
                                "--output_dir=" + (output or str(tmp_path / "out"))]
  if script == "extract_features":
    input_file = tmp_path / "input.txt"
    input_file.write_text("Who was Jim Henson ? ||| Jim Henson was a puppeteer\n")
    return [config, "--vocab_file=" + support.VOCAB_FILE, "--init_checkpoint=" + MODEL_CHECKPOINT,
            "--input_file=" + str(input_file), "--max_seq_length=32", "--layers=-1",
            "--output_file=" + (output or str(tmp_path / "out.jsonl"))]
  assert script == "create_pretraining_data"
  return ["--input_file=" + support.fixture_path("pretraining_data", "input.txt"),
          "--vocab_file=" + support.VOCAB_FILE,
          "--output_file=" + (output or str(tmp_path / "out.tfrecord"))]


def has_checkpoint(output_dir):
  names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
  return any(name == "checkpoint" or ".index" in name for name in names)


# ------------------------------------------------------------------------------------------------
# Checked before any work.

@pytest.mark.slow
@pytest.mark.parametrize("script", ["run_classifier", "run_squad", "extract_features"])
def test_vocabulary_larger_than_the_model(script, tmp_path):
  config = support.write_config(tmp_path / "bert_config.json", vocab_size=100)
  result = support.run_script(script, script_flags(script, tmp_path, bert_config_file=config))
  support.assert_one_line_error(
      result, "--vocab_file %s has 30522 tokens but --bert_config_file %s has vocab_size=100: "
      "pass the vocab.txt and bert_config.json of the same model" % (support.VOCAB_FILE, config))


@pytest.mark.slow
@pytest.mark.parametrize("script, flag", [
    ("run_classifier", "output_dir"), ("run_squad", "output_dir"),
    ("run_pretraining", "output_dir"), ("extract_features", "output_file"),
    ("create_pretraining_data", "output_file")])
def test_output_that_cannot_be_written_stops_the_run_before_any_work(script, flag, tmp_path):
  path = "/proc/bert_output"
  result = support.run_script(script, script_flags(script, tmp_path, output=path))
  action = "made" if flag == "output_dir" else "written"
  support.assert_one_line_error(result, re.compile(
      r"--%s=%s cannot be %s: cannot write a file in /proc \(.+\)" % (flag, path, action)))
  assert "Calling model_fn" not in result.stderr
  assert "*** Example ***" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script, checkpoint, difference", [
    ("run_classifier", MODEL_CHECKPOINT, "model.ckpt-7: it has no variable output_weights"),
    ("run_squad", CLASSIFIER_CHECKPOINT,
     "model.ckpt-7: it has no variable cls/squad/output_weights"),
    ("run_pretraining", MODEL_CHECKPOINT,
     "model.ckpt-7: bert/embeddings/word_embeddings is [30522, 64] in the checkpoint but "
     "[30522, 32] in this run"),
])
def test_output_dir_holding_a_checkpoint_of_another_model(script, checkpoint, difference,
                                                          tmp_path):
  output_dir = str(tmp_path / "out")
  os.makedirs(output_dir)
  support.copy_checkpoint(checkpoint, output_dir)
  config = MODEL_CONFIG
  if script == "run_pretraining":
    config = support.write_config(tmp_path / "bert_config.json", hidden_size=32,
                                  intermediate_size=64)
  result = support.run_script(script, script_flags(script, tmp_path, bert_config_file=config))
  support.assert_one_line_error(
      result, "--output_dir=%s holds a checkpoint of another model (%s), which this run would "
      "load: choose another --output_dir, or delete the checkpoints in it (a model to start "
      "from is passed as --init_checkpoint)" % (output_dir, difference))


@pytest.mark.slow
def test_init_checkpoint_of_another_model(tmp_path):
  config = support.write_config(tmp_path / "bert_config.json", hidden_size=32,
                                intermediate_size=64)
  result = support.run_script("run_classifier", script_flags(
      "run_classifier", tmp_path, bert_config_file=config) + [
          "--init_checkpoint=" + MODEL_CHECKPOINT])
  support.assert_one_line_error(
      result, "--init_checkpoint=%s is a checkpoint of another model than --bert_config_file "
      "describes: bert/embeddings/word_embeddings is [30522, 64] in the checkpoint but "
      "[30522, 32] in this run; pass the bert_config.json that came with the checkpoint" %
      MODEL_CHECKPOINT)


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--train_batch_size=0", "--iterations_per_loop=0"])
def test_zero_batch_size_or_loop(flag, tmp_path):
  result = support.run_script("run_classifier", script_flags("run_classifier", tmp_path) + [flag])
  support.assert_one_line_error(result, "%s must be positive" % flag)


@pytest.mark.slow
def test_traceback_on_request(tmp_path):
  config = support.write_config(tmp_path / "bert_config.json", vocab_size=100)
  result = support.run_script(
      "run_classifier", script_flags("run_classifier", tmp_path, bert_config_file=config),
      env_overrides={script_io.TRACEBACK_VARIABLE: "1"})
  assert result.returncode == 1
  assert "Traceback (most recent call last)" in result.stderr
  assert "script_io.InputError" in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      "ERROR: --vocab_file %s has 30522 tokens" % support.VOCAB_FILE)


# ------------------------------------------------------------------------------------------------
# At run time; the failed run leaves nothing that breaks the corrected one.

def write_records(path, records):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record.SerializeToString())


def read_examples(path, limit):
  examples = []
  for serialized in tf.io.tf_record_iterator(path):
    examples.append(tf.train.Example.FromString(serialized))
    if len(examples) == limit:
      break
  return examples


@pytest.mark.slow
def test_ids_beyond_the_model_fail_in_the_first_step_and_the_corrected_rerun_trains(tmp_path):
  # The first record fits a model of `vocab_size` ids (the up-front check reads only that one);
  # the others hold the id vocab_size (and maybe larger ones), which the corrected model of
  # 30522 ids has.
  examples = read_examples(PRETRAINING_RECORDS, 16)
  first = examples[0].features.feature
  vocab_size = max(max(first[name].int64_list.value) for name in ("input_ids", "masked_lm_ids"))
  vocab_size += 1
  assert vocab_size < 30522
  for example in examples[1:]:
    example.features.feature["input_ids"].int64_list.value[1] = vocab_size
  records = str(tmp_path / "records.tfrecord")
  write_records(records, examples)
  output_dir = str(tmp_path / "out")
  run_flags = PRETRAINING_FLAGS + ["--input_file=" + records, "--do_train=true",
                                   "--num_train_steps=2", "--output_dir=" + output_dir]

  small_config = support.write_config(tmp_path / "bert_config.json", vocab_size=vocab_size)
  result = support.run_script("run_pretraining",
                              run_flags + ["--bert_config_file=" + small_config])
  support.assert_one_line_error(result, re.compile(
      r"a token id is beyond the model's vocab_size=%d \(indices\[\d+,\d+\] = \d+ is not in "
      r"\[0, %d\)\): check that the vocabulary \(--vocab_file, or the one the TFRecord files "
      r"were made with\) is the model's; vocab_size in --bert_config_file must be at least its "
      r"number of tokens" % (vocab_size, vocab_size)))
  # Its model.ckpt-0 is gone: the corrected run would resume from it and fail on its shapes.
  assert not has_checkpoint(output_dir)

  result = support.run_script("run_pretraining", run_flags + ["--bert_config_file=" + MODEL_CONFIG])
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.exists(os.path.join(output_dir, "model.ckpt-2.index"))


@pytest.mark.slow
def test_truncated_tfrecord_is_named(tmp_path):
  with open(PRETRAINING_RECORDS, "rb") as reader:
    data = reader.read()
  # A record is its length (8 bytes), a checksum (4), the data, a checksum (4). The cut goes
  # through the data of the 21st: TensorFlow takes a file cut inside a length for a whole one.
  offset = 0
  for _ in range(20):
    offset += 16 + struct.unpack("<Q", data[offset:offset + 8])[0]
  truncated = str(tmp_path / "truncated.tfrecord")
  with open(truncated, "wb") as writer:
    writer.write(data[:offset + 100])
  output_dir = str(tmp_path / "out")
  result = support.run_script("run_pretraining", PRETRAINING_FLAGS + [
      "--bert_config_file=" + MODEL_CONFIG, "--input_file=" + truncated, "--do_train=true",
      "--num_train_steps=100", "--output_dir=" + output_dir])
  support.assert_one_line_error(result, re.compile(
      r"%s is corrupt or truncated \(truncated record at \d+: .+\): write it again, or leave "
      r"it out of the input" % re.escape(truncated)))
  assert not has_checkpoint(output_dir)


@pytest.mark.slow
def test_nan_loss_names_the_step(tmp_path):
  output_dir = str(tmp_path / "out")
  result = support.run_script("run_classifier", CLASSIFIER_FLAGS + [
      "--bert_config_file=" + MODEL_CONFIG, "--do_train=true", "--num_train_epochs=2",
      "--learning_rate=1e30", "--output_dir=" + output_dir])
  support.assert_one_line_error(result, re.compile(
      r"the training loss is NaN at step \d+\. The usual causes: a learning rate too high "
      r"\(--learning_rate, and --num_warmup_steps or --warmup_proportion\), float16 without "
      r"loss scaling, or bad data \(ids or labels out of range\)"))
  assert not has_checkpoint(output_dir)


# ------------------------------------------------------------------------------------------------
# Interrupted: one line, and no output file left behind, whole or in part.

WRITER_SCRIPT = textwrap.dedent("""\
    import os, signal, sys
    import script_io

    def main(_):
      with script_io.atomic_output(os.path.join(sys.argv[1], "out.txt")) as temporary:
        with open(temporary, "w") as writer:
          writer.write("half of it\\n")
          writer.flush()
          os.kill(os.getpid(), getattr(signal, sys.argv[2]))

    script_io.run_main(main)
    """)


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_signal_while_writing_leaves_no_output(signal_name, tmp_path):
  env = dict(os.environ, PYTHONPATH=support.REPO_DIR, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "-c", WRITER_SCRIPT, str(tmp_path), signal_name],
                          env=env, capture_output=True, text=True, timeout=300)
  signal_number = getattr(signal, signal_name)
  support.assert_one_line_error(
      result, "interrupted by %s; no output file was left half-written" % signal_name,
      returncode=128 + signal_number)
  assert os.listdir(str(tmp_path)) == []


def run_main_in_process(script, args):
  """Runs a script's main() in this process with the command-line flags `args`."""
  with flagsaver.flagsaver():
    flags.FLAGS([script.__name__] + list(args))
    script.main([])


def interrupting_after(count, iterable):
  """Yields the first `count` items of `iterable`, then raises KeyboardInterrupt (Ctrl-C)."""
  for index, item in enumerate(iterable):
    if index == count:
      raise KeyboardInterrupt()
    yield item


@pytest.mark.slow
def test_ctrl_c_during_feature_extraction_leaves_no_output(tmp_path, monkeypatch):
  extract_features = support.load_script("extract_features")
  restore_input_order = extract_features.input_pipeline.restore_input_order
  monkeypatch.setattr(extract_features.input_pipeline, "restore_input_order",
                      lambda results: interrupting_after(1, restore_input_order(results)))
  (tmp_path / "input.txt").write_text("One line.\nAnother line.\nA third.\n")
  with pytest.raises(KeyboardInterrupt):
    run_main_in_process(extract_features, [
        "--input_file=" + str(tmp_path / "input.txt"),
        "--output_file=" + str(tmp_path / "out.jsonl"), "--vocab_file=" + support.VOCAB_FILE,
        "--bert_config_file=" + MODEL_CONFIG, "--init_checkpoint=" + MODEL_CHECKPOINT,
        "--max_seq_length=16", "--batch_size=1", "--layers=-1"])
  assert sorted(os.listdir(str(tmp_path))) == ["input.txt"]


def test_ctrl_c_while_writing_pretraining_data_leaves_no_output(tmp_path, monkeypatch):
  cpd = support.load_script("create_pretraining_data")
  serialized_examples = cpd._serialized_examples  # pylint: disable=protected-access
  monkeypatch.setattr(cpd, "_serialized_examples", lambda *args: interrupting_after(
      10, serialized_examples(*args)))
  output_files = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
  with pytest.raises(KeyboardInterrupt):
    run_main_in_process(cpd, [
        "--input_file=" + support.fixture_path("pretraining_data", "input.txt"),
        "--output_file=" + ",".join(output_files), "--vocab_file=" + support.VOCAB_FILE,
        "--dupe_factor=1"])
  assert os.listdir(str(tmp_path)) == []


# ------------------------------------------------------------------------------------------------
# What the original accepts runs.

@pytest.mark.slow
def test_doc_stride_as_large_as_the_context_window_predicts(tmp_path):
  # The default --max_query_length=64 leaves a window of 128 - 64 - 3 = 61 tokens; the
  # original's windows then advance by min(61, 64): they follow each other without overlap.
  result = support.run_script("run_squad", [
      "--vocab_file=" + support.VOCAB_FILE, "--bert_config_file=" + MODEL_CONFIG,
      "--init_checkpoint=" + support.fixture_path("squad", "finetuned-v1.1.ckpt"),
      "--do_predict=true", "--predict_file=" + SQUAD_DEV, "--max_seq_length=128",
      "--doc_stride=64", "--output_dir=" + str(tmp_path)])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "--doc_stride=64 is not smaller than the context window" in result.stderr
  with open(SQUAD_DEV) as reader:
    question_ids = [qa["id"] for article in json.load(reader)["data"]
                    for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  with open(str(tmp_path / "predictions.json")) as reader:
    predictions = json.load(reader)
  assert list(predictions) == question_ids
  assert all(isinstance(text, str) for text in predictions.values())


@pytest.mark.slow
def test_an_empty_shard_among_others_is_passed_over(tmp_path):
  empty = tmp_path / "empty.tfrecord"
  empty.write_bytes(b"")
  result = support.run_script("run_pretraining", PRETRAINING_FLAGS + [
      "--bert_config_file=" + MODEL_CONFIG, "--init_checkpoint=" + MODEL_CHECKPOINT,
      "--input_file=%s,%s" % (empty, PRETRAINING_RECORDS), "--do_eval=true",
      "--max_eval_steps=1", "--output_dir=" + str(tmp_path / "out")])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "--input_file: %s holds no records" % empty in result.stderr
  assert os.path.exists(str(tmp_path / "out" / "eval_results.txt"))


@pytest.mark.slow
def test_ctrl_c_stops_training_at_a_step_with_a_checkpoint_and_a_rerun_resumes(tmp_path):
  output_dir = str(tmp_path / "output")
  flags_of_run = [
      "--task_name=MRPC", "--data_dir=" + support.fixture_path("classifier", "data"),
      "--vocab_file=" + support.VOCAB_FILE, "--bert_config_file=" + MODEL_CONFIG,
      "--max_seq_length=32", "--train_batch_size=10", "--do_train=true",
      "--output_dir=" + output_dir, "--iterations_per_loop=10", "--save_checkpoints_steps=1000"]
  # 300 training examples in batches of 10: 30 steps an epoch; 10,000 epochs never end here.
  process = subprocess.Popen(
      support.script_command("run_classifier", flags_of_run + ["--num_train_epochs=10000"]),
      env=support.script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    for line in process.stdout:
      if "loss = " in line:  # Training runs.
        break
    process.send_signal(signal.SIGINT)
    # Within a few seconds: the step ends, the checkpoint is saved, the process exits.
    output = process.communicate(timeout=60)[0]
  finally:
    process.kill()
  assert process.returncode == 128 + signal.SIGINT, output[-3000:]
  assert "Traceback" not in output, output[-3000:]
  last_line = output.strip().splitlines()[-1]
  checkpoint = tf.train.latest_checkpoint(output_dir)
  assert last_line == (
      "ERROR: training stopped by SIGINT; the latest checkpoint is %s: training again resumes "
      "from it" % checkpoint), last_line
  stopped_at = int(tf.train.load_variable(checkpoint, "global_step"))
  assert stopped_at >= 1

  # The same command with an end in reach goes on from there to the end.
  num_train_epochs = (stopped_at + 3.5) / 30
  result = support.run_script("run_classifier", flags_of_run + [
      "--num_train_epochs=%r" % num_train_epochs])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Restoring parameters from %s" % checkpoint in result.stderr
  assert int(tf.train.load_variable(tf.train.latest_checkpoint(output_dir),
                                    "global_step")) == stopped_at + 3
