"""Tests of training under tf.distribute: replicas and workers train as one device would.

On this CPU-only machine, MirroredStrategy gets two logical CPU devices and
MultiWorkerMirroredStrategy two worker processes on 127.0.0.1; both must reach the weights (and
Adam slots) of one device training on the same global batches. The Estimator runs go through
estimator_setup.make_estimator, as the scripts do, with a tiny BERT and create_optimizer.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import estimator_setup
import modeling
import runner
import script_io
import support

# Every test here trains or starts TensorFlow processes.
pytestmark = pytest.mark.slow

TIMEOUT_SECONDS = 240

OPTIMIZER_SCRIPT = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf2
    cpu = tf2.config.list_physical_devices("CPU")[0]
    tf2.config.set_logical_device_configuration(cpu, [tf2.config.LogicalDeviceConfiguration()] * 2)
    import tensorflow.compat.v1 as tf
    import optimization

    BATCH_SIZE, NUM_UPDATES = 8, 3
    data = np.random.RandomState(0)
    IDS = data.randint(0, 6, size=(NUM_UPDATES, BATCH_SIZE, 2)).astype(np.int32)
    FEATURES = 0.1 * data.randn(NUM_UPDATES, BATCH_SIZE, 3).astype(np.float32)

    def mean_loss(ids, features, loss_scale):
      init = np.random.RandomState(1)
      embeddings = tf.get_variable("bert/embeddings/word_embeddings",
                                   initializer=init.randn(6, 3).astype(np.float32))
      gamma = tf.get_variable("LayerNorm/gamma", initializer=tf.ones([3]))
      kernel = tf.get_variable("dense/kernel", initializer=init.randn(3, 2).astype(np.float32))
      bias = tf.get_variable("dense/bias", initializer=tf.zeros([2]))
      hidden = tf.reduce_sum(tf.gather(embeddings, ids), 1) * gamma + features
      logits = tf.matmul(hidden, kernel) + bias
      return loss_scale * tf.reduce_mean(tf.reduce_sum(tf.square(logits), 1))

    def train(num_replicas, num_micro_batches, loss_scale):
      # Returns the global variables after each update, and the gradient norm before each.
      with tf.Graph().as_default():
        ids = tf.placeholder(tf.int32, [None, 2])
        features = tf.placeholder(tf.float32, [None, 3])
        losses = []

        def replica_train_op():
          # Each replica takes its share of the fed micro-batch.
          replica = tf.distribute.get_replica_context().replica_id_in_sync_group
          share = tf.shape(ids)[0] // num_replicas
          rows = slice(replica * share, (replica + 1) * share)
          losses.append(mean_loss(ids[rows], features[rows], loss_scale))
          return optimization.create_optimizer(
              losses[-1], 0.1, NUM_UPDATES, 1, False,
              gradient_accumulation_steps=num_micro_batches)

        if num_replicas == 1:
          train_op = replica_train_op()
          norm = tf.linalg.global_norm(tf.gradients(losses[0], tf.trainable_variables()))
        else:
          strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
          with strategy.scope():
            tf.train.get_or_create_global_step()
            train_op = strategy.group(strategy.extended.call_for_each_replica(replica_train_op))
          norm = tf.constant(0.0)
        config = tf.ConfigProto(device_count={"CPU": 2}, inter_op_parallelism_threads=16)
        with tf.Session(config=config) as session:
          session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
          states, norms = [], []
          for update in range(NUM_UPDATES):
            norms.append(session.run(norm, {ids: IDS[update], features: FEATURES[update]}))
            size = BATCH_SIZE // num_micro_batches
            for micro_batch in range(num_micro_batches):
              rows = slice(micro_batch * size, (micro_batch + 1) * size)
              session.run(train_op, {ids: IDS[update, rows], features: FEATURES[update, rows]})
            states.append({v.op.name: session.run(v) for v in tf.global_variables()})
          return states, norms

    # Clipping and Adam would hide gradients summed with the wrong scale; Adam's first moment
    # shows it when the gradient is not clipped.
    for regime, loss_scale in (("clipped", 0.5), ("unclipped", 0.01)):
      one_device, norms = train(1, 1, loss_scale)
      if regime == "clipped":
        assert min(norms) > 1.0, norms
      else:
        assert max(norms) < 0.5, norms
      for num_micro_batches in (1, 2):
        replicated, _ = train(2, num_micro_batches, loss_scale)
        for update, (actual, expected) in enumerate(zip(replicated, one_device)):
          assert sorted(actual) == sorted(expected), (sorted(actual), sorted(expected))
          assert actual["global_step"] == update + 1
          for name in expected:
            np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6,
                                       err_msg="%s after update %d" % (name, update))
        print("%s: two replicas with %d micro-batches match one device" %
              (regime, num_micro_batches))
""")


