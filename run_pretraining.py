"""Pre-trains BERT on the masked LM and next sentence tasks, or evaluates a checkpoint on them.

Reads the TFRecords that `create_pretraining_data.py` writes and runs a TPUEstimator on CPU, GPU
or Cloud TPU. The heads keep the variable names of Google's checkpoints (`cls/predictions/...`,
`cls/seq_relationship/...`), so a released checkpoint continues pre-training as it is, and the
checkpoints written here load in the original code.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import model_checks
import os

from absl import flags
import estimator_setup
import flag_groups
import input_pipeline
import modeling
import optimization
import precision
import runner
import script_io
import training_guard
import tensorflow.compat.v1 as tf

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file of the pre-trained BERT model. It specifies the model architecture.")

flags.DEFINE_string(
    "input_file", None,
    "Input TFRecord files from create_pretraining_data.py: comma-separated globs.")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints and eval_results.txt will be written.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model).")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. It must equal the "
    "length the TFRecords were written with.")

flags.DEFINE_integer(
    "max_predictions_per_seq", 20,
    "Maximum number of masked LM predictions per sequence. It must equal the number the "
    "TFRecords were written with.")

flags.DEFINE_bool("do_train", False, "Whether to run training.")

flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")

flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")

flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")

flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")

flags.DEFINE_integer("num_train_steps", 100000, "Number of training steps.")

flags.DEFINE_integer("num_warmup_steps", 10000, "Number of warmup steps.")

flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")

flags.DEFINE_integer("iterations_per_loop", 1000,
                     "How many steps to make in each estimator call.")

flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")

flag_groups.define_tpu_flags()
flag_groups.define_scale_flags()
flag_groups.define_speed_flags()

FLAGS = flags.FLAGS

# Parallel file readers and decoders in the input pipeline, as the original used.
NUM_CPU_THREADS = 4


def model_fn_builder(bert_config, init_checkpoint, learning_rate, num_train_steps,
                     num_warmup_steps, use_tpu, use_one_hot_embeddings, options=None):
  """Returns a TPUEstimator `model_fn` for pre-training (TRAIN) and its metrics (EVAL).

  Args:
    bert_config: `modeling.BertConfig`.
    init_checkpoint: checkpoint to initialise matching variables from, or None.
    learning_rate: peak learning rate of `optimization.create_optimizer`.
    num_train_steps, num_warmup_steps: its schedule, in steps (updates).
    use_tpu: whether the model runs on TPU.
    use_one_hot_embeddings: look embeddings up by one-hot matmul (faster on TPU).
    options: the `estimator_setup.RunOptions` that make_estimator gets too, or None for the
      defaults with `use_tpu`: the encoder's precision (the heads are float32; float16 trains
      with loss scaling) and the micro-batches per update (see create_optimizer).
  """
  options = estimator_setup.model_fn_options(options, use_tpu)
  compute_type = precision.compute_type_for(options.precision, use_tpu)

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """Builds BERT with both pre-training heads; the features are those of `input_fn_builder`."""
    tf.logging.info("*** Features ***")
    for name in sorted(features.keys()):
      tf.logging.info("  name = %s, shape = %s", name, features[name].shape)

    is_training = (mode == runner.ModeKeys.TRAIN)
    # The heads read the masked positions and the pooled output only: in half precision the
    # last layer is computed there only. In float32 it stays whole, as the original's is (the
    # matrix products of fewer rows are rounded differently).
    masked_positions = features["masked_lm_positions"]
    model = modeling.BertModel(
        config=bert_config,
        is_training=is_training,
        input_ids=features["input_ids"],
        input_mask=features["input_mask"],
        token_type_ids=features["segment_ids"],
        use_one_hot_embeddings=use_one_hot_embeddings,
        compute_type=compute_type,
        output_positions=None if compute_type == tf.float32 else masked_positions)

    masked_lm_loss, masked_lm_example_loss, masked_lm_log_probs = get_masked_lm_output(
        bert_config, model.get_sequence_output(), model.get_embedding_table(),
        masked_positions if compute_type == tf.float32 else None, features["masked_lm_ids"],
        features["masked_lm_weights"], compute_type)
    next_sentence_loss, next_sentence_example_loss, next_sentence_log_probs = (
        get_next_sentence_output(bert_config, model.get_pooled_output(),
                                 features["next_sentence_labels"]))
    total_loss = masked_lm_loss + next_sentence_loss

    scaffold_fn = model_checks.init_from_checkpoint(init_checkpoint, use_tpu)

    if mode == runner.ModeKeys.TRAIN:
      train_op = optimization.create_optimizer(
          total_loss, learning_rate, num_train_steps, num_warmup_steps, use_tpu,
          gradient_accumulation_steps=options.gradient_accumulation_steps,
          **precision.mixed_precision_optimizer_options(compute_type))
      return runner.ModelSpec(
          mode=mode, loss=total_loss, train_op=train_op, scaffold_fn=scaffold_fn)
    if mode == runner.ModeKeys.EVAL:
      eval_metrics = (metric_fn, [
          masked_lm_example_loss, masked_lm_log_probs, features["masked_lm_ids"],
          features["masked_lm_weights"], next_sentence_example_loss,
          next_sentence_log_probs, features["next_sentence_labels"]
      ])
      return runner.ModelSpec(
          mode=mode, loss=total_loss, eval_metrics=eval_metrics, scaffold_fn=scaffold_fn)
    raise ValueError("Only TRAIN and EVAL modes are supported: %s" % mode)

  return estimator_setup.built_for(model_fn, options)


def metric_fn(masked_lm_example_loss, masked_lm_log_probs, masked_lm_ids, masked_lm_weights,
              next_sentence_example_loss, next_sentence_log_probs, next_sentence_labels):
  """Computes the eval metrics of both heads; masked LM ones count only real predictions.

  Args:
    masked_lm_example_loss: [batch_size * max_predictions_per_seq] float32.
    masked_lm_log_probs: [batch_size * max_predictions_per_seq, vocab_size] float32.
    masked_lm_ids: [batch_size, max_predictions_per_seq] int32.
    masked_lm_weights: [batch_size, max_predictions_per_seq] float32, 1.0 for a real
      prediction and 0.0 for padding.
    next_sentence_example_loss: [batch_size] float32.
    next_sentence_log_probs: [batch_size, 2] float32.
    next_sentence_labels: [batch_size, 1] int32.

  Returns:
    Dict of metric name -> (value, update_op), as tf.metrics give them.
  """
  masked_lm_log_probs = tf.reshape(masked_lm_log_probs, [-1, masked_lm_log_probs.shape[-1]])
  masked_lm_predictions = tf.argmax(masked_lm_log_probs, axis=-1, output_type=tf.int32)
  masked_lm_example_loss = tf.reshape(masked_lm_example_loss, [-1])
  masked_lm_ids = tf.reshape(masked_lm_ids, [-1])
  masked_lm_weights = tf.reshape(masked_lm_weights, [-1])
  masked_lm_accuracy = tf.metrics.accuracy(
      labels=masked_lm_ids, predictions=masked_lm_predictions, weights=masked_lm_weights)
  masked_lm_mean_loss = tf.metrics.mean(
      values=masked_lm_example_loss, weights=masked_lm_weights)

  next_sentence_log_probs = tf.reshape(
      next_sentence_log_probs, [-1, next_sentence_log_probs.shape[-1]])
  next_sentence_predictions = tf.argmax(
      next_sentence_log_probs, axis=-1, output_type=tf.int32)
  next_sentence_labels = tf.reshape(next_sentence_labels, [-1])
  next_sentence_accuracy = tf.metrics.accuracy(
      labels=next_sentence_labels, predictions=next_sentence_predictions)
  next_sentence_mean_loss = tf.metrics.mean(values=next_sentence_example_loss)

  return {
      "masked_lm_accuracy": masked_lm_accuracy,
      "masked_lm_loss": masked_lm_mean_loss,
      "next_sentence_accuracy": next_sentence_accuracy,
      "next_sentence_loss": next_sentence_mean_loss,
  }


def get_masked_lm_output(bert_config, input_tensor, output_weights, positions, label_ids,
                         label_weights, compute_type=tf.float32):
  """Predicts the masked tokens and computes their loss.

  The output projection is the word embedding table itself (tied weights), so only the
  transform layer and a bias are new variables.

  Args:
    bert_config: `modeling.BertConfig`.
    input_tensor: [batch_size, seq_length, hidden_size] float32, the final encoder layer; or
      without `positions`, its outputs at the masked positions only, [batch_size,
      max_predictions_per_seq, hidden_size] (`modeling.BertModel`'s output_positions).
    output_weights: [vocab_size, hidden_size] float32, the word embedding table.
    positions: [batch_size, max_predictions_per_seq] int32, positions of the masked tokens;
      None when `input_tensor` holds their outputs only.
    label_ids: [batch_size, max_predictions_per_seq] int32, the original tokens there.
    label_weights: [batch_size, max_predictions_per_seq] float32, 1.0 for a real prediction
      and 0.0 for padding.
    compute_type: the dtype of the product with the embedding table, the largest of
      pre-training after the encoder's (`modeling.BertModel`'s compute type); the logits, the
      softmax and the loss are float32.

  Returns:
    (loss, per_example_loss, log_probs): scalar float32 mean over real predictions;
    [batch_size * max_predictions_per_seq] float32;
    [batch_size * max_predictions_per_seq, vocab_size] float32.
  """
  if positions is None:
    input_tensor = modeling.reshape_to_matrix(input_tensor)
  else:
    input_tensor = gather_indexes(input_tensor, positions)

  with tf.variable_scope("cls/predictions"):
    # One more non-linear layer before the output, as in pre-training only; fine-tuning drops it.
    with tf.variable_scope("transform"):
      input_tensor = modeling.dense(
          input_tensor, bert_config.hidden_size,
          modeling.create_initializer(bert_config.initializer_range),
          activation=modeling.get_activation(bert_config.hidden_act))
      input_tensor = modeling.layer_norm(input_tensor)

    output_bias = tf.get_variable(
        "output_bias", shape=[bert_config.vocab_size], initializer=tf.zeros_initializer())
    logits = tf.matmul(tf.cast(input_tensor, compute_type), tf.cast(output_weights, compute_type),
                       transpose_b=True)
    logits = tf.nn.bias_add(tf.cast(logits, tf.float32), output_bias)
    log_probs = tf.nn.log_softmax(logits, axis=-1)

    label_ids = tf.reshape(label_ids, [-1])
    label_weights = tf.reshape(label_weights, [-1])
    one_hot_labels = tf.one_hot(label_ids, depth=bert_config.vocab_size, dtype=tf.float32)

    # Sequences with fewer masked tokens than max_predictions_per_seq are padded with
    # weight 0.0; the small constant keeps a batch of padding only from dividing by zero.
    per_example_loss = -tf.reduce_sum(log_probs * one_hot_labels, axis=[-1])
    numerator = tf.reduce_sum(label_weights * per_example_loss)
    denominator = tf.reduce_sum(label_weights) + 1e-5
    loss = numerator / denominator

  return loss, per_example_loss, log_probs


def get_next_sentence_output(bert_config, input_tensor, labels):
  """Predicts whether sentence B follows sentence A (label 0) or is random (label 1).

  Args:
    bert_config: `modeling.BertConfig`.
    input_tensor: [batch_size, hidden_size] float32, the pooled [CLS] output.
    labels: [batch_size, 1] int32.

  Returns:
    (loss, per_example_loss, log_probs): scalar float32; [batch_size] float32;
    [batch_size, 2] float32.
  """
  with tf.variable_scope("cls/seq_relationship"):
    output_weights = tf.get_variable(
        "output_weights",
        shape=[2, bert_config.hidden_size],
        initializer=modeling.create_initializer(bert_config.initializer_range))
    output_bias = tf.get_variable("output_bias", shape=[2], initializer=tf.zeros_initializer())

    logits = tf.matmul(input_tensor, output_weights, transpose_b=True)
    logits = tf.nn.bias_add(logits, output_bias)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    labels = tf.reshape(labels, [-1])
    one_hot_labels = tf.one_hot(labels, depth=2, dtype=tf.float32)
    per_example_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
    loss = tf.reduce_mean(per_example_loss)
  return loss, per_example_loss, log_probs


def gather_indexes(sequence_tensor, positions):
  """Gathers the vectors at `positions` of each sequence in the batch.

  Args:
    sequence_tensor: [batch_size, seq_length, width] float32.
    positions: [batch_size, num_positions] int32.

  Returns:
    [batch_size * num_positions, width] float32.
  """
  batch_size, seq_length, width = modeling.get_shape_list(sequence_tensor, expected_rank=3)
  flat_offsets = tf.reshape(tf.range(0, batch_size, dtype=tf.int32) * seq_length, [-1, 1])
  flat_positions = tf.reshape(positions + flat_offsets, [-1])
  flat_sequence_tensor = tf.reshape(sequence_tensor, [batch_size * seq_length, width])
  return tf.gather(flat_sequence_tensor, flat_positions)


def input_fn_builder(input_files, max_seq_length, max_predictions_per_seq, is_training,
                     trim_padding=False, batch_by_length=False):
  """Creates an `input_fn` over the pre-training TFRecords.

  Training reads several files at once, in a shuffled order that repeats forever; evaluation
  reads them in order, repeated, so `max_eval_steps` always finds enough batches. Batches
  have fixed shapes (the last, smaller one is dropped) as TPUs need.

  Args:
    input_files: list of TFRecord file names.
    max_seq_length: length of input_ids, input_mask and segment_ids in the records.
    max_predictions_per_seq: length of the masked_lm_* features in the records.
    is_training: whether to read for training.
    trim_padding: cut batches to their longest sequence (off TPU), with batch_by_length of
      examples of similar length (see input_pipeline.batch_features).

  Returns:
    input_fn(params) -> `tf.data.Dataset` of feature dicts of [batch_size, ...] tensors.
  """

  def input_fn(params):
    name_to_features = {
        "input_ids": tf.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.FixedLenFeature([max_seq_length], tf.int64),
        "masked_lm_positions": tf.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": tf.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": tf.FixedLenFeature([max_predictions_per_seq], tf.float32),
        "next_sentence_labels": tf.FixedLenFeature([1], tf.int64),
    }

    if is_training:
      dataset = tf.data.Dataset.from_tensor_slices(tf.constant(input_files))
      dataset = dataset.repeat()
      dataset = dataset.shuffle(buffer_size=len(input_files))
      # Reading files in parallel, in whichever order their records arrive, is fine for
      # training; more readers than files would only read the same file twice at once.
      dataset = dataset.interleave(
          tf.data.TFRecordDataset,
          cycle_length=min(NUM_CPU_THREADS, len(input_files)),
          num_parallel_calls=tf.data.AUTOTUNE,
          deterministic=False)
      dataset = dataset.shuffle(buffer_size=100)
    else:
      dataset = tf.data.TFRecordDataset(input_files)
      dataset = dataset.repeat()

    dataset = dataset.map(
        lambda record: input_pipeline.decode_record(record, name_to_features),
        num_parallel_calls=NUM_CPU_THREADS)
    return input_pipeline.batch_features(dataset, params["batch_size"], is_training,
                                         drop_remainder=True, trim_padding=trim_padding,
                                         batch_by_length=batch_by_length)

  return input_fn


def check_input_files(input_files, max_seq_length, max_predictions_per_seq, vocab_size=None):
  """Checks that every input file holds records with the lengths the flags give.

  With `vocab_size` (the model's), the token ids of the first record must be below it. Empty
  files are passed over with a warning, as the original reads them, unless all are empty.

  Raises:
    script_io.InputError: naming the file, and the feature and the flag that disagree; or one
      that is not a TFRecord file of tf.train.Example records; or no file holds a record.
  """
  expected_lengths = {
      "input_ids": (max_seq_length, "max_seq_length"),
      "masked_lm_positions": (max_predictions_per_seq, "max_predictions_per_seq"),
  }
  empty_files = [
      input_file for input_file in input_files
      if not input_pipeline.check_record_lengths(input_file, expected_lengths, vocab_size,
                                                 id_features=("input_ids", "masked_lm_ids"))]
  if len(empty_files) == len(input_files):
    raise script_io.InputError("--input_file: %s hold%s no records" % (
        ", ".join(empty_files), "s" if len(empty_files) == 1 else ""))
  for input_file in empty_files:
    tf.logging.warning("--input_file: %s holds no records", input_file)


def main(_):
  tf.logging.set_verbosity(tf.logging.INFO)

  if not FLAGS.do_train and not FLAGS.do_eval:
    raise script_io.InputError("At least one of --do_train or --do_eval must be True.")
  if FLAGS.do_train and FLAGS.num_train_steps <= 0:
    raise script_io.InputError(
        "--num_train_steps=%d: training needs a positive number of steps" % FLAGS.num_train_steps)
  script_io.check_positive({
      "train_batch_size": FLAGS.train_batch_size if FLAGS.do_train else None,
      "eval_batch_size": FLAGS.eval_batch_size if FLAGS.do_eval else None,
      "max_eval_steps": FLAGS.max_eval_steps if FLAGS.do_eval else None,
      "iterations_per_loop": FLAGS.iterations_per_loop})
  options = estimator_setup.RunOptions.from_flag_values(FLAGS.flag_values_dict())
  estimator_setup.check_scale_options(options, FLAGS.train_batch_size,
                                      {"--do_eval": FLAGS.do_eval})

  bert_config = model_checks.load_bert_config(FLAGS.bert_config_file, FLAGS.max_seq_length,
                                                 FLAGS.do_train)
  model_checks.check_init_checkpoint(FLAGS.init_checkpoint, bert_config)
  input_files = script_io.input_files_from_globs(FLAGS.input_file, "input_file")
  tf.logging.info("*** Input Files ***")
  for input_file in input_files:
    tf.logging.info("  %s", input_file)
  check_input_files(input_files, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq,
                    bert_config.vocab_size)
  script_io.check_output_dir(FLAGS.output_dir, "output_dir")
  model_checks.check_output_dir_checkpoint(FLAGS.output_dir, bert_config, {
      "cls/predictions/output_bias": [bert_config.vocab_size],
      "cls/seq_relationship/output_weights": [2, bert_config.hidden_size]})

  tf.gfile.MakeDirs(FLAGS.output_dir)

  model_fn = model_fn_builder(
      bert_config=bert_config,
      init_checkpoint=FLAGS.init_checkpoint,
      learning_rate=FLAGS.learning_rate,
      num_train_steps=FLAGS.num_train_steps,
      num_warmup_steps=FLAGS.num_warmup_steps,
      use_tpu=options.use_tpu,
      use_one_hot_embeddings=options.use_tpu,
      options=options)
  estimator = estimator_setup.make_estimator(
      model_fn, FLAGS.output_dir, options,
      train_batch_size=FLAGS.train_batch_size,
      eval_batch_size=FLAGS.eval_batch_size,
      save_checkpoints_steps=FLAGS.save_checkpoints_steps,
      iterations_per_loop=FLAGS.iterations_per_loop)

  if FLAGS.do_train:
    tf.logging.info("***** Running training *****")
    tf.logging.info("  Batch size = %d", FLAGS.train_batch_size)
    train_input_fn = input_fn_builder(
        input_files, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, is_training=True,
        trim_padding=options.trims_padding, batch_by_length=options.batch_by_length)
    with input_pipeline.naming_corrupt_files(input_files):
      training_guard.train(estimator, train_input_fn, FLAGS.num_train_steps,
                           options.peer_timeout_seconds)

  if FLAGS.do_eval:
    tf.logging.info("***** Running evaluation *****")
    tf.logging.info("  Batch size = %d", FLAGS.eval_batch_size)
    eval_input_fn = input_fn_builder(
        input_files, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, is_training=False,
        trim_padding=options.trims_padding, batch_by_length=options.batch_by_length)
    with input_pipeline.naming_corrupt_files(input_files):
      result = estimator.evaluate(input_fn=eval_input_fn, steps=FLAGS.max_eval_steps)
    script_io.write_eval_results(os.path.join(FLAGS.output_dir, "eval_results.txt"), result)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("output_dir")
  script_io.run_main(main)
