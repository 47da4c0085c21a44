"""Fine-tunes BERT for question answering on SQuAD 1.1 and 2.0, and predicts answers.

A SQuAD question is answered by a span of its context paragraph. The context is split on
whitespace into words (the SQuAD annotations are character offsets, mapped here onto words), the
words into WordPiece tokens, and contexts longer than the model's window into overlapping
windows `doc_stride` tokens apart. The model scores every token as the start and as the end of the
answer (`cls/squad/output_weights` [2, hidden_size]); prediction keeps the best valid spans of
each question over all its windows, each token judged in the window where it has the most
context, and maps the chosen WordPieces back onto the original text. SQuAD 2.0 questions may have
no answer: the [CLS] token stands for "no answer", and the question is left unanswered when its
null score beats the best span by more than `null_score_diff_threshold`.

Outputs in --output_dir: predictions.json, nbest_predictions.json, null_odds.json (2.0), and, when
the predict file carries its answers, the official scores in eval_results.json. With --export_dir
the model is also written as a SavedModel (see serving.py), which TensorFlow Serving or
`SquadPredictor` serves.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import json
import math
import model_checks
import os
import random
import runner
import sys

from absl import flags
import estimator_setup
import flag_groups
import input_pipeline
import modeling
import optimization
import precision
import script_io
import serving
import squad_metrics
import tokenization
import tensorflow.compat.v1 as tf
import tf_example
import training_guard
import windowing

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file of the pre-trained BERT model. It specifies the model architecture.")

flags.DEFINE_string("vocab_file", None, "The WordPiece vocabulary the model was trained with.")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory for the checkpoints, the TFRecord features and the predictions.")

flags.DEFINE_string("train_file", None, "SQuAD JSON to train on, e.g. train-v1.1.json.")

flags.DEFINE_string(
    "predict_file", None, "SQuAD JSON to predict answers for, e.g. dev-v1.1.json.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model).")

flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text. True for uncased models, False for cased models.")

flags.DEFINE_integer(
    "max_seq_length", 384,
    "The maximum total input sequence length after WordPiece tokenization: question, context "
    "window and the [CLS]/[SEP] tokens. Longer contexts are split into windows.")

flags.DEFINE_integer(
    "doc_stride", 128,
    "When a context is split into windows, how many tokens each window starts after the last.")

flags.DEFINE_integer(
    "max_query_length", 64,
    "The maximum number of question tokens; longer questions are truncated to it.")

flags.DEFINE_bool("do_train", False, "Whether to run training.")

flags.DEFINE_bool("do_predict", False, "Whether to run prediction on --predict_file.")

flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")

flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predictions.")

flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")

flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")

flags.DEFINE_float(
    "warmup_proportion", 0.1,
    "Proportion of training to perform linear learning rate warmup for, e.g. 0.1 = 10%.")

flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")

flags.DEFINE_integer("iterations_per_loop", 1000,
                     "How many steps to make in each estimator call.")

flags.DEFINE_integer(
    "n_best_size", 20,
    "How many best start and end positions to combine, and how many answers to keep per "
    "question in nbest_predictions.json.")

flags.DEFINE_integer(
    "max_answer_length", 30,
    "The maximum length of a predicted answer, in WordPiece tokens.")

flags.DEFINE_bool(
    "verbose_logging", False,
    "Whether to log why a predicted answer could not be mapped back onto the original text.")

flags.DEFINE_bool(
    "version_2_with_negative", False,
    "Whether some questions have no answer (SQuAD 2.0).")

flags.DEFINE_float(
    "null_score_diff_threshold", 0.0,
    "SQuAD 2.0: predict no answer when the null score minus the best answer's score exceeds it.")

flag_groups.define_tpu_flags()
flag_groups.define_scale_flags()
flag_groups.define_speed_flags()
serving.define_export_flag()

FLAGS = flags.FLAGS

# The unique id of the first feature; later ones count up from it.
FIRST_UNIQUE_ID = 1000000000

# How many examples convert_examples_to_features logs in full.
NUM_EXAMPLES_TO_LOG = 20

# The null odds of a SQuAD 2.0 question without any candidate answer: the null answer wins by
# any margin, so the largest float, which sorts above every real score and stays valid JSON.
NO_CANDIDATE_NULL_ODDS = sys.float_info.max


class SquadExample(object):
  """One question with its context split into words; positions are word indexes.

  For training, start_position and end_position give the answer's first and last word, or -1
  for a question without an answer (SQuAD 2.0).
  """

  def __init__(self,
               qas_id,
               question_text,
               doc_tokens,
               orig_answer_text=None,
               start_position=None,
               end_position=None,
               is_impossible=False):
    self.qas_id = qas_id
    self.question_text = question_text
    self.doc_tokens = doc_tokens
    self.orig_answer_text = orig_answer_text
    self.start_position = start_position
    self.end_position = end_position
    self.is_impossible = is_impossible

  def __str__(self):
    return self.__repr__()

  def __repr__(self):
    text = "qas_id: %s, question_text: %s, doc_tokens: [%s]" % (
        tokenization.printable_text(self.qas_id),
        tokenization.printable_text(self.question_text), " ".join(self.doc_tokens))
    if self.start_position:
      text += ", start_position: %d, end_position: %d, is_impossible: %r" % (
          self.start_position, self.end_position, self.is_impossible)
    return text


class InputFeatures(object):
  """The model input of one context window of one question.

  token_to_orig_map and token_is_max_context are keyed by position in `tokens` and cover the
  context tokens only. start_position/end_position (training) index `tokens`; both are 0
  ([CLS]) when the window does not hold the answer or there is none.
  """

  def __init__(self,
               unique_id,
               example_index,
               doc_span_index,
               tokens,
               token_to_orig_map,
               token_is_max_context,
               input_ids,
               input_mask,
               segment_ids,
               start_position=None,
               end_position=None,
               is_impossible=None):
    self.unique_id = unique_id
    self.example_index = example_index
    self.doc_span_index = doc_span_index
    self.tokens = tokens
    self.token_to_orig_map = token_to_orig_map
    self.token_is_max_context = token_is_max_context
    self.input_ids = input_ids
    self.input_mask = input_mask
    self.segment_ids = segment_ids
    self.start_position = start_position
    self.end_position = end_position
    self.is_impossible = is_impossible


def _not_squad(input_file, problem):
  return script_io.InputError("%s is not SQuAD JSON: %s" % (input_file, problem))


def read_squad_data(input_file):
  """Loads a SQuAD JSON file and checks its article/paragraph/question structure.

  Returns:
    The file's "data" list: articles with "paragraphs", each with a "context" string and a
    "qas" list of questions with an "id" and a "question" string.

  Raises:
    script_io.InputError: not JSON, not that structure, or a question without an id; the
      message names the file and the place in it.
  """
  with tf.io.gfile.GFile(input_file, "r") as reader:
    try:
      squad = json.load(reader)
    except ValueError as error:
      raise _not_squad(input_file, error)
  data = squad.get("data") if isinstance(squad, dict) else None
  if not isinstance(data, list):
    raise _not_squad(input_file, 'no "data" list at the top level')
  for article_index, article in enumerate(data):
    where = "data[%d]" % article_index
    if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
      raise _not_squad(input_file, '%s has no "paragraphs" list' % where)
    for paragraph_index, paragraph in enumerate(article["paragraphs"]):
      where = "data[%d].paragraphs[%d]" % (article_index, paragraph_index)
      if (not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str) or
          not isinstance(paragraph.get("qas"), list)):
        raise _not_squad(input_file, '%s needs a "context" string and a "qas" list' % where)
      for qa_index, qa in enumerate(paragraph["qas"]):
        where = "data[%d].paragraphs[%d].qas[%d]" % (article_index, paragraph_index, qa_index)
        if not isinstance(qa, dict) or not isinstance(qa.get("question"), str):
          raise _not_squad(input_file, '%s has no "question" string' % where)
        if qa.get("id") in (None, ""):
          raise script_io.InputError('%s: question %s %r has no "id"' %
                                     (input_file, where, qa["question"]))
  return data


def _is_whitespace(char):
  # The original's word split, kept because word indexes end up in features and answers: ASCII
  # whitespace and U+202F (narrow no-break space) only; other Unicode spaces stay inside words.
  return char in (" ", "\t", "\r", "\n") or ord(char) == 0x202F


def split_context(paragraph_text):
  """Splits a context into whitespace-separated words.

  Returns:
    (doc_tokens, char_to_word_offset): the words, and for every character of the text the
    index of the word it belongs to (whitespace belongs to the word before it, -1 at the start).
  """
  doc_tokens = []
  char_to_word_offset = []
  previous_is_whitespace = True
  for char in paragraph_text:
    if _is_whitespace(char):
      previous_is_whitespace = True
    else:
      if previous_is_whitespace:
        doc_tokens.append(char)
      else:
        doc_tokens[-1] += char
      previous_is_whitespace = False
    char_to_word_offset.append(len(doc_tokens) - 1)
  return doc_tokens, char_to_word_offset


def _training_answer(input_file, qa):
  """The single annotated answer of a training question, checked: {"text", "answer_start"}."""
  answers = qa.get("answers")
  if not isinstance(answers, list) or len(answers) != 1:
    hint = ""
    if qa.get("is_impossible") is True:
      hint = ': it is "is_impossible", a SQuAD 2.0 question: pass --version_2_with_negative'
    raise script_io.InputError(
        "%s: training question %s needs exactly 1 answer%s" % (input_file, qa["id"], hint))
  answer = answers[0]
  if (not isinstance(answer, dict) or not isinstance(answer.get("text"), str) or
      not isinstance(answer.get("answer_start"), int)):
    raise script_io.InputError(
        '%s: the answer of question %s needs a "text" string and an "answer_start" integer' %
        (input_file, qa["id"]))
  return answer


def _answer_word_span(answer, doc_tokens, char_to_word_offset):
  """(first word, last word) of the annotated answer, or None when its text is not there.

  Only answers whose text can be found again in the context's words are kept: SQuAD has a few
  offsets that do not match their text (odd Unicode), and training on them would teach noise.
  """
  answer_start = answer["answer_start"]
  answer_end = answer_start + len(answer["text"]) - 1
  if not answer["text"] or answer_start < 0 or answer_end >= len(char_to_word_offset):
    return None
  start_position = char_to_word_offset[answer_start]
  end_position = char_to_word_offset[answer_end]
  actual_text = " ".join(doc_tokens[start_position:(end_position + 1)])
  cleaned_answer_text = " ".join(answer["text"].split())
  if actual_text.find(cleaned_answer_text) == -1:
    return None
  return start_position, end_position


def read_squad_examples(input_file, is_training):
  """Reads a SQuAD JSON file into a list of SquadExample, in file order.

  For training, each question needs exactly one answer (or, with --version_2_with_negative,
  "is_impossible": true). Questions whose answer cannot be found in the context are skipped;
  how many is logged.

  Raises:
    script_io.InputError: the file is not SQuAD JSON or a training answer is malformed.
  """
  data = read_squad_data(input_file)
  examples = []
  num_questions = 0
  num_skipped = 0
  for article in data:
    for paragraph in article["paragraphs"]:
      doc_tokens, char_to_word_offset = split_context(paragraph["context"])
      for qa in paragraph["qas"]:
        num_questions += 1
        example = SquadExample(
            qas_id=qa["id"], question_text=qa["question"], doc_tokens=doc_tokens)
        if is_training:
          if FLAGS.version_2_with_negative:
            example.is_impossible = qa.get("is_impossible")
            if not isinstance(example.is_impossible, bool):
              raise script_io.InputError(
                  '%s: training question %s needs "is_impossible": true or false' %
                  (input_file, qa["id"]))
          if example.is_impossible:
            example.start_position = -1
            example.end_position = -1
            example.orig_answer_text = ""
          else:
            answer = _training_answer(input_file, qa)
            span = _answer_word_span(answer, doc_tokens, char_to_word_offset)
            if span is None:
              tf.logging.warning("Could not find answer %r of question %s in its context.",
                                 answer["text"], qa["id"])
              num_skipped += 1
              continue
            example.start_position, example.end_position = span
            example.orig_answer_text = answer["text"]
        examples.append(example)
  if num_skipped:
    tf.logging.warning(
        "Skipped %d of %d training questions of %s: their answer is not in their context.",
        num_skipped, num_questions, input_file)
  return examples


def _log_feature(feature, is_training):
  tf.logging.info("*** Example ***")
  tf.logging.info("unique_id: %s", feature.unique_id)
  tf.logging.info("example_index: %s", feature.example_index)
  tf.logging.info("doc_span_index: %s", feature.doc_span_index)
  tf.logging.info("tokens: %s",
                  " ".join(tokenization.printable_text(token) for token in feature.tokens))
  tf.logging.info("token_to_orig_map: %s", " ".join(
      "%d:%d" % item for item in feature.token_to_orig_map.items()))
  tf.logging.info("token_is_max_context: %s", " ".join(
      "%d:%s" % item for item in feature.token_is_max_context.items()))
  tf.logging.info("input_ids: %s", " ".join(str(x) for x in feature.input_ids))
  tf.logging.info("input_mask: %s", " ".join(str(x) for x in feature.input_mask))
  tf.logging.info("segment_ids: %s", " ".join(str(x) for x in feature.segment_ids))
  if is_training and feature.is_impossible:
    tf.logging.info("impossible example")
  elif is_training:
    answer_text = " ".join(feature.tokens[feature.start_position:(feature.end_position + 1)])
    tf.logging.info("start_position: %d", feature.start_position)
    tf.logging.info("end_position: %d", feature.end_position)
    tf.logging.info("answer: %s", tokenization.printable_text(answer_text))


def convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride,
                                 max_query_length, is_training, output_fn):
  """Turns each example into one InputFeatures per context window and passes each to output_fn.

  A window holds [CLS] question [SEP] context-window [SEP], zero-padded to max_seq_length.
  For training, a window that does not hold the whole answer gets positions 0 ([CLS]).
  """
  unique_id = FIRST_UNIQUE_ID
  for example_index, example in enumerate(examples):
    query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]

    tok_to_orig_index = []
    orig_to_tok_index = []
    all_doc_tokens = []
    for i, token in enumerate(example.doc_tokens):
      orig_to_tok_index.append(len(all_doc_tokens))
      for sub_token in tokenizer.tokenize(token):
        tok_to_orig_index.append(i)
        all_doc_tokens.append(sub_token)

    tok_start_position = None
    tok_end_position = None
    if is_training and example.is_impossible:
      tok_start_position = -1
      tok_end_position = -1
    elif is_training:
      tok_start_position = orig_to_tok_index[example.start_position]
      if example.end_position < len(example.doc_tokens) - 1:
        tok_end_position = orig_to_tok_index[example.end_position + 1] - 1
      else:
        tok_end_position = len(all_doc_tokens) - 1
      tok_start_position, tok_end_position = _improve_answer_span(
          all_doc_tokens, tok_start_position, tok_end_position, tokenizer,
          example.orig_answer_text)

    # [CLS], [SEP] and [SEP] take 3 positions.
    max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
    doc_spans = windowing.doc_spans(len(all_doc_tokens), max_tokens_for_doc, doc_stride)

    for doc_span_index, doc_span in enumerate(doc_spans):
      tokens = ["[CLS]"] + query_tokens + ["[SEP]"]
      segment_ids = [0] * len(tokens)
      token_to_orig_map = {}
      token_is_max_context = {}
      for split_token_index in range(doc_span.start, doc_span.start + doc_span.length):
        token_to_orig_map[len(tokens)] = tok_to_orig_index[split_token_index]
        token_is_max_context[len(tokens)] = (
            windowing.best_window(doc_spans, split_token_index) == doc_span_index)
        tokens.append(all_doc_tokens[split_token_index])
        segment_ids.append(1)
      tokens.append("[SEP]")
      segment_ids.append(1)

      input_ids = tokenizer.convert_tokens_to_ids(tokens)
      input_mask = [1] * len(input_ids)
      padding = [0] * (max_seq_length - len(input_ids))
      input_ids += padding
      input_mask += padding
      segment_ids += padding

      start_position = None
      end_position = None
      if is_training:
        doc_end = doc_span.start + doc_span.length - 1
        if (example.is_impossible or tok_start_position < doc_span.start or
            tok_end_position > doc_end):
          start_position = 0
          end_position = 0
        else:
          doc_offset = len(query_tokens) + 2
          start_position = tok_start_position - doc_span.start + doc_offset
          end_position = tok_end_position - doc_span.start + doc_offset

      feature = InputFeatures(
          unique_id=unique_id,
          example_index=example_index,
          doc_span_index=doc_span_index,
          tokens=tokens,
          token_to_orig_map=token_to_orig_map,
          token_is_max_context=token_is_max_context,
          input_ids=input_ids,
          input_mask=input_mask,
          segment_ids=segment_ids,
          start_position=start_position,
          end_position=end_position,
          is_impossible=example.is_impossible)
      if example_index < NUM_EXAMPLES_TO_LOG:
        _log_feature(feature, is_training)
      output_fn(feature)
      unique_id += 1


def _improve_answer_span(doc_tokens, input_start, input_end, tokenizer, orig_answer_text):
  """Returns the (start, end) token span inside [input_start, input_end] that spells the answer.

  The annotation marks characters, which map onto whole words; the answer is often only part
  of a word ("1895" in "(1895-1943)."), and WordPiece may split it off. The first, longest
  span of tokens equal to the tokenized answer wins; when there is none (the answer is part of
  a WordPiece, "Japan" in "Japanese") the word span stays.
  """
  tok_answer_text = " ".join(tokenizer.tokenize(orig_answer_text))
  for new_start in range(input_start, input_end + 1):
    for new_end in range(input_end, new_start - 1, -1):
      if " ".join(doc_tokens[new_start:(new_end + 1)]) == tok_answer_text:
        return new_start, new_end
  return input_start, input_end


def create_model(bert_config, is_training, input_ids, input_mask, segment_ids,
                 use_one_hot_embeddings, compute_type=tf.float32):
  """Builds BERT with the span head: a start and an end logit for every token.

  Args:
    bert_config: `modeling.BertConfig`.
    is_training: bool, whether to apply dropout.
    input_ids, input_mask, segment_ids: [batch_size, seq_length] int32.
    use_one_hot_embeddings: bool, one-hot matmul embedding lookup (for TPUs).
    compute_type: the encoder's compute dtype (`modeling.BertModel`); the head is float32.

  Returns:
    (start_logits, end_logits), each [batch_size, seq_length] float32.
  """
  model = modeling.BertModel(
      config=bert_config,
      is_training=is_training,
      input_ids=input_ids,
      input_mask=input_mask,
      token_type_ids=segment_ids,
      use_one_hot_embeddings=use_one_hot_embeddings,
      compute_type=compute_type)

  final_hidden = model.get_sequence_output()
  batch_size, seq_length, hidden_size = modeling.get_shape_list(final_hidden, expected_rank=3)

  output_weights = tf.get_variable(
      "cls/squad/output_weights", [2, hidden_size],
      initializer=tf.truncated_normal_initializer(stddev=0.02))
  output_bias = tf.get_variable(
      "cls/squad/output_bias", [2], initializer=tf.zeros_initializer())

  final_hidden_matrix = tf.reshape(final_hidden, [batch_size * seq_length, hidden_size])
  logits = tf.matmul(final_hidden_matrix, output_weights, transpose_b=True)
  logits = tf.nn.bias_add(logits, output_bias)
  # [B*T, 2] -> [2, B, T]
  logits = tf.transpose(tf.reshape(logits, [batch_size, seq_length, 2]), [2, 0, 1])
  start_logits, end_logits = tf.unstack(logits, axis=0)
  return start_logits, end_logits


def _position_loss(logits, positions, seq_length):
  """Mean cross-entropy of [batch_size, seq_length] logits against [batch_size] positions."""
  one_hot_positions = tf.one_hot(positions, depth=seq_length, dtype=tf.float32)
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  return -tf.reduce_mean(tf.reduce_sum(one_hot_positions * log_probs, axis=-1))


def model_fn_builder(bert_config, init_checkpoint, learning_rate, num_train_steps,
                     num_warmup_steps, use_tpu, use_one_hot_embeddings, options=None):
  """Returns a TPUEstimator `model_fn`: TRAIN on start/end positions, PREDICT the logits.

  PREDICT needs only the features input_ids, input_mask and segment_ids (and passes unique_ids
  through when given). `options`, the `estimator_setup.RunOptions` that make_estimator gets
  too, give the encoder's precision (float16 trains with loss scaling) and the micro-batches
  per update (see create_optimizer); None means the defaults with `use_tpu`.

  Batches keep their padding (no trimming, unlike the other scripts): the original's loss
  softmax and its n-best search run over every position, padding included, so cutting the
  padding would change which spans are predicted.
  """
  options = estimator_setup.model_fn_options(options, use_tpu)
  compute_type = precision.compute_type_for(options.precision, use_tpu)

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """Builds the span model; the features are those of `input_fn_builder`."""
    tf.logging.info("*** Features ***")
    for name in sorted(features.keys()):
      tf.logging.info("  name = %s, shape = %s", name, features[name].shape)

    is_training = (mode == runner.ModeKeys.TRAIN)
    start_logits, end_logits = create_model(
        bert_config=bert_config,
        is_training=is_training,
        input_ids=features["input_ids"],
        input_mask=features["input_mask"],
        segment_ids=features["segment_ids"],
        use_one_hot_embeddings=use_one_hot_embeddings,
        compute_type=compute_type)

    scaffold_fn = model_checks.init_from_checkpoint(init_checkpoint, use_tpu)

    if mode == runner.ModeKeys.TRAIN:
      seq_length = modeling.get_shape_list(features["input_ids"])[1]
      start_loss = _position_loss(start_logits, features["start_positions"], seq_length)
      end_loss = _position_loss(end_logits, features["end_positions"], seq_length)
      total_loss = (start_loss + end_loss) / 2.0
      train_op = optimization.create_optimizer(
          total_loss, learning_rate, num_train_steps, num_warmup_steps, use_tpu,
          gradient_accumulation_steps=options.gradient_accumulation_steps,
          **precision.mixed_precision_optimizer_options(compute_type))
      return runner.ModelSpec(
          mode=mode, loss=total_loss, train_op=train_op, scaffold_fn=scaffold_fn)
    if mode == runner.ModeKeys.PREDICT:
      predictions = {"start_logits": start_logits, "end_logits": end_logits}
      # The requests to a SavedModel (serving.py) carry no unique_ids.
      if "unique_ids" in features:
        predictions["unique_ids"] = features["unique_ids"]
      return runner.ModelSpec(
          mode=mode, predictions=predictions, scaffold_fn=scaffold_fn)
    raise ValueError("Only TRAIN and PREDICT modes are supported: %s" % mode)

  return estimator_setup.built_for(model_fn, options)


def input_fn_builder(input_file, seq_length, is_training, drop_remainder):
  """Creates an `input_fn` over the TFRecord that FeatureWriter wrote.

  Returns:
    input_fn(params) -> `tf.data.Dataset` of dicts: unique_ids [batch_size], input_ids,
    input_mask, segment_ids [batch_size, seq_length], and for training start_positions and
    end_positions [batch_size], all int32.
  """
  name_to_features = {
      "unique_ids": tf.FixedLenFeature([], tf.int64),
      "input_ids": tf.FixedLenFeature([seq_length], tf.int64),
      "input_mask": tf.FixedLenFeature([seq_length], tf.int64),
      "segment_ids": tf.FixedLenFeature([seq_length], tf.int64),
  }
  if is_training:
    name_to_features["start_positions"] = tf.FixedLenFeature([], tf.int64)
    name_to_features["end_positions"] = tf.FixedLenFeature([], tf.int64)
  return input_pipeline.file_based_input_fn_builder(
      input_file, name_to_features, is_training, drop_remainder)


RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])

_PrelimPrediction = collections.namedtuple(
    "PrelimPrediction", ["feature_index", "start_index", "end_index", "start_logit", "end_logit"])

_NbestPrediction = collections.namedtuple(
    "NbestPrediction", ["text", "start_logit", "end_logit"])


def _span_candidates(feature_index, feature, result, n_best_size, max_answer_length):
  """The valid spans among the n best starts x n best ends of one window, as PrelimPredictions.

  A valid span lies in the context, starts at a token whose best window is this one, does not
  end before it starts, and is at most max_answer_length tokens long.
  """
  candidates = []
  for start_index in _get_best_indexes(result.start_logits, n_best_size):
    for end_index in _get_best_indexes(result.end_logits, n_best_size):
      if (start_index not in feature.token_to_orig_map or
          end_index not in feature.token_to_orig_map or
          not feature.token_is_max_context.get(start_index, False) or
          end_index < start_index or
          end_index - start_index + 1 > max_answer_length):
        continue
      candidates.append(_PrelimPrediction(
          feature_index=feature_index,
          start_index=start_index,
          end_index=end_index,
          start_logit=result.start_logits[start_index],
          end_logit=result.end_logits[end_index]))
  return candidates


def _span_text(example, feature, prediction, do_lower_case):
  """The original-text answer of a span of WordPiece tokens."""
  tok_text = " ".join(feature.tokens[prediction.start_index:(prediction.end_index + 1)])
  # Glue the WordPieces back into words.
  tok_text = tok_text.replace(" ##", "").replace("##", "")
  tok_text = " ".join(tok_text.split())
  orig_doc_start = feature.token_to_orig_map[prediction.start_index]
  orig_doc_end = feature.token_to_orig_map[prediction.end_index]
  orig_text = " ".join(example.doc_tokens[orig_doc_start:(orig_doc_end + 1)])
  return get_final_text(tok_text, orig_text, do_lower_case)


def _example_nbest(example, features, unique_id_to_result, n_best_size, max_answer_length,
                   do_lower_case, version_2):
  """The n-best answers of one example over all its windows, best first, and its null score.

  Returns:
    (nbest, score_null): list of _NbestPrediction with distinct texts (SQuAD 2.0, `version_2`:
    "" is the null answer, always included); the lowest [CLS] start + end logit over the
    windows.
  """
  prelim_predictions = []
  # A context without any token has no window; its null answer scores 0.
  null_prediction = _PrelimPrediction(
      feature_index=0, start_index=0, end_index=0, start_logit=0, end_logit=0)
  for feature_index, feature in enumerate(features):
    result = unique_id_to_result[feature.unique_id]
    null_score = result.start_logits[0] + result.end_logits[0]
    # The window least sure that there is no answer speaks for the question.
    if feature_index == 0 or null_score < null_prediction.start_logit + null_prediction.end_logit:
      null_prediction = _PrelimPrediction(
          feature_index=feature_index, start_index=0, end_index=0,
          start_logit=result.start_logits[0], end_logit=result.end_logits[0])
    prelim_predictions.extend(
        _span_candidates(feature_index, feature, result, n_best_size, max_answer_length))
  if version_2:
    prelim_predictions.append(null_prediction)
  prelim_predictions.sort(key=lambda x: x.start_logit + x.end_logit, reverse=True)

  nbest = []
  seen_texts = set()
  for prediction in prelim_predictions:
    if len(nbest) >= n_best_size:
      break
    if prediction.start_index > 0:
      text = _span_text(example, features[prediction.feature_index], prediction, do_lower_case)
      if text in seen_texts:
        continue
    else:
      text = ""
    seen_texts.add(text)
    nbest.append(_NbestPrediction(
        text=text, start_logit=prediction.start_logit, end_logit=prediction.end_logit))

  if version_2 and "" not in seen_texts:
    nbest.append(_NbestPrediction(text="", start_logit=null_prediction.start_logit,
                                  end_logit=null_prediction.end_logit))
  if not nbest:
    # No valid span at all (SQuAD 1.1): a placeholder answer, as the original gives.
    nbest.append(_NbestPrediction(text="empty", start_logit=0.0, end_logit=0.0))
  return nbest, null_prediction.start_logit + null_prediction.end_logit


def write_predictions(all_examples, all_features, all_results, n_best_size, max_answer_length,
                      do_lower_case, output_prediction_file, output_nbest_file,
                      output_null_log_odds_file):
  """Chooses each question's answer and writes the prediction files.

  predictions.json maps question id -> answer text; nbest_predictions.json maps question id ->
  the n best answers with their probability (softmax over the n-best scores), start_logit and
  end_logit. With --version_2_with_negative, null_odds.json maps question id -> null score minus
  the best non-null answer's score, and the answer is "" when that exceeds
  --null_score_diff_threshold, or when there is no non-null candidate at all (null odds
  NO_CANDIDATE_NULL_ODDS).

  Args:
    all_examples: list of SquadExample.
    all_features: list of InputFeatures of those examples.
    all_results: list of RawResult, one per feature (logits as lists of floats).
    n_best_size, max_answer_length: as the flags.
    do_lower_case: whether the tokenizer lower-cased (to map answers back onto the text).
    output_prediction_file, output_nbest_file, output_null_log_odds_file: paths.

  Returns:
    (predictions, null_odds): OrderedDicts of question id -> answer text, and (2.0) question
    id -> null odds (empty for 1.1).
  """
  tf.logging.info("Writing predictions to: %s", output_prediction_file)
  tf.logging.info("Writing nbest to: %s", output_nbest_file)

  example_index_to_features = collections.defaultdict(list)
  for feature in all_features:
    example_index_to_features[feature.example_index].append(feature)
  unique_id_to_result = {result.unique_id: result for result in all_results}

  all_predictions = collections.OrderedDict()
  all_nbest_json = collections.OrderedDict()
  scores_diff_json = collections.OrderedDict()
  for example_index, example in enumerate(all_examples):
    nbest, score_null = _example_nbest(
        example, example_index_to_features[example_index], unique_id_to_result, n_best_size,
        max_answer_length, do_lower_case, FLAGS.version_2_with_negative)
    all_nbest_json[example.qas_id] = _nbest_json(nbest)
    all_predictions[example.qas_id], null_odds = _choose_answer(
        example, nbest, score_null, FLAGS.version_2_with_negative,
        FLAGS.null_score_diff_threshold)
    if FLAGS.version_2_with_negative:
      scores_diff_json[example.qas_id] = null_odds

  _write_json(output_prediction_file, all_predictions)
  _write_json(output_nbest_file, all_nbest_json)
  if FLAGS.version_2_with_negative:
    _write_json(output_null_log_odds_file, scores_diff_json)
  return all_predictions, scores_diff_json


def _nbest_json(nbest):
  """The entries of nbest_predictions.json for a list of _NbestPrediction."""
  probs = _compute_softmax([entry.start_logit + entry.end_logit for entry in nbest])
  return [
      collections.OrderedDict([("text", entry.text), ("probability", probability),
                               ("start_logit", entry.start_logit),
                               ("end_logit", entry.end_logit)])
      for entry, probability in zip(nbest, probs)]


def _choose_answer(example, nbest, score_null, version_2, null_score_diff_threshold):
  """The answer of one example from its n-best list and null score (see write_predictions).

  Returns:
    (text, null_odds): the answer, "" for none; for SQuAD 2.0 (`version_2`), the null score
    minus the best non-null answer's score, else None.
  """
  if not version_2:
    return nbest[0].text, None
  best_non_null_entry = next((entry for entry in nbest if entry.text), None)
  if best_non_null_entry is None:
    tf.logging.warning("Question %s has no candidate answer but the null answer.",
                       example.qas_id)
    return "", NO_CANDIDATE_NULL_ODDS
  score_diff = score_null - best_non_null_entry.start_logit - best_non_null_entry.end_logit
  if score_diff > null_score_diff_threshold:
    return "", score_diff
  return best_non_null_entry.text, score_diff


def _write_json(path, value):
  with script_io.atomic_output(path) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as writer:
      writer.write(json.dumps(value, indent=4) + "\n")


def _strip_spaces(text):
  """Drops the spaces of `text`; returns it and a map from its indexes to those in `text`."""
  ns_chars = []
  ns_to_s_map = {}
  for i, char in enumerate(text):
    if char == " ":
      continue
    ns_to_s_map[len(ns_chars)] = i
    ns_chars.append(char)
  return "".join(ns_chars), ns_to_s_map


def _log_unmapped_answer(message, *args):
  """Logs why an answer keeps its whole words, with --verbose_logging."""
  # A serving program (SquadPredictor) may never parse this script's flags.
  if FLAGS.is_parsed() and FLAGS.verbose_logging:
    tf.logging.info(message, *args)


def get_final_text(pred_text, orig_text, do_lower_case):
  """Projects a predicted answer, in tokenizer-normalised text, back onto the original text.

  `orig_text` holds the whole words the predicted tokens came from ("Steve Smith's"), the
  prediction only some of it ("steve smith"), normalised (lower case, no accents, punctuation
  split off). The answer is the part of `orig_text` that the prediction covers ("Steve
  Smith"): both texts are aligned character by character once spaces are removed, which works
  when basic tokenization changed no character count. Otherwise the whole `orig_text` is
  returned.
  """
  tokenizer = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
  tok_text = " ".join(tokenizer.tokenize(orig_text))

  start_position = tok_text.find(pred_text)
  if start_position == -1:
    _log_unmapped_answer("Unable to find text: '%s' in '%s'", pred_text, orig_text)
    return orig_text
  end_position = start_position + len(pred_text) - 1

  orig_ns_text, orig_ns_to_s_map = _strip_spaces(orig_text)
  tok_ns_text, tok_ns_to_s_map = _strip_spaces(tok_text)
  if len(orig_ns_text) != len(tok_ns_text):
    _log_unmapped_answer("Length not equal after stripping spaces: '%s' vs '%s'",
                         orig_ns_text, tok_ns_text)
    return orig_text

  tok_s_to_ns_map = {s_index: ns_index for ns_index, s_index in tok_ns_to_s_map.items()}

  def to_orig_position(tok_position):
    ns_position = tok_s_to_ns_map.get(tok_position)
    return None if ns_position is None else orig_ns_to_s_map.get(ns_position)

  orig_start_position = to_orig_position(start_position)
  if orig_start_position is None:
    _log_unmapped_answer("Couldn't map start position")
    return orig_text
  orig_end_position = to_orig_position(end_position)
  if orig_end_position is None:
    _log_unmapped_answer("Couldn't map end position")
    return orig_text
  return orig_text[orig_start_position:(orig_end_position + 1)]


def _get_best_indexes(logits, n_best_size):
  """Indexes of the n_best_size largest logits, largest first (ties keep index order)."""
  return sorted(range(len(logits)), key=lambda i: logits[i], reverse=True)[:n_best_size]


def _compute_softmax(scores):
  """Softmax probabilities of a list of floats, computed stably in Python floats."""
  if not scores:
    return []
  max_score = max(scores)
  exp_scores = [math.exp(score - max_score) for score in scores]
  total_sum = sum(exp_scores)
  return [score / total_sum for score in exp_scores]


class FeatureWriter(object):
  """Writes InputFeatures to a TFRecord file as tf.train.Example."""

  def __init__(self, filename, is_training):
    self.filename = filename
    self.is_training = is_training
    self.num_features = 0
    self._writer = tf.io.TFRecordWriter(filename)

  def process_feature(self, feature):
    """Writes one InputFeatures (with its positions when training)."""
    self.num_features += 1

    def int_feature(values):
      return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    features = collections.OrderedDict()
    features["unique_ids"] = int_feature([feature.unique_id])
    features["input_ids"] = int_feature(feature.input_ids)
    features["input_mask"] = int_feature(feature.input_mask)
    features["segment_ids"] = int_feature(feature.segment_ids)
    if self.is_training:
      features["start_positions"] = int_feature([feature.start_position])
      features["end_positions"] = int_feature([feature.end_position])
      features["is_impossible"] = int_feature([int(bool(feature.is_impossible))])
    self._writer.write(tf_example.serialize_example(features))

  def close(self):
    self._writer.close()


def validate_flags_or_throw(options):
  """Checks the flags against each other and the run options made from them.

  The sequence length is checked against the model by `model_checks.load_bert_config`.

  Raises:
    script_io.InputError: naming the flag at fault.
  """
  if not FLAGS.do_train and not FLAGS.do_predict and not FLAGS.export_dir:
    raise script_io.InputError(
        "At least one of --do_train or --do_predict must be True, or --export_dir given.")
  if options.batch_by_length:
    raise script_io.InputError(
        "--batch_by_length: run_squad.py keeps every window padded to --max_seq_length (the "
        "original's loss and n-best search read the padding positions too); leave it out")
  if FLAGS.do_train and not FLAGS.train_file:
    raise script_io.InputError("--do_train needs --train_file.")
  if FLAGS.do_predict and not FLAGS.predict_file:
    raise script_io.InputError("--do_predict needs --predict_file.")
  script_io.check_positive({
      "train_batch_size": FLAGS.train_batch_size if FLAGS.do_train else None,
      "predict_batch_size": FLAGS.predict_batch_size if FLAGS.do_predict else None,
      "iterations_per_loop": FLAGS.iterations_per_loop})
  if FLAGS.max_seq_length <= FLAGS.max_query_length + 3:
    raise script_io.InputError(
        "--max_query_length=%d leaves no room for the context: --max_seq_length=%d must be "
        "greater than max_query_length + 3 ([CLS] and two [SEP])" %
        (FLAGS.max_query_length, FLAGS.max_seq_length))
  if FLAGS.doc_stride < 1:
    # The windows would never reach the end of a context longer than one window: the
    # original loops there forever.
    raise script_io.InputError(
        "--doc_stride=%d must be positive: it is how far each context window starts after "
        "the previous one" % FLAGS.doc_stride)
  min_window = FLAGS.max_seq_length - FLAGS.max_query_length - 3
  if FLAGS.doc_stride >= min_window:
    tf.logging.warning(
        "--doc_stride=%d is not smaller than the context window of a long question, "
        "max_seq_length - max_query_length - 3 = %d: such windows do not overlap, and a token "
        "at the edge of one is scored with context on one side only", FLAGS.doc_stride,
        min_window)
  estimator_setup.check_scale_options(options, FLAGS.train_batch_size, {
      "--do_predict": FLAGS.do_predict, "--export_dir": FLAGS.export_dir})
  if FLAGS.export_dir and not FLAGS.do_train:
    serving.checkpoint_to_export(FLAGS.output_dir, FLAGS.init_checkpoint)


def _carries_answers(data):
  """Whether every question of a predict file has its gold answers, so it can be scored."""
  for article in data:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        answers = qa.get("answers")
        if not isinstance(answers, list) or not all(
            isinstance(answer, dict) and isinstance(answer.get("text"), str)
            for answer in answers):
          return False
        if not answers and not (FLAGS.version_2_with_negative and qa.get("is_impossible")):
          return False
  return True


def write_official_scores(predict_file, predictions, null_odds, output_eval_file):
  """Scores the predictions as the official SQuAD evaluate script would, if the file has answers.

  Writes and logs exact match and F1 (evaluate-v1.1.py), or with --version_2_with_negative the
  scores of `evaluate-v2.0.py predict_file predictions.json --na-prob-file null_odds.json`.
  """
  data = read_squad_data(predict_file)
  if not _carries_answers(data):
    tf.logging.info("%s does not give every question its answers: no scores.", predict_file)
    return
  if FLAGS.version_2_with_negative:
    scores = squad_metrics.evaluate_v2(data, predictions, null_odds)
  else:
    scores = squad_metrics.evaluate_v1(data, predictions)
  tf.logging.info("***** Official SQuAD scores of %s *****", predict_file)
  for key, value in scores.items():
    tf.logging.info("  %s = %s", key, value)
  _write_json(output_eval_file, scores)


def _train(estimator, tokenizer, num_train_steps, train_examples, peer_timeout_seconds):
  train_file = os.path.join(FLAGS.output_dir, "train.tf_record")
  with script_io.atomic_output(train_file) as temporary:
    train_writer = FeatureWriter(filename=temporary, is_training=True)
    convert_examples_to_features(
        examples=train_examples,
        tokenizer=tokenizer,
        max_seq_length=FLAGS.max_seq_length,
        doc_stride=FLAGS.doc_stride,
        max_query_length=FLAGS.max_query_length,
        is_training=True,
        output_fn=train_writer.process_feature)
    train_writer.close()

  tf.logging.info("***** Running training *****")
  tf.logging.info("  Num orig examples = %d", len(train_examples))
  tf.logging.info("  Num split examples = %d", train_writer.num_features)
  tf.logging.info("  Batch size = %d", FLAGS.train_batch_size)
  tf.logging.info("  Num steps = %d", num_train_steps)
  train_input_fn = input_fn_builder(
      input_file=train_file, seq_length=FLAGS.max_seq_length, is_training=True,
      drop_remainder=True)
  training_guard.train(estimator, train_input_fn, num_train_steps, peer_timeout_seconds)


def _predict(estimator, tokenizer, eval_examples):
  eval_file = os.path.join(FLAGS.output_dir, "eval.tf_record")
  eval_features = []
  with script_io.atomic_output(eval_file) as temporary:
    eval_writer = FeatureWriter(filename=temporary, is_training=False)

    def append_feature(feature):
      eval_features.append(feature)
      eval_writer.process_feature(feature)

    convert_examples_to_features(
        examples=eval_examples,
        tokenizer=tokenizer,
        max_seq_length=FLAGS.max_seq_length,
        doc_stride=FLAGS.doc_stride,
        max_query_length=FLAGS.max_query_length,
        is_training=False,
        output_fn=append_feature)
    eval_writer.close()

  tf.logging.info("***** Running predictions *****")
  tf.logging.info("  Num orig examples = %d", len(eval_examples))
  tf.logging.info("  Num split examples = %d", len(eval_features))
  tf.logging.info("  Batch size = %d", FLAGS.predict_batch_size)

  predict_input_fn = input_fn_builder(
      input_file=eval_file, seq_length=FLAGS.max_seq_length, is_training=False,
      drop_remainder=False)
  all_results = []
  for result in estimator.predict(predict_input_fn, yield_single_examples=True):
    if len(all_results) % 1000 == 0:
      tf.logging.info("Processing example: %d", len(all_results))
    all_results.append(RawResult(
        unique_id=int(result["unique_ids"]),
        start_logits=[float(x) for x in result["start_logits"].flat],
        end_logits=[float(x) for x in result["end_logits"].flat]))

  predictions, null_odds = write_predictions(
      eval_examples, eval_features, all_results, FLAGS.n_best_size, FLAGS.max_answer_length,
      FLAGS.do_lower_case,
      os.path.join(FLAGS.output_dir, "predictions.json"),
      os.path.join(FLAGS.output_dir, "nbest_predictions.json"),
      os.path.join(FLAGS.output_dir, "null_odds.json"))
  write_official_scores(FLAGS.predict_file, predictions, null_odds,
                        os.path.join(FLAGS.output_dir, "eval_results.json"))


def _export(bert_config):
  """Writes the model of the latest checkpoint (or --init_checkpoint) into --export_dir.

  The SavedModel's serving_default signature returns "start_logits" and "end_logits"
  [batch_size, max_seq_length]; see serving.py. `SquadPredictor` serves it with the window and
  answer flags of this run.
  """
  model_fn = model_fn_builder(
      bert_config=bert_config,
      init_checkpoint=None,
      learning_rate=FLAGS.learning_rate,
      num_train_steps=None,
      num_warmup_steps=None,
      use_tpu=False,
      use_one_hot_embeddings=False)
  serving.export_saved_model(
      model_fn, serving.checkpoint_to_export(FLAGS.output_dir, FLAGS.init_checkpoint),
      FLAGS.export_dir, FLAGS.max_seq_length, FLAGS.vocab_file,
      settings={
          "exported_by": "run_squad.py",
          "do_lower_case": FLAGS.do_lower_case,
          "doc_stride": FLAGS.doc_stride,
          "max_query_length": FLAGS.max_query_length,
          "n_best_size": FLAGS.n_best_size,
          "max_answer_length": FLAGS.max_answer_length,
          "version_2_with_negative": FLAGS.version_2_with_negative,
          "null_score_diff_threshold": FLAGS.null_score_diff_threshold,
      })


def main(_):
  tf.logging.set_verbosity(tf.logging.INFO)

  options = estimator_setup.RunOptions.from_flag_values(FLAGS.flag_values_dict())
  bert_config = model_checks.load_bert_config(FLAGS.bert_config_file, FLAGS.max_seq_length,
                                                 FLAGS.do_train)
  tokenizer = script_io.load_tokenizer(FLAGS.vocab_file, FLAGS.do_lower_case,
                                       FLAGS.init_checkpoint)
  validate_flags_or_throw(options)
  model_checks.check_vocab_fits_model(tokenizer.vocab, FLAGS.vocab_file, bert_config,
                                         FLAGS.bert_config_file)
  model_checks.check_init_checkpoint(FLAGS.init_checkpoint, bert_config)
  script_io.check_output_dir(FLAGS.output_dir, "output_dir")
  model_checks.check_output_dir_checkpoint(FLAGS.output_dir, bert_config, {
      "cls/squad/output_weights": [2, bert_config.hidden_size], "cls/squad/output_bias": [2]})
  if FLAGS.export_dir:
    script_io.check_output_dir(FLAGS.export_dir, "export_dir")

  train_examples = None
  num_train_steps = None
  num_warmup_steps = None
  if FLAGS.do_train:
    script_io.require_file(FLAGS.train_file, "train_file")
    train_examples = read_squad_examples(input_file=FLAGS.train_file, is_training=True)
    num_train_steps = int(
        len(train_examples) / FLAGS.train_batch_size * FLAGS.num_train_epochs)
    if num_train_steps < 1:
      raise script_io.InputError(
          "--train_file %s gives %d usable questions: too few for one step of "
          "--train_batch_size=%d in --num_train_epochs=%s" %
          (FLAGS.train_file, len(train_examples), FLAGS.train_batch_size,
           FLAGS.num_train_epochs))
    num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
    # Shuffled here, once, so that the input_fn needs only a small shuffle buffer.
    random.Random(12345).shuffle(train_examples)

  eval_examples = None
  if FLAGS.do_predict:
    # Read before training, so that a malformed file stops the run before the training does.
    script_io.require_file(FLAGS.predict_file, "predict_file")
    eval_examples = read_squad_examples(input_file=FLAGS.predict_file, is_training=False)

  tf.io.gfile.makedirs(FLAGS.output_dir)

  model_fn = model_fn_builder(
      bert_config=bert_config,
      init_checkpoint=FLAGS.init_checkpoint,
      learning_rate=FLAGS.learning_rate,
      num_train_steps=num_train_steps,
      num_warmup_steps=num_warmup_steps,
      use_tpu=options.use_tpu,
      use_one_hot_embeddings=options.use_tpu,
      options=options)
  estimator = estimator_setup.make_estimator(
      model_fn, FLAGS.output_dir, options,
      train_batch_size=FLAGS.train_batch_size,
      predict_batch_size=FLAGS.predict_batch_size,
      save_checkpoints_steps=FLAGS.save_checkpoints_steps,
      iterations_per_loop=FLAGS.iterations_per_loop)

  if FLAGS.do_train:
    _train(estimator, tokenizer, num_train_steps, train_examples, options.peer_timeout_seconds)
  if FLAGS.do_predict:
    _predict(estimator, tokenizer, eval_examples)
  if FLAGS.export_dir:
    _export(bert_config)


# ------------------------------------------------------------------------------------------------
# Beyond the script's own path: the predictor that serves an exported model.


SquadPrediction = collections.namedtuple("SquadPrediction", ["text", "nbest", "null_odds"])


class SquadPredictor(object):
  """Answers questions about passages with a SavedModel from --export_dir, loaded once.

  For servers. A question and its passage go through this script's own processing, with the
  flags of the run that exported the model (--doc_stride, --max_query_length, --n_best_size,
  --max_answer_length, --version_2_with_negative, --null_score_diff_threshold,
  --do_lower_case): the passage is split into words and WordPiece windows, the model scores all
  windows in one batch, and the answer is chosen and mapped back onto the passage as
  write_predictions does. So an answer equals what --do_predict writes in predictions.json for
  the same question and context:

    predictor = run_squad.SquadPredictor("/tmp/squad_base/export")
    predictor.predict("Who wrote it?", "It was written by Ann Smith.").text
  """

  def __init__(self, saved_model_dir):
    """Loads a SavedModel folder of --export_dir, or the highest version in --export_dir.

    Raises:
      ValueError: it is not a SavedModel that run_squad.py exported.
    """
    self._model = serving.SavedModelPredictor(saved_model_dir)
    self._settings = self._model.required_settings("run_squad.py")
    self._tokenizer = tokenization.FullTokenizer(
        vocab_file=self._model.vocab_file, do_lower_case=self._settings["do_lower_case"])

  def predict(self, question, context):
    """Answers one question about one context.

    Returns:
      SquadPrediction(text, nbest, null_odds): the answer ("" for none, SQuAD 2.0); the n best
      answers as in nbest_predictions.json; the null odds as in null_odds.json (SQuAD 2.0),
      else None.
    """
    settings = self._settings
    doc_tokens, _ = split_context(context)
    example = SquadExample(qas_id="request", question_text=question, doc_tokens=doc_tokens)
    features = []
    convert_examples_to_features(
        examples=[example],
        tokenizer=self._tokenizer,
        max_seq_length=self._model.max_seq_length,
        doc_stride=settings["doc_stride"],
        max_query_length=settings["max_query_length"],
        is_training=False,
        output_fn=features.append)
    unique_id_to_result = {}
    if features:
      outputs = self._model.predict([feature.input_ids for feature in features],
                                    [feature.input_mask for feature in features],
                                    [feature.segment_ids for feature in features])
      for feature, start_logits, end_logits in zip(
          features, outputs["start_logits"], outputs["end_logits"]):
        unique_id_to_result[feature.unique_id] = RawResult(
            unique_id=feature.unique_id,
            start_logits=[float(x) for x in start_logits],
            end_logits=[float(x) for x in end_logits])
    version_2 = settings["version_2_with_negative"]
    nbest, score_null = _example_nbest(
        example, features, unique_id_to_result, settings["n_best_size"],
        settings["max_answer_length"], settings["do_lower_case"], version_2)
    text, null_odds = _choose_answer(
        example, nbest, score_null, version_2, settings["null_score_diff_threshold"])
    return SquadPrediction(text=text, nbest=_nbest_json(nbest), null_odds=null_odds)


if __name__ == "__main__":
  flags.mark_flag_as_required("vocab_file")
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("output_dir")
  script_io.run_main(main)