def _python_env(**extra):
  return dict(os.environ, PYTHONPATH=support.REPO_DIR, TF_CPP_MIN_LOG_LEVEL="2",
              CUDA_VISIBLE_DEVICES="", **extra)


def test_optimizer_two_mirrored_replicas_match_one_device(tmp_path):
  """One all-reduce of the replicas' gradients, then clipping: as one device, micro-batches too."""
  script = tmp_path / "optimizer.py"
  script.write_text(OPTIMIZER_SCRIPT)
  result = subprocess.run([sys.executable, str(script)], env=_python_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_SECONDS)
  assert result.returncode == 0, result.stderr[-3000:]
  for regime in ("clipped", "unclipped"):
    for num_micro_batches in (1, 2):
      assert ("%s: two replicas with %d micro-batches match one device" %
              (regime, num_micro_batches)) in result.stdout


# Trains a tiny BERT classifier through estimator_setup as a script would, for each run of a spec.
DRIVER_SCRIPT = textwrap.dedent("""
    import json
    import sys

    import numpy as np
    import tensorflow as tf2

    SPEC = json.load(open(sys.argv[1]))
    if SPEC.get("logical_cpus"):
      cpu = tf2.config.list_physical_devices("CPU")[0]
      tf2.config.set_logical_device_configuration(
          cpu, [tf2.config.LogicalDeviceConfiguration()] * SPEC["logical_cpus"])

    import tensorflow.compat.v1 as tf
    import estimator_setup
    import model_checks
    import modeling
    import optimization
    import runner
    import script_io
    import training_guard

    NUM_UPDATES, SEQ_LENGTH = 3, 8
    data = np.random.RandomState(0)
    INPUT_IDS = data.randint(0, 20, size=(64, SEQ_LENGTH)).astype(np.int32)
    LABELS = data.randint(0, 2, size=(64,)).astype(np.int32)

    def input_fn(params):
      dataset = tf.data.Dataset.from_tensor_slices({"input_ids": INPUT_IDS, "labels": LABELS})
      return dataset.repeat().batch(params["batch_size"], drop_remainder=True)

    def model_fn_builder(loss_scale, options):
      # loss_scale 10 makes the gradient's norm about 13 (clipped), 0.1 about 0.13 (not).
      return estimator_setup.built_for(
          lambda features, labels, mode, params: model_fn(features, mode, loss_scale, options),
          options)

    def model_fn(features, mode, loss_scale, options):
      bert_config = modeling.BertConfig.from_json_file(SPEC["bert_config_file"])
      model = modeling.BertModel(bert_config, is_training=True, input_ids=features["input_ids"])
      logits = modeling.dense(model.get_pooled_output(), 2, tf.glorot_uniform_initializer(),
                              name="cls")
      example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=features["labels"], logits=logits)
      loss = loss_scale * tf.reduce_mean(example_loss)
      model_checks.init_from_checkpoint(SPEC["init_checkpoint"], False)
      if mode == runner.ModeKeys.TRAIN:
        train_op = optimization.create_optimizer(
            loss, 0.01, NUM_UPDATES, 1, False, options.gradient_accumulation_steps)
        return runner.ModelSpec(mode=mode, loss=loss, train_op=train_op)
      return runner.ModelSpec(
          mode=mode, loss=loss,
          eval_metrics=(lambda x: {"example_loss": tf.metrics.mean(x)}, [example_loss]))

    results = {}
    for run in SPEC["runs"]:
      options = estimator_setup.RunOptions(**run["options"])
      result = results[run["name"]] = {}
      try:
        estimator = estimator_setup.make_estimator(
            model_fn_builder(run["loss_scale"], options), run["output_dir"], options,
            train_batch_size=run.get("train_batch_size", 8),
            eval_batch_size=8, save_checkpoints_steps=100)
        training_guard.train(estimator, input_fn, NUM_UPDATES)
        evaluation = estimator.evaluate(input_fn=input_fn, steps=2)
        result["eval_loss"] = float(evaluation["example_loss"])
        result["global_step"] = int(evaluation["global_step"])
      except (script_io.InputError, ValueError) as error:
        result["error"] = str(error)
    json.dump(results, open(SPEC["results_file"], "w"))
""")

