"""The official SQuAD scores: exact match and F1, as evaluate-v1.1.py and evaluate-v2.0.py compute.

Both official scripts compare a prediction with each ground-truth answer after the same
normalisation (lower case, no punctuation, no articles a/an/the, single spaces) and keep the best
match. Exact match is 1 when the normalised strings are equal; F1 is the harmonic mean of token
precision and recall over the bags of normalised tokens. Scores are percentages.

SQuAD 2.0 adds unanswerable questions (gold answer ""), splits the scores into HasAns / NoAns, and,
given the null odds of each question, finds the null threshold that maximises each score
(`best_f1_thresh` is what `run_squad.py --null_score_diff_threshold` takes).

`dataset` below is the "data" list of a SQuAD JSON file; `predictions` maps question id -> text.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import re
import string

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)

# evaluate-v2.0.py --na-prob-thresh default: with --na-prob-file, a question whose null odds
# exceed it counts as answered with "" whatever its prediction says.
OFFICIAL_NA_PROB_THRESH = 1.0


def normalize_answer(text):
  """Lower-cases, removes punctuation and the articles a/an/the, and collapses whitespace."""
  text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def exact_match_score(prediction, ground_truth):
  """1 when the normalised texts are equal, else 0 (the v1.1 script's bool, as an int)."""
  return int(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction, ground_truth):
  """Token-bag F1 of the normalised texts, as evaluate-v1.1.py: 0 when one of them is empty."""
  prediction_tokens = normalize_answer(prediction).split()
  ground_truth_tokens = normalize_answer(ground_truth).split()
  return _token_f1(prediction_tokens, ground_truth_tokens)


def _token_f1(prediction_tokens, ground_truth_tokens):
  common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0
  precision = num_same / len(prediction_tokens)
  recall = num_same / len(ground_truth_tokens)
  return 2 * precision * recall / (precision + recall)


def _questions(dataset):
  for article in dataset:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        yield qa


def evaluate_v1(dataset, predictions):
  """Scores predictions as evaluate-v1.1.py does.

  Args:
    dataset: the "data" list of a SQuAD v1.1 file; every question has at least one answer.
    predictions: dict of question id -> predicted text. A missing question scores 0.

  Returns:
    OrderedDict with "exact_match" and "f1", percentages over all questions.
  """
  total = 0
  exact_match = 0.0
  f1 = 0.0
  for qa in _questions(dataset):
    total += 1
    if qa["id"] not in predictions:
      continue
    prediction = predictions[qa["id"]]
    ground_truths = [answer["text"] for answer in qa["answers"]]
    exact_match += max(exact_match_score(prediction, truth) for truth in ground_truths)
    f1 += max(f1_score(prediction, truth) for truth in ground_truths)
  return collections.OrderedDict([
      ("exact_match", 100.0 * exact_match / total),
      ("f1", 100.0 * f1 / total),
  ])


def _v2_f1(prediction, gold):
  """evaluate-v2.0.py's F1: unlike v1.1, two empty answers agree fully."""
  prediction_tokens = normalize_answer(prediction).split()
  gold_tokens = normalize_answer(gold).split()
  if not prediction_tokens or not gold_tokens:
    return int(prediction_tokens == gold_tokens)
  return _token_f1(prediction_tokens, gold_tokens)


def _v2_raw_scores(dataset, predictions):
  """Per-question exact and F1 (0/1 and 0..1), and whether each question has an answer."""
  exact_scores = collections.OrderedDict()
  f1_scores = collections.OrderedDict()
  has_answer = collections.OrderedDict()
  for qa in _questions(dataset):
    qid = qa["id"]
    has_answer[qid] = bool(qa["answers"])
    gold_answers = [answer["text"] for answer in qa["answers"]
                    if normalize_answer(answer["text"])]
    if not gold_answers:
      gold_answers = [""]
    if qid not in predictions:
      continue
    prediction = predictions[qid]
    exact_scores[qid] = max(int(normalize_answer(gold) == normalize_answer(prediction))
                            for gold in gold_answers)
    f1_scores[qid] = max(_v2_f1(prediction, gold) for gold in gold_answers)
  return exact_scores, f1_scores, has_answer


def _apply_no_answer_threshold(scores, na_probs, has_answer, na_prob_thresh):
  thresholded = collections.OrderedDict()
  for qid, score in scores.items():
    if na_probs[qid] > na_prob_thresh:
      thresholded[qid] = float(not has_answer[qid])
    else:
      thresholded[qid] = score
  return thresholded


def _mean_scores(exact_scores, f1_scores, qids):
  total = len(qids)
  return [
      ("exact", 100.0 * sum(exact_scores[qid] for qid in qids) / total),
      ("f1", 100.0 * sum(f1_scores[qid] for qid in qids) / total),
      ("total", total),
  ]


def _best_threshold(predictions, scores, na_probs, has_answer):
  """The best score over null thresholds, and the threshold: null odds above it mean "".

  Walks the questions by increasing null odds, answering each with its prediction instead of "".
  """
  current = sum(1 for qid in has_answer if not has_answer[qid])
  best_score = current
  best_thresh = 0.0
  for qid in sorted(na_probs, key=lambda k: na_probs[k]):
    if qid not in scores:
      continue
    if has_answer[qid]:
      current += scores[qid]
    elif predictions[qid]:
      current -= 1
    if current > best_score:
      best_score = current
      best_thresh = na_probs[qid]
  return 100.0 * best_score / len(scores), best_thresh


def evaluate_v2(dataset, predictions, na_probs, na_prob_thresh=OFFICIAL_NA_PROB_THRESH):
  """Scores predictions as `evaluate-v2.0.py data pred --na-prob-file null_odds.json` does.

  Args:
    dataset: the "data" list of a SQuAD v2.0 file; a question without answers is unanswerable.
    predictions: dict of question id -> predicted text ("" for no answer).
    na_probs: dict of question id -> null odds (run_squad.py's null_odds.json).
    na_prob_thresh: questions with null odds above it count as answered "" (the official
      script's --na-prob-thresh).

  Returns:
    OrderedDict: exact, f1, total, then HasAns_exact/_f1/_total and NoAns_exact/_f1/_total when
    there are such questions, then best_exact, best_exact_thresh, best_f1, best_f1_thresh.
  """
  exact_raw, f1_raw, has_answer = _v2_raw_scores(dataset, predictions)
  exact = _apply_no_answer_threshold(exact_raw, na_probs, has_answer, na_prob_thresh)
  f1 = _apply_no_answer_threshold(f1_raw, na_probs, has_answer, na_prob_thresh)
  results = collections.OrderedDict(_mean_scores(exact, f1, list(exact)))
  for prefix, answerable in (("HasAns", True), ("NoAns", False)):
    qids = [qid for qid in exact if has_answer[qid] == answerable]
    if qids:
      for name, value in _mean_scores(exact, f1, qids):
        results["%s_%s" % (prefix, name)] = value
  for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
    best, thresh = _best_threshold(predictions, raw, na_probs, has_answer)
    results["best_%s" % name] = best
    results["best_%s_thresh" % name] = thresh
  return results
