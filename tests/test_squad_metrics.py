"""Tests of squad_metrics.py against values worked out by hand from the official definitions."""

import pytest
import squad_metrics


def make_dataset(questions):
  """A SQuAD "data" list with one paragraph holding `questions`: (id, answer texts) pairs."""
  qas = [{"id": qid, "question": "q?", "answers": [{"text": text, "answer_start": 0}
                                                   for text in answers]}
         for qid, answers in questions]
  return [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]


@pytest.mark.parametrize("text, expected", [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("An apple a day", "apple day"),
    ("theatre (an anthem)", "theatre anthem"),
    ("  ...  ", ""),
    ("Café\tau\nlait", "café au lait"),
])
def test_normalize_answer(text, expected):
  assert squad_metrics.normalize_answer(text) == expected


def test_exact_match_ignores_case_punctuation_and_articles():
  assert squad_metrics.exact_match_score("the Eiffel Tower.", "Eiffel tower") == 1
  assert squad_metrics.exact_match_score("Eiffel", "Eiffel tower") == 0


def test_f1_is_over_token_bags():
  # pred {cat, sat}, gold {cat, sat, on, mat}: precision 1, recall 1/2, F1 2/3.
  assert squad_metrics.f1_score("the cat sat", "cat sat on mat") == pytest.approx(2 / 3)
  # Counts matter: pred {x, b, b} vs gold {b}: 1 common, precision 1/3, recall 1, F1 1/2.
  assert squad_metrics.f1_score("x b b", "b") == pytest.approx(0.5)
  assert squad_metrics.f1_score("dog", "cat") == 0
  # v1.1 gives 0 when both are empty.
  assert squad_metrics.f1_score("", "") == 0


def test_evaluate_v1_takes_the_best_ground_truth_and_counts_missing_as_zero():
  dataset = make_dataset([
      ("q1", ["Paris", "the city of Paris"]),
      ("q2", ["cat sat on mat", "a dog"]),
      ("q3", ["blue"]),
      ("q4", ["red"]),
  ])
  predictions = {"q1": "city of paris!", "q2": "the cat sat", "q3": "Blue."}
  scores = squad_metrics.evaluate_v1(dataset, predictions)
  assert list(scores) == ["exact_match", "f1"]
  # q1 exact (2nd truth), q2 F1 2/3, q3 exact, q4 missing.
  assert scores["exact_match"] == pytest.approx(100.0 * 2 / 4)
  assert scores["f1"] == pytest.approx(100.0 * (1 + 2 / 3 + 1) / 4)


def v2_case():
  """Six questions, three unanswerable: (id, gold answers, prediction, null odds)."""
  return [
      ("q1", ["Paris"], "Paris", 0.5),
      ("q2", ["cat sat on mat"], "the cat sat", 1.2),
      ("q3", [], "", 2.0),
      ("q4", [], "dog", -2.0),
      ("q5", ["blue"], "", 3.0),
      ("q6", [], "cat", 1.3),
  ]


def test_evaluate_v2_matches_hand_computed_scores():
  case = v2_case()
  dataset = make_dataset([(qid, answers) for qid, answers, _, _ in case])
  predictions = {qid: prediction for qid, _, prediction, _ in case}
  na_probs = {qid: odds for qid, _, _, odds in case}
  scores = squad_metrics.evaluate_v2(dataset, predictions, na_probs)
  assert list(scores) == [
      "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact",
      "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
  # Raw per question (exact, f1): q1 (1, 1), q2 (0, 2/3), q3 (1, 1) since "" matches "",
  # q4 (0, 0), q5 (0, 0), q6 (0, 0). Null odds above 1.0 (q2, q3, q5, q6) count as answered "":
  # q2 -> (0, 0), q3 -> (1, 1), q5 -> (0, 0), q6 -> (1, 1).
  assert scores["exact"] == pytest.approx(100.0 * 3 / 6)
  assert scores["f1"] == pytest.approx(100.0 * 3 / 6)
  assert scores["total"] == 6
  assert scores["HasAns_exact"] == pytest.approx(100.0 * 1 / 3)
  assert scores["HasAns_f1"] == pytest.approx(100.0 * 1 / 3)
  assert scores["HasAns_total"] == 3
  assert scores["NoAns_exact"] == pytest.approx(100.0 * 2 / 3)
  assert scores["NoAns_f1"] == pytest.approx(100.0 * 2 / 3)
  assert scores["NoAns_total"] == 3
  # Best threshold, raw scores: start from all-null = 3 (the unanswerable ones), then answer
  # by increasing null odds: q4 -1 -> 2, q1 +1 -> 3, q2 +0 (exact) / +2/3 (f1), q6 -1, q3 0, q5 0.
  assert scores["best_exact"] == pytest.approx(100.0 * 3 / 6)
  assert scores["best_exact_thresh"] == 0.0
  assert scores["best_f1"] == pytest.approx(100.0 * (3 + 2 / 3) / 6)
  assert scores["best_f1_thresh"] == 1.2


def test_evaluate_v2_without_null_odds_threshold_effect():
  case = v2_case()
  dataset = make_dataset([(qid, answers) for qid, answers, _, _ in case])
  predictions = {qid: prediction for qid, _, prediction, _ in case}
  zero_odds = {qid: 0.0 for qid in predictions}
  scores = squad_metrics.evaluate_v2(dataset, predictions, zero_odds)
  # The raw scores: exact 1+0+1+0+0+0, f1 1+2/3+1+0+0+0.
  assert scores["exact"] == pytest.approx(100.0 * 2 / 6)
  assert scores["f1"] == pytest.approx(100.0 * (2 + 2 / 3) / 6)


def test_evaluate_v2_gold_that_normalizes_to_nothing_is_unanswerable_text():
  # Answers exist (HasAns) but normalise to "": the gold becomes [""], so "" scores 1.
  dataset = make_dataset([("q1", ["The"]), ("q2", ["Paris"])])
  scores = squad_metrics.evaluate_v2(dataset, {"q1": "", "q2": "paris"}, {"q1": 0, "q2": 0})
  assert scores["exact"] == 100.0
  assert scores["HasAns_total"] == 2
  assert "NoAns_total" not in scores