CLIPPED, UNCLIPPED = 10.0, 0.1  # loss scales, see the driver's model_fn_builder

BERT_CONFIG = {
    "vocab_size": 20, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 24, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 8, "type_vocab_size": 2,
    "initializer_range": 0.02,
}



def _write_spec(directory, name, runs, **settings):
  spec = dict(settings, runs=runs, results_file=str(directory / (name + "_results.json")))
  path = directory / (name + ".json")
  path.write_text(json.dumps(spec))
  return str(path), spec["results_file"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """Trains the tiny BERT on one device, on two mirrored CPUs and on two workers.

  Returns:
    (directory of the runs, dict of run name -> {"eval_loss", "global_step"} or {"error"}).
  """
  directory = tmp_path_factory.mktemp("distribution")
  bert_config_file = directory / "bert_config.json"
  bert_config_file.write_text(json.dumps(BERT_CONFIG))
  init_checkpoint = str(directory / "init" / "bert_model.ckpt")
  with tf.Graph().as_default():
    model = modeling.BertModel(modeling.BertConfig.from_dict(BERT_CONFIG), is_training=False,
                               input_ids=tf.zeros([1, 8], tf.int32))
    modeling.dense(model.get_pooled_output(), 2, tf.glorot_uniform_initializer(), name="cls")
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      tf.train.Saver().save(session, init_checkpoint)
  settings = {"bert_config_file": str(bert_config_file), "init_checkpoint": init_checkpoint}
  script = directory / "driver.py"
  script.write_text(DRIVER_SCRIPT)

  def run(name, strategy, steps, loss_scale, output_dir=None, **extra):
    return dict(extra, name=name, output_dir=output_dir or str(directory / name),
                loss_scale=loss_scale,
                options={"distribution_strategy": strategy,
                         "gradient_accumulation_steps": steps})

  # One cluster of two worker processes per run, all started at once: TensorFlow's collective
  # runtime remembers a process's collectives, so a process trains with one strategy only.
  commands = []
  for worker_run in (run("multi_worker_unclipped", "multi_worker_mirrored", 1, UNCLIPPED),
                     run("multi_worker_2_micro_batches", "multi_worker_mirrored", 2, CLIPPED)):
    cluster = {"worker": ["127.0.0.1:%d" % support.free_port() for _ in range(2)]}
    for index in range(2):
      name = "%s_worker_%d" % (worker_run["name"], index)
      spec, _ = _write_spec(directory, name, [worker_run], **settings)
      tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
      commands.append((name, [sys.executable, str(script), spec],
                       _python_env(TF_CONFIG=json.dumps(tf_config))))
  worker_results = {}
  worker_outputs = support.run_processes(commands, directory, TIMEOUT_SECONDS)
  for (name, _, _), (returncode, output) in zip(commands, worker_outputs):
    assert returncode == 0, "%s:\n%s" % (name, output[-3000:])
    worker_results[name] = json.loads((directory / (name + "_results.json")).read_text())

  # The optimizer test above covers every mix of replicas, micro-batches and clipping; these
  # check the Estimator plumbing in both regimes.
  runs = [
      run("one_device", "none", 1, CLIPPED),
      run("one_device_unclipped", "none", 1, UNCLIPPED),
      run("one_device_2_micro_batches", "none", 2, CLIPPED),
      run("mirrored_unclipped", "mirrored", 1, UNCLIPPED),
      run("mirrored_2_micro_batches", "mirrored", 2, CLIPPED),
      run("mirrored_odd_micro_batch", "mirrored", 2, CLIPPED, train_batch_size=6),
      # Training stops at once (the checkpoint is at the last step); evaluation loads it.
      run("multi_worker_loaded_on_one_device", "none", 1, UNCLIPPED,
          str(directory / "multi_worker_unclipped")),
  ]
  spec, results_file = _write_spec(directory, "single", runs, logical_cpus=2, **settings)
  [(returncode, output)] = support.run_processes(
      [("single", [sys.executable, str(script), spec], _python_env())], directory,
      TIMEOUT_SECONDS)
  assert returncode == 0, output[-3000:]
  results = json.loads(open(results_file).read())
  results["workers"] = worker_results
  return directory, results


# The micro-batch and replica runs sum each gradient in another order. Adam divides each
# gradient element by its own magnitude plus epsilon (1e-6), so an element near epsilon turns
# that rounding into a weight change of a small fraction of the learning rate (0.01): a CI run
# measured 1.2e-6 where this machine measures 1.2e-7. A wrongly combined gradient moves weights
# by about the learning rate, a thousand times more.
CHECKPOINT_ATOL = 1e-5


def _assert_same_checkpoints(actual_dir, expected_dir):
  actual = tf.train.load_checkpoint(str(actual_dir))
  expected = tf.train.load_checkpoint(str(expected_dir))
  names = sorted(expected.get_variable_to_shape_map())
  assert sorted(actual.get_variable_to_shape_map()) == names
  assert "bert/encoder/layer_1/output/dense/kernel/adam_v" in names
  assert actual.get_tensor("global_step") == 3
  for name in names:
    np.testing.assert_allclose(actual.get_tensor(name), expected.get_tensor(name), rtol=1e-5,
                               atol=CHECKPOINT_ATOL, err_msg=name)


@pytest.mark.parametrize("run,reference", [
    ("one_device_2_micro_batches", "one_device"),
    ("mirrored_unclipped", "one_device_unclipped"),
    ("mirrored_2_micro_batches", "one_device"),
    ("multi_worker_unclipped", "one_device_unclipped"),
    ("multi_worker_2_micro_batches", "one_device"),
])
def test_same_weights_as_one_device(trained, run, reference):
  directory, _ = trained
  _assert_same_checkpoints(directory / run, directory / reference)


def test_training_moved_the_weights(trained):
  directory, _ = trained
  trained_kernel = tf.train.load_checkpoint(str(directory / "one_device")).get_tensor("cls/kernel")
  initial_kernel = tf.train.load_checkpoint(str(directory / "init")).get_tensor("cls/kernel")
  assert not np.allclose(trained_kernel, initial_kernel, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("run,reference", [
    ("one_device_2_micro_batches", "one_device"),
    ("mirrored_unclipped", "one_device_unclipped"),
    ("mirrored_2_micro_batches", "one_device"),
    ("multi_worker_loaded_on_one_device", "one_device_unclipped"),
])
def test_same_evaluation_as_one_device(trained, run, reference):
  _, results = trained
  assert results[run]["global_step"] == results[reference]["global_step"] == 3
  assert results[run]["eval_loss"] == pytest.approx(results[reference]["eval_loss"], rel=1e-5)


def test_multi_worker_refuses_to_evaluate(trained):
  _, results = trained
  assert len(results["workers"]) == 4
  for worker in results["workers"].values():
    [(_, result)] = worker.items()
    assert result["error"] == (
        "a Runner under a multi-worker strategy only trains: evaluate with a Runner without a "
        "strategy on the same model_dir")


def test_only_the_chief_writes_to_the_output_dir(trained):
  directory, _ = trained
  output_dir = directory / "multi_worker_unclipped"
  assert tf.train.latest_checkpoint(str(output_dir)).endswith("model.ckpt-3")
  # The other workers write nothing at all (Estimator had them save into tmp_worker_N).
  assert not [name for name in os.listdir(output_dir) if name.startswith("tmp_worker")]


def test_micro_batch_not_shared_evenly_by_replicas(trained):
  _, results = trained
  assert results["mirrored_odd_micro_batch"]["error"] == (
      "--train_batch_size: micro-batches of 3 examples cannot be shared evenly by the 2 "
      "replicas of --distribution_strategy=mirrored")


def _model_fn(features, labels, mode, params):
  raise AssertionError("make_estimator must not call the model_fn")


class _StubTPUClusterResolver(object):
  """Stands for TPUClusterResolver, which would ask the Cloud TPU API where the TPU is."""

  calls = []

  def __init__(self, tpu, zone=None, project=None):
    self.calls.append((tpu, zone, project))

  def master(self):
    return "grpc://10.240.1.2:8470"

  def cluster_spec(self):
    return tf.train.ClusterSpec({"worker": ["10.240.1.2:8470"]})


@support.needs_tf_estimator
def test_use_tpu_builds_the_tpu_estimator(tmp_path, monkeypatch):
  _StubTPUClusterResolver.calls = []
  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver",
                      _StubTPUClusterResolver)
  options = estimator_setup.RunOptions(use_tpu=True, tpu_name="bert-tpu",
                                       tpu_zone="us-central1-b", gcp_project="bert-project",
                                       num_tpu_cores=32)
  estimator = estimator_setup.make_estimator(
      _model_fn, str(tmp_path), options, train_batch_size=256, eval_batch_size=64,
      predict_batch_size=64, save_checkpoints_steps=500, iterations_per_loop=200)
  assert _StubTPUClusterResolver.calls == [("bert-tpu", "us-central1-b", "bert-project")]
  assert isinstance(estimator, tf.estimator.tpu.TPUEstimator)
  config = estimator.config
  assert isinstance(config.cluster, _StubTPUClusterResolver)
  assert config.master == "grpc://10.240.1.2:8470"
  assert config.tpu_config.num_shards == 32
  assert config.tpu_config.iterations_per_loop == 200
  assert (config.tpu_config.per_host_input_for_training ==
          tf.estimator.tpu.InputPipelineConfig.PER_HOST_V2)
  assert config.save_checkpoints_steps == 500
  assert config.train_distribute is None
  assert config.model_dir == str(tmp_path)


@support.needs_tf_estimator
def test_use_tpu_with_master_and_no_tpu_name(tmp_path, monkeypatch):
  _StubTPUClusterResolver.calls = []
  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver",
                      _StubTPUClusterResolver)
  options = estimator_setup.RunOptions(use_tpu=True, master="grpc://10.0.0.9:8470")
  estimator = estimator_setup.make_estimator(_model_fn, str(tmp_path), options,
                                             train_batch_size=64)
  assert _StubTPUClusterResolver.calls == []
  assert estimator.config.master == "grpc://10.0.0.9:8470"
  assert estimator.config.tpu_config.num_shards == 8


