"""Serving a fine-tuned model: SavedModel export, and a predictor that loads one once.

`run_classifier.py`, `run_squad.py` and `run_ner.py` take --export_dir: after their other work
(or instead of it) they write the model of the latest checkpoint in --output_dir, or else of
--init_checkpoint, as a SavedModel for CPUs and GPUs. Its `serving_default` signature takes
three int32 tensors [batch_size, max_seq_length], any batch size:

  input_ids, input_mask, segment_ids   as the scripts' features

and returns what the script's model_fn predicts: `probabilities` [batch_size, num_labels]
(classification), `score` [batch_size] (regression, STS-B), `start_logits` and `end_logits`
[batch_size, max_seq_length] (SQuAD), or `probabilities` [batch_size, max_seq_length,
num_labels] (word tags).

Each export is a new numbered folder in --export_dir: 1, then 2, ... (one more than the highest
there), the layout TensorFlow Serving reads from a model base path, where it serves the highest
version. The folder is written under a temporary name (`N.incomplete-...`, which TensorFlow
Serving ignores) and renamed when complete. Beside the SavedModel, `assets.extra/` holds the
vocabulary (`vocab.txt`) and the settings the script's feature conversion needs
(`bert_serving.json`), so that a predictor of the task (`run_classifier.ClassifierPredictor`,
`run_squad.SquadPredictor`, `run_ner.TaggerPredictor`) can turn raw text into the three inputs
the way the script does.

`SavedModelPredictor` is the generic part: it loads a SavedModel once, in a graph and session of
its own, and runs the signature on numpy batches.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import json
import os

from absl import flags
import numpy as np
import runner
import script_io
import tensorflow.compat.v1 as tf

# The inputs of the serving signature, each int32 [batch_size, max_seq_length].
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids")

SIGNATURE_NAME = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY

# Files in a SavedModel's assets.extra/ folder, which the model graph does not use.
SETTINGS_FILE = "bert_serving.json"
VOCAB_FILE = "vocab.txt"


def define_export_flag():
  """Defines --export_dir, once per process."""
  if "export_dir" in flags.FLAGS:
    return
  flags.DEFINE_string(
      "export_dir", None,
      "If set, write the model as a SavedModel for serving (TensorFlow Serving, or this "
      "script's predictor) into a new numbered folder in this directory, after any "
      "training, evaluation and prediction. It is the latest checkpoint in --output_dir, or "
      "else --init_checkpoint.")


def checkpoint_to_export(output_dir, init_checkpoint):
  """Returns the checkpoint --export_dir exports: output_dir's latest, else init_checkpoint.

  Raises:
    script_io.InputError: neither exists.
  """
  latest = tf.train.latest_checkpoint(output_dir) if output_dir else None
  if latest:
    return latest
  if not init_checkpoint:
    raise script_io.InputError(
        "--export_dir needs a checkpoint: there is none in --output_dir=%s and no "
        "--init_checkpoint" % output_dir)
  if not tf.io.gfile.exists(init_checkpoint + ".index"):
    raise script_io.InputError(
        "--export_dir: --init_checkpoint=%s is not a checkpoint (no %s.index), and there is "
        "none in --output_dir=%s" % (init_checkpoint, init_checkpoint, output_dir))
  return init_checkpoint


def export_saved_model(model_fn, checkpoint_path, export_dir, max_seq_length, vocab_file,
                       settings):
  """Writes the PREDICT graph of `model_fn` with the weights of a checkpoint as a SavedModel.

  The graph is built here rather than by `Estimator.export_saved_model`, which restores a
  global_step that released and fine-tuned checkpoints may not have, and is for CPUs and GPUs:
  pass a model_fn built with use_tpu=False.

  Args:
    model_fn: a (TPU)Estimator model_fn whose PREDICT mode needs only the FEATURE_NAMES
      features and returns a dict of predictions, the signature's outputs.
    checkpoint_path: the checkpoint that holds every variable of that graph.
    export_dir: the model base path; the SavedModel goes into a new numbered folder in it.
    max_seq_length: int, the sequence length of the inputs.
    vocab_file: the WordPiece vocabulary, copied to assets.extra/vocab.txt.
    settings: JSON-serialisable dict of what a predictor needs to convert raw text, written to
      assets.extra/bert_serving.json.

  Returns:
    The path of the new SavedModel folder, export_dir/N.

  Raises:
    script_io.InputError: the checkpoint lacks a variable of the graph, or has another shape.
  """
  with tf.Graph().as_default():
    features = {
        name: tf.placeholder(tf.int32, [None, max_seq_length], name=name)
        for name in FEATURE_NAMES
    }
    spec = model_fn(features, None, runner.ModeKeys.PREDICT, {})
    variables = tf.global_variables()
    _check_checkpoint_holds(checkpoint_path, variables)
    saver = tf.train.Saver(variables)
    signature = tf.saved_model.predict_signature_def(inputs=features, outputs=spec.predictions)
    with tf.Session() as session:
      saver.restore(session, checkpoint_path)
      version_dir = _write_new_version(export_dir, session, saver, signature, vocab_file,
                                       settings)
  tf.logging.info("Exported checkpoint %s as the SavedModel %s", checkpoint_path, version_dir)
  return version_dir


def _check_checkpoint_holds(checkpoint_path, variables):
  """Raises InputError unless the checkpoint has every variable, with its shape."""
  checkpoint_shapes = dict(tf.train.list_variables(checkpoint_path))
  for variable in variables:
    name = variable.op.name
    if name not in checkpoint_shapes:
      raise script_io.InputError(
          "--export_dir: checkpoint %s has no variable %s of the model: export a fine-tuned "
          "checkpoint (after --do_train, or a fine-tuned --init_checkpoint)" %
          (checkpoint_path, name))
    if list(checkpoint_shapes[name]) != variable.shape.as_list():
      raise script_io.InputError(
          "--export_dir: variable %s has shape %s in checkpoint %s but %s in the model "
          "these flags describe" %
          (name, checkpoint_shapes[name], checkpoint_path, variable.shape.as_list()))


def _write_new_version(export_dir, session, saver, signature, vocab_file, settings):
  """Writes the SavedModel of `session` as export_dir/N, N one more than the highest there."""
  tf.io.gfile.makedirs(export_dir)
  version_dir = os.path.join(export_dir, str(max(_versions(export_dir), default=0) + 1))
  with script_io.atomic_output(version_dir) as temporary_dir:
    builder = tf.saved_model.Builder(temporary_dir)
    builder.add_meta_graph_and_variables(
        session, [tf.saved_model.SERVING], signature_def_map={SIGNATURE_NAME: signature},
        saver=saver, strip_default_attrs=True)
    builder.save()
    assets_extra = os.path.join(temporary_dir, "assets.extra")
    tf.io.gfile.makedirs(assets_extra)
    tf.io.gfile.copy(vocab_file, os.path.join(assets_extra, VOCAB_FILE))
    with tf.io.gfile.GFile(os.path.join(assets_extra, SETTINGS_FILE), "w") as writer:
      writer.write(json.dumps(settings, indent=2, sort_keys=True) + "\n")
  return version_dir


def _versions(export_dir):
  """The numbers of the numbered folders in export_dir."""
  names = [name.rstrip("/") for name in tf.io.gfile.listdir(export_dir)]
  return [int(name) for name in names if name.isdigit()]


def find_saved_model(path):
  """Returns the SavedModel folder `path`, or its highest numbered version folder.

  Raises:
    ValueError: neither is a SavedModel.
  """
  if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
    return path
  if tf.io.gfile.isdir(path):
    versions = [version for version in _versions(path)
                if tf.io.gfile.exists(os.path.join(path, str(version), "saved_model.pb"))]
    if versions:
      return os.path.join(path, str(max(versions)))
  raise ValueError(
      "%s is not a SavedModel: no saved_model.pb in it nor in a numbered version folder in it "
      "(write one with --export_dir)" % path)


class SavedModelPredictor(object):
  """Runs the serving signature of a SavedModel from --export_dir, loaded once.

  The SavedModel is loaded into a graph and session of its own, in graph mode whatever the
  process's mode, and the graph is then finalized: a request only feeds arrays and fetches
  the outputs. `predict` may be called from several threads at once.

  Attributes:
    saved_model_dir: the SavedModel folder loaded (the highest version of a base path).
    max_seq_length: int, the sequence length of the inputs.
    output_names: sorted list of the signature's outputs.
    settings: dict read from assets.extra/bert_serving.json, or None without one.
    vocab_file: path of assets.extra/vocab.txt (it may be missing without settings).
  """

  def __init__(self, saved_model_dir):
    """Loads the SavedModel at `saved_model_dir` (or at its highest numbered version folder).

    Raises:
      ValueError: not a SavedModel, or its serving_default signature does not take the three
        int32 [batch_size, max_seq_length] inputs.
    """
    self.saved_model_dir = find_saved_model(saved_model_dir)
    self._graph = tf.Graph()
    self._session = tf.Session(graph=self._graph)
    meta_graph = tf.saved_model.loader.load(
        self._session, [tf.saved_model.SERVING], self.saved_model_dir)
    self._graph.finalize()
    signature = meta_graph.signature_def.get(SIGNATURE_NAME)
    if signature is None or sorted(signature.inputs) != sorted(FEATURE_NAMES):
      raise ValueError(
          "%s: the %s signature must take exactly the inputs %s" %
          (self.saved_model_dir, SIGNATURE_NAME, ", ".join(FEATURE_NAMES)))
    self._inputs = {name: signature.inputs[name].name for name in FEATURE_NAMES}
    self._outputs = {name: info.name for name, info in signature.outputs.items()}
    self.output_names = sorted(self._outputs)
    shapes = [self._graph.get_tensor_by_name(name).shape for name in self._inputs.values()]
    dtypes = [self._graph.get_tensor_by_name(name).dtype for name in self._inputs.values()]
    if (any(dtype != tf.int32 for dtype in dtypes) or any(shape.rank != 2 for shape in shapes) or
        len(set(shape[1] for shape in shapes)) != 1 or shapes[0][1] is None):
      raise ValueError(
          "%s: the inputs of the %s signature must be int32 [batch_size, max_seq_length]" %
          (self.saved_model_dir, SIGNATURE_NAME))
    self.max_seq_length = shapes[0][1]

    assets_extra = os.path.join(self.saved_model_dir, "assets.extra")
    self.vocab_file = os.path.join(assets_extra, VOCAB_FILE)
    self.settings = None
    settings_file = os.path.join(assets_extra, SETTINGS_FILE)
    if tf.io.gfile.exists(settings_file):
      with tf.io.gfile.GFile(settings_file, "r") as reader:
        self.settings = json.load(reader)

  def required_settings(self, script):
    """Returns `settings`, checking that `script` (e.g. "run_squad.py") wrote the SavedModel.

    Raises:
      ValueError: another script wrote it, or no script of ours.
    """
    exported_by = (self.settings or {}).get("exported_by")
    if exported_by != script:
      raise ValueError(
          "%s was not exported by %s --export_dir (%s): its predictor cannot convert the "
          "text" % (self.saved_model_dir, script,
                    "by %s" % exported_by if exported_by else "no assets.extra/" + SETTINGS_FILE))
    return self.settings

  def predict(self, input_ids, input_mask, segment_ids):
    """Runs the signature on one batch.

    Args:
      input_ids, input_mask, segment_ids: int arrays (or nested lists) [batch_size,
        max_seq_length].

    Returns:
      dict of output name -> numpy array, e.g. probabilities [batch_size, num_labels].

    Raises:
      ValueError: an input of another shape.
    """
    feed_dict = {}
    for name, values in zip(FEATURE_NAMES, (input_ids, input_mask, segment_ids)):
      array = np.asarray(values, dtype=np.int32)
      if array.shape != np.shape(input_ids) or array.ndim != 2 or (
          array.shape[1] != self.max_seq_length):
        raise ValueError("%s has shape %s; the model takes three [batch_size, %d] arrays" %
                         (name, list(array.shape), self.max_seq_length))
      feed_dict[self._inputs[name]] = array
    return self._session.run(self._outputs, feed_dict=feed_dict)

  def close(self):
    """Frees the session."""
    self._session.close()
