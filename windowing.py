"""Overlapping windows over a token sequence too long for the model, as the original cuts them.

`run_squad.py` (a question's context) and `run_ner.py` (a long sentence) cut a sequence of
WordPiece tokens into windows of at most `max_tokens` tokens, each starting `stride` tokens after
the one before, so that every token is in at least one window. A token in several windows is
judged from the one where it has the most context (`best_window`).
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections

# A window: the index of its first token and its number of tokens.
DocSpan = collections.namedtuple("DocSpan", ["start", "length"])


def doc_spans(num_tokens, max_tokens, stride):
  """Cuts `num_tokens` tokens into windows of up to `max_tokens` tokens, `stride` apart.

  A stride of `max_tokens` or more gives windows that follow each other without overlapping.

  Returns:
    list of DocSpan, in order; the last one ends at the last token. Empty for no tokens.
  """
  spans = []
  start_offset = 0
  while start_offset < num_tokens:
    length = min(num_tokens - start_offset, max_tokens)
    spans.append(DocSpan(start=start_offset, length=length))
    if start_offset + length == num_tokens:
      break
    start_offset += min(length, stride)
  return spans


def best_window(spans, position):
  """Returns the index of the window of `spans` where the token at `position` has most context.

  A token's context in a window is the smaller of the number of tokens left and right of it,
  plus a hundredth of the window length, so that longer windows win ties; the first window with
  the best score is the one that counts. None when no window holds the position.
  """
  best_score = None
  best_index = None
  for index, span in enumerate(spans):
    end = span.start + span.length - 1
    if position < span.start or position > end:
      continue
    num_left_context = position - span.start
    num_right_context = end - position
    score = min(num_left_context, num_right_context) + 0.01 * span.length
    if best_score is None or score > best_score:
      best_score = score
      best_index = index
  return best_index