def test_mirrored_builds_a_runner_with_the_strategy(tmp_path):
  estimator = estimator_setup.make_estimator(
      _model_fn, str(tmp_path), estimator_setup.RunOptions(distribution_strategy="mirrored"),
      train_batch_size=32)
  assert isinstance(estimator, runner.Runner)
  assert isinstance(estimator._strategy, tf.distribute.MirroredStrategy)  # pylint: disable=protected-access
  assert estimator.model_dir == str(tmp_path)


@pytest.mark.skipif(estimator_setup.tpu_estimator_available(),
                    reason="this TensorFlow has TPUEstimator")
def test_use_tpu_without_tpu_estimator_is_one_clear_error(tmp_path):
  with pytest.raises(script_io.InputError,
                     match=r"--use_tpu trains with TPUEstimator, which TensorFlow .* no longer "
                     r"has: use TensorFlow 2.15.1"):
    estimator_setup.make_estimator(_model_fn, str(tmp_path),
                                   estimator_setup.RunOptions(use_tpu=True), train_batch_size=8)


def test_without_tpu_and_strategy_the_runner_trains_on_one_device(tmp_path):
  estimator = estimator_setup.make_estimator(
      _model_fn, str(tmp_path), estimator_setup.RunOptions(), train_batch_size=32)
  assert isinstance(estimator, runner.Runner)
  assert estimator._strategy is None  # pylint: disable=protected-access


