"""Trains a TPUEstimator model_fn under a tf.distribute strategy: `DistributedEstimator`.

`estimator_setup.make_estimator` builds one for --distribution_strategy=mirrored or
multi_worker_mirrored, with the strategy in its RunConfig.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import script_io
import tensorflow.compat.v1 as tf


class DistributedEstimator(object):
  """Trains a TPUEstimator model_fn under a tf.distribute strategy; evaluates on one device.

  A plain `tf.estimator.Estimator` takes the model_fn (its TPUEstimatorSpec converted) and the
  RunConfig with the strategy. `train`, `evaluate` and `predict` are TPUEstimator's: each
  input_fn(params) gets params["batch_size"] as TPUEstimator would give it, which a plain
  Estimator does not. For training that is one replica's share of a micro-batch (each replica
  reads batches of its own; each worker of a multi-worker strategy reads the whole input and
  keeps every k-th batch, k workers in all). Evaluation and prediction run on one device with
  the whole eval or predict batch, so every example counts once, as on one device.

  Attributes:
    estimator: the `tf.estimator.Estimator`.
  """

  def __init__(self, model_fn, config, train_batch_size, eval_batch_size, predict_batch_size):
    # params={} only silences the Estimator's warning that the model_fn takes params.
    self.estimator = tf.estimator.Estimator(
        model_fn=_estimator_model_fn(model_fn), config=config, params={})
    self._train_batch_size = train_batch_size
    self._eval_batch_size = eval_batch_size
    self._predict_batch_size = predict_batch_size

  @property
  def config(self):
    return self.estimator.config

  @property
  def model_dir(self):
    return self.estimator.model_dir

  def train(self, input_fn, max_steps=None, hooks=None):
    """Trains until the global step (which counts updates) reaches max_steps.

    `Estimator.train` refuses a multi-worker strategy; there `train_and_evaluate` trains this
    worker in step with the others of the TF_CONFIG cluster and returns when all reach
    max_steps. Its EvalSpec is never used: the cluster has no "evaluator" task. Only the chief
    writes checkpoints. `hooks` are session run hooks, as `Estimator.train` takes them.
    """
    input_fn = _batched_input_fn(input_fn, self._train_batch_size)
    if self.config.train_distribute.extended.experimental_between_graph:
      tf.estimator.train_and_evaluate(
          self.estimator,
          tf.estimator.TrainSpec(input_fn=input_fn, max_steps=max_steps, hooks=hooks),
          tf.estimator.EvalSpec(input_fn=input_fn))
    else:
      self.estimator.train(input_fn=input_fn, max_steps=max_steps, hooks=hooks)
    return self

  def evaluate(self, input_fn, **kwargs):
    """`Estimator.evaluate` on one device, batches of eval_batch_size examples."""
    self._check_single_worker("evaluate")
    return self.estimator.evaluate(_batched_input_fn(input_fn, self._eval_batch_size), **kwargs)

  def predict(self, input_fn, **kwargs):
    """`Estimator.predict` on one device, batches of predict_batch_size examples."""
    self._check_single_worker("predict")
    return self.estimator.predict(
        _batched_input_fn(input_fn, self._predict_batch_size), **kwargs)

  def _check_single_worker(self, action):
    # A worker that is not the chief could read the checkpoint before the chief has written the
    # last one, or not see it at all when the output directory is not shared.
    if self.config.train_distribute.extended.experimental_between_graph:
      raise script_io.InputError(
          "--distribution_strategy=multi_worker_mirrored only trains: %s in a separate run "
          "with --distribution_strategy=none on the same --output_dir" % action)


def _estimator_model_fn(model_fn):
  """Wraps a TPUEstimator model_fn into one that returns a plain `EstimatorSpec`."""

  def estimator_model_fn(features, labels, mode, params):
    spec = model_fn(features, labels, mode, params)
    if isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec):
      spec = spec.as_estimator_spec()
    return spec

  return estimator_model_fn


def _batched_input_fn(input_fn, batch_size):
  """Wraps input_fn(params) to get params["batch_size"] and one worker's share of the batches."""

  def batched_input_fn(params, input_context=None):
    dataset = input_fn(dict(params, batch_size=batch_size))
    if input_context is not None and input_context.num_input_pipelines > 1:
      dataset = dataset.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)
    return dataset

  return batched_input_fn