@pytest.mark.parametrize("overrides,tf_config,message", [
    ({"use_tpu": True, "distribution_strategy": "mirrored"}, None,
     "--use_tpu trains on TPU cores with TPUEstimator; --distribution_strategy=mirrored is for "
     "GPUs and CPUs: leave it at none"),
    ({"distribution_strategy": "mirrored", "num_gpus": 2}, None,
     "--num_gpus=2: this machine has 0 visible GPUs"),
    ({"distribution_strategy": "multi_worker_mirrored", "num_gpus": 1}, None,
     "--num_gpus is only for --distribution_strategy=mirrored"),
    ({"distribution_strategy": "multi_worker_mirrored"}, None,
     "--distribution_strategy=multi_worker_mirrored needs the TF_CONFIG environment variable"),
    ({"distribution_strategy": "multi_worker_mirrored"}, "{not json",
     "TF_CONFIG is not JSON"),
    ({"distribution_strategy": "multi_worker_mirrored"},
     json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"],
                             "evaluator": ["127.0.0.1:3"]},
                 "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG: multi_worker_mirrored trains on \"chief\" and \"worker\" tasks only, not "
     "evaluator"),
])
def test_bad_scale_flags(tmp_path, monkeypatch, overrides, tf_config, message):
  if tf_config is None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
  else:
    monkeypatch.setenv("TF_CONFIG", tf_config)
  with pytest.raises(script_io.InputError) as error:
    estimator_setup.make_estimator(_model_fn, str(tmp_path),
                                   estimator_setup.RunOptions(**overrides), train_batch_size=32)
  assert message in str(error.value)


def test_scripts_refuse_other_work_than_training_from_multi_worker_runs(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  multi_worker = estimator_setup.RunOptions(distribution_strategy="multi_worker_mirrored")
  estimator_setup.check_scale_options(multi_worker, 32,
                                      {"--do_eval": False, "--export_dir": None})
  with pytest.raises(script_io.InputError) as error:
    estimator_setup.check_scale_options(
        multi_worker, 32, {"--do_eval": True, "--do_predict": False, "--export_dir": "/tmp/export"})
  assert str(error.value) == (
      "--distribution_strategy=multi_worker_mirrored only trains: leave out --do_eval and "
      "--export_dir, and evaluate, predict or export afterwards in a run with "
      "--distribution_strategy=none on the same --output_dir")
  estimator_setup.check_scale_options(
      estimator_setup.RunOptions(distribution_strategy="mirrored"), 32,
      {"--do_eval": True, "--export_dir": "/tmp/export"})
