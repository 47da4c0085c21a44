"""Creates the masked LM and next sentence examples BERT pre-trains on, as TFRecord files.

The input is plain text, one sentence per line, with a blank line between documents. Each
document is cut into sentence pairs ("A" then "B", where B is the real continuation of A or,
about half of the time, a passage from another document), a fraction of the WordPieces
(--masked_lm_prob) is masked, and each pair is written as a `tf.train.Example` with the
features `run_pretraining.py` reads.

Given the same input, vocabulary, flags and --random_seed, the examples are those of Google's
original script, byte for byte: every random choice comes from one `random.Random(random_seed)`
in the original's order. The script is faster than the original because it tokenizes faster,
works on token ids instead of token strings, draws its random numbers without the per-call
overhead of `random.Random.shuffle`, and serializes the examples directly; it needs less memory
because it keeps the examples as serialized bytes until they are shuffled and written.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import contextlib
import random
import struct

from absl import flags
import script_io
import tensorflow.compat.v1 as tf
import tf_example

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "input_file", None,
    "Input text file, or a comma-separated list of files or glob patterns. One sentence per "
    "line, a blank line between documents.")

flags.DEFINE_string(
    "output_file", None,
    "Output TFRecord file, or a comma-separated list of files that the examples are dealt to "
    "in turn.")

flags.DEFINE_string("vocab_file", None,
                    "The WordPiece vocabulary file of the BERT model to be pre-trained.")

flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text: True for uncased models, False for cased ones.")

flags.DEFINE_bool(
    "do_whole_word_mask", False,
    "Whether to mask all the WordPieces of a word together rather than each WordPiece on "
    "its own.")

flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length, in WordPieces.")

flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "Maximum number of masked LM predictions per sequence.")

flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")

flags.DEFINE_integer(
    "dupe_factor", 10,
    "Number of times the input is used, each time with different sentence pairs and masks.")

flags.DEFINE_float("masked_lm_prob", 0.15, "Fraction of the WordPieces to mask.")

flags.DEFINE_float(
    "short_seq_prob", 0.1,
    "Probability of aiming at a sequence shorter than max_seq_length, so that the model also "
    "sees short inputs such as those of fine-tuning tasks.")

# [CLS] A [SEP] B [SEP] with at least one WordPiece in A and in B.
_MIN_SEQ_LENGTH = 5

_SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]")

# In the order of the original's feature dictionary, which is also the order they are logged in.
_FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                  "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")

_NUM_LOGGED_EXAMPLES = 20

_PROGRESS_EVERY = 100000


class TrainingInstance(object):
  """A single training instance (sentence pair)."""

  def __init__(self, tokens, segment_ids, masked_lm_positions, masked_lm_labels,
               is_random_next):
    self.tokens = tokens
    self.segment_ids = segment_ids
    self.is_random_next = is_random_next
    self.masked_lm_positions = masked_lm_positions
    self.masked_lm_labels = masked_lm_labels

  def __str__(self):
    return ("tokens: %s\n"
            "segment_ids: %s\n"
            "is_random_next: %s\n"
            "masked_lm_positions: %s\n"
            "masked_lm_labels: %s\n"
            "\n") % (" ".join(self.tokens), " ".join(str(x) for x in self.segment_ids),
                     self.is_random_next, " ".join(str(x) for x in self.masked_lm_positions),
                     " ".join(self.masked_lm_labels))

  def __repr__(self):
    return self.__str__()


# A masked position and its original token; kept for code that imports it.
MaskedLmInstance = collections.namedtuple("MaskedLmInstance", ["index", "label"])


def create_int_feature(values):
  """Returns a `tf.train.Feature` holding the integers `values`."""
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def create_float_feature(values):
  """Returns a `tf.train.Feature` holding the floats `values`."""
  return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def create_training_instances(input_files, tokenizer, max_seq_length, dupe_factor,
                              short_seq_prob, masked_lm_prob, max_predictions_per_seq, rng,
                              do_whole_word_mask=False):
  """Reads and tokenizes the input files and makes the shuffled `TrainingInstance`s.

  Args:
    input_files: list of text files, one sentence per line, blank lines between documents.
      A document may continue from one file into the next.
    tokenizer: a `tokenization.FullTokenizer`.
    max_seq_length: length of [CLS] A [SEP] B [SEP], at least 5.
    dupe_factor: how many times each document is turned into instances.
    short_seq_prob: probability of aiming at a random shorter length for a document.
    masked_lm_prob: fraction of the WordPieces to mask.
    max_predictions_per_seq: most WordPieces masked in one instance.
    rng: the `random.Random` every choice is drawn from, in the original's order.
    do_whole_word_mask: whether to mask all the WordPieces of a word together. (The
      original's later version read its --do_whole_word_mask flag; the script passes it here.)

  Returns:
    List of `TrainingInstance`, in random order.
  """
  all_documents = _read_documents(input_files, tokenizer.tokenize)
  _shuffle(all_documents, rng)
  masking = _Masking(_TokenSymbols.of_strings(list(tokenizer.vocab.keys())), masked_lm_prob,
                     max_predictions_per_seq, do_whole_word_mask)
  instances = _all_instances(all_documents, dupe_factor, max_seq_length, short_seq_prob,
                             masking, _training_instance, rng)
  _shuffle(instances, rng)
  return instances


def create_instances_from_document(all_documents, document_index, max_seq_length,
                                   short_seq_prob, masked_lm_prob, max_predictions_per_seq,
                                   vocab_words, rng, do_whole_word_mask=False):
  """Cuts one document into sentence pairs and masks them.

  Args:
    all_documents: list of documents; a document is a list of sentences, a sentence a
      non-empty list of WordPiece strings.
    document_index: index in `all_documents` of the document to use.
    vocab_words: list of the vocabulary's tokens, in file order; masked WordPieces are
      sometimes replaced by one of them.
    The other arguments are those of `create_training_instances`.

  Returns:
    List of `TrainingInstance`, in the order of the document.
  """
  masking = _Masking(_TokenSymbols.of_strings(vocab_words), masked_lm_prob,
                     max_predictions_per_seq, do_whole_word_mask)
  return _instances_from_document(all_documents, document_index, max_seq_length,
                                  short_seq_prob, masking, _training_instance, rng)


def create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words,
                                 rng, do_whole_word_mask=False):
  """Chooses the WordPieces to predict and masks them.

  80% of the chosen WordPieces become [MASK], 10% a random vocabulary token and 10% stay as
  they are.

  Args:
    tokens: list of WordPiece strings, [CLS] A [SEP] B [SEP]; [CLS] and [SEP] are never chosen.
    The other arguments are those of `create_instances_from_document`.

  Returns:
    (output_tokens, masked_lm_positions, masked_lm_labels): the masked copy of `tokens`, the
    chosen positions in increasing order and the original WordPieces at those positions.
  """
  masking = _Masking(_TokenSymbols.of_strings(vocab_words), masked_lm_prob,
                     max_predictions_per_seq, do_whole_word_mask)
  return masking.apply(tokens, rng)


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
  """Shortens the pair in place to at most `max_num_tokens` in all.

  One token at a time is removed from the longer list (from `tokens_b` when both are as long),
  from its front or its back as a coin toss decides, so that neither end is favoured.
  """
  excess = len(tokens_a) + len(tokens_b) - max_num_tokens
  if excess <= 0:
    return
  if max_num_tokens < 0:
    raise ValueError("max_num_tokens must not be negative, got %d" % max_num_tokens)
  # One toss per removed token, in the order of the removals. Which list each removal shortens
  # depends on the lengths only: the longer one until both are as long, then tokens_b and
  # tokens_a in turn. So the tosses can be drawn first and dealt to the lists afterwards.
  from_front = [rng.random() < 0.5 for _ in range(excess)]
  if len(tokens_a) > len(tokens_b):
    until_even = min(excess, len(tokens_a) - len(tokens_b))
    tosses_a = from_front[:until_even] + from_front[until_even + 1::2]
    tosses_b = from_front[until_even::2]
  else:
    until_even = min(excess, len(tokens_b) - len(tokens_a))
    tosses_a = from_front[until_even + 1::2]
    tosses_b = from_front[:until_even] + from_front[until_even::2]
  _remove_ends(tokens_a, tosses_a)
  _remove_ends(tokens_b, tosses_b)


def _remove_ends(tokens, from_front):
  """Removes one token per toss in `from_front`: the first one if True, else the last one."""
  kept = len(tokens) - len(from_front)
  del tokens[:sum(from_front)]
  del tokens[kept:]


def write_instance_to_example_files(instances, tokenizer, max_seq_length,
                                    max_predictions_per_seq, output_files):
  """Writes `TrainingInstance`s as `tf.train.Example`s, dealt in turn to `output_files`.

  Each example holds input_ids, input_mask and segment_ids padded with zeros to
  [max_seq_length]; masked_lm_positions, masked_lm_ids and masked_lm_weights (floats, 1.0 for
  a prediction) padded to [max_predictions_per_seq]; next_sentence_labels [1], 1 when B is a
  random passage. The first examples are logged.
  """
  encoder = _ExampleEncoder(tokenizer.vocab, max_seq_length, max_predictions_per_seq)

  def encoded_ids(tokens):
    return [encoder.varints[i] for i in tokenizer.convert_tokens_to_ids(tokens)]

  records = (encoder.encode(encoded_ids(instance.tokens), instance.segment_ids,
                            instance.masked_lm_positions,
                            encoded_ids(instance.masked_lm_labels), instance.is_random_next)
             for instance in instances)
  _write_records(records, output_files, tokenizer.inv_vocab)


def _training_instance(tokens, num_first_segment_tokens, is_random_next, masked_lm_positions,
                       masked_lm_labels):
  segment_ids = ([0] * num_first_segment_tokens +
                 [1] * (len(tokens) - num_first_segment_tokens))
  return TrainingInstance(tokens=tokens, segment_ids=segment_ids,
                          masked_lm_positions=masked_lm_positions,
                          masked_lm_labels=masked_lm_labels, is_random_next=is_random_next)


def _shuffle(items, rng):
  """Shuffles the list `items` in place exactly as `rng.shuffle(items)` does, faster.

  `random.Random.shuffle` calls a Python method for each random index; drawing the bits here
  halves the time of the shuffles, the largest part of making an instance.
  """
  if type(rng) is not random.Random:  # pylint: disable=unidiomatic-typecheck
    rng.shuffle(items)  # A subclass may draw its numbers in its own way.
    return
  getrandbits = rng.getrandbits
  for i in range(len(items) - 1, 0, -1):
    num_bits = (i + 1).bit_length()
    j = getrandbits(num_bits)
    while j > i:
      j = getrandbits(num_bits)
    items[i], items[j] = items[j], items[i]


class _TokenSymbols(object):
  """The tokens the instances are built with: WordPiece strings or their encoded ids.

  Attributes:
    cls, sep, mask: the [CLS], [SEP] and [MASK] tokens.
    vocab_words: every vocabulary token in file order, to draw random replacements from.
    continuations: container of the tokens that continue a word ("##ing").
  """

  def __init__(self, cls, sep, mask, vocab_words, continuations):
    self.cls = cls
    self.sep = sep
    self.mask = mask
    self.vocab_words = vocab_words
    self.continuations = continuations

  @classmethod
  def of_strings(cls, vocab_words):
    return cls("[CLS]", "[SEP]", "[MASK]", vocab_words, _WordContinuations())

  @classmethod
  def of_encoded_ids(cls, encoded_vocab):
    """Symbols of the tokens of `encoded_vocab`, an ordered token -> encoded id dictionary."""
    return cls(encoded_vocab["[CLS]"], encoded_vocab["[SEP]"], encoded_vocab["[MASK]"],
               list(encoded_vocab.values()),
               frozenset(encoded_id for token, encoded_id in encoded_vocab.items()
                         if token.startswith("##")))


class _WordContinuations(object):
  """Contains every WordPiece string that continues a word."""

  def __contains__(self, token):
    return token.startswith("##")


class _Masking(object):
  """The masked LM choices of the original, on tokens given as strings or as ids."""

  def __init__(self, symbols, masked_lm_prob, max_predictions_per_seq, do_whole_word_mask):
    self.symbols = symbols
    self.masked_lm_prob = masked_lm_prob
    self.max_predictions_per_seq = max_predictions_per_seq
    self.do_whole_word_mask = do_whole_word_mask

  def apply(self, tokens, rng):
    """Returns (output_tokens, masked_lm_positions, masked_lm_labels) for the list `tokens`."""
    num_to_predict = min(self.max_predictions_per_seq,
                         max(1, int(round(len(tokens) * self.masked_lm_prob))))
    num_to_predict = max(num_to_predict, 0)  # A negative maximum means no predictions.
    if self.do_whole_word_mask:
      positions = self._choose_whole_words(tokens, num_to_predict, rng)
    else:
      candidates = self._candidate_positions(tokens)
      _shuffle(candidates, rng)
      positions = candidates[:num_to_predict]
    output_tokens = self._replace(tokens, positions, rng)
    positions.sort()
    return output_tokens, positions, [tokens[i] for i in positions]

  def _candidate_positions(self, tokens):
    cls, sep = self.symbols.cls, self.symbols.sep
    return [i for i, token in enumerate(tokens) if token != cls and token != sep]

  def _choose_whole_words(self, tokens, num_to_predict, rng):
    """Picks words in random order, skipping those that would exceed `num_to_predict`."""
    cls, sep, continuations = self.symbols.cls, self.symbols.sep, self.symbols.continuations
    words = []
    for i, token in enumerate(tokens):
      if token == cls or token == sep:
        continue
      # As in the original, a continuation right after [SEP] joins the word before it.
      if words and token in continuations:
        words[-1].append(i)
      else:
        words.append([i])
    _shuffle(words, rng)
    positions = []
    for word in words:
      if len(positions) >= num_to_predict:
        break
      # The words do not overlap, so unlike the original there is no need to track the
      # positions already covered.
      if len(positions) + len(word) <= num_to_predict:
        positions.extend(word)
    return positions

  def _replace(self, tokens, positions, rng):
    """Masks `tokens` at `positions`, in the order chosen since that decides the draws.

    80% of the positions get [MASK]; the others keep their token or, as often, get a random
    vocabulary token, so that the model cannot rely on seeing [MASK] where it must predict.
    """
    output_tokens = list(tokens)
    mask, vocab_words = self.symbols.mask, self.symbols.vocab_words
    for i in positions:
      if rng.random() < 0.8:
        output_tokens[i] = mask
      elif rng.random() >= 0.5:
        output_tokens[i] = vocab_words[rng.randint(0, len(vocab_words) - 1)]
    return output_tokens


def _instances_from_document(all_documents, document_index, max_seq_length, short_seq_prob,
                             masking, make_instance, rng):
  """Cuts a document into sentence pairs, masks them and passes them to `make_instance`.

  Returns:
    List of make_instance(tokens, num_first_segment_tokens, is_random_next,
    masked_lm_positions, masked_lm_labels) results, where `tokens` is the masked
    [CLS] A [SEP] B [SEP] and num_first_segment_tokens the length of [CLS] A [SEP].
  """
  document = all_documents[document_index]
  max_num_tokens = max_seq_length - 3
  if max_num_tokens < 2:
    raise ValueError("max_seq_length=%d leaves no room for [CLS] A [SEP] B [SEP]" %
                     max_seq_length)
  # Sequences are usually filled up to the maximum, since they are padded to it anyway, but
  # sometimes aim shorter so that pre-training also sees short inputs.
  target_seq_length = max_num_tokens
  if rng.random() < short_seq_prob:
    target_seq_length = rng.randint(2, max_num_tokens)

  # A and B are made of whole sentences of the input so that telling a real continuation from
  # a random one is not made easy by cuts in the middle of sentences.
  instances = []
  chunk = []
  chunk_length = 0
  i = 0
  while i < len(document):
    chunk.append(document[i])
    chunk_length += len(document[i])
    if i == len(document) - 1 or chunk_length >= target_seq_length:
      a_end = 1
      if len(chunk) >= 2:
        a_end = rng.randint(1, len(chunk) - 1)
      tokens_a = _concatenate(chunk[:a_end])
      is_random_next = len(chunk) == 1 or rng.random() < 0.5
      if is_random_next:
        tokens_b = _random_passage(all_documents, document_index,
                                   target_seq_length - len(tokens_a), rng)
        # The sentences of the chunk that B did not use are used by the next chunk.
        i -= len(chunk) - a_end
      else:
        tokens_b = _concatenate(chunk[a_end:])
      truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
      symbols = masking.symbols
      tokens = [symbols.cls] + tokens_a + [symbols.sep] + tokens_b + [symbols.sep]
      output_tokens, masked_lm_positions, masked_lm_labels = masking.apply(tokens, rng)
      instances.append(make_instance(output_tokens, len(tokens_a) + 2, is_random_next,
                                     masked_lm_positions, masked_lm_labels))
      chunk = []
      chunk_length = 0
    i += 1
  return instances


def _concatenate(sentences):
  tokens = []
  for sentence in sentences:
    tokens.extend(sentence)
  return tokens


def _random_passage(all_documents, document_index, target_length, rng):
  """Returns sentences from a random other document, from a random start, up to the length."""
  # Ten tries at another document: with one document in all, it is the same one.
  for _ in range(10):
    random_document_index = rng.randint(0, len(all_documents) - 1)
    if random_document_index != document_index:
      break
  random_document = all_documents[random_document_index]
  tokens = []
  for sentence in random_document[rng.randint(0, len(random_document) - 1):]:
    tokens.extend(sentence)
    if len(tokens) >= target_length:
      break
  return tokens


def _all_instances(all_documents, dupe_factor, max_seq_length, short_seq_prob, masking,
                   make_instance, rng):
  """Makes the instances of every document, `dupe_factor` times over, in the original's order."""
  instances = []
  for pass_index in range(dupe_factor):
    for document_index in range(len(all_documents)):
      instances.extend(_instances_from_document(all_documents, document_index, max_seq_length,
                                                short_seq_prob, masking, make_instance, rng))
    tf.logging.info("Pass %d of %d over the documents: %d instances so far", pass_index + 1,
                    dupe_factor, len(instances))
  return instances


def _read_documents(input_files, tokenize):
  """Reads the documents of the input files.

  Args:
    input_files: list of text files, one sentence per line, blank lines between documents.
    tokenize: function from a line (stripped, not empty) to its list of tokens.

  Returns:
    List of documents, each a non-empty list of sentences, each a non-empty list of tokens.

  Raises:
    script_io.InputError: a file that is not UTF-8 text.
  """
  all_documents = [[]]
  num_lines = 0
  for input_file in input_files:
    with tf.io.gfile.GFile(input_file, "rb") as reader:
      for line_number, line in enumerate(reader, 1):
        try:
          line = line.decode("utf-8").strip()
        except UnicodeDecodeError as error:
          raise script_io.InputError("%s, line %d, is not UTF-8 text: %s" %
                                     (input_file, line_number, error))
        if line:
          tokens = tokenize(line)
          if tokens:
            all_documents[-1].append(tokens)
        else:
          all_documents.append([])
        num_lines += 1
        if num_lines % _PROGRESS_EVERY == 0:
          tf.logging.info("Read %d lines, %d documents so far", num_lines, len(all_documents))
  all_documents = [document for document in all_documents if document]
  tf.logging.info("Read %d lines: %d documents", num_lines, len(all_documents))
  return all_documents


class _ExampleEncoder(object):
  """Serializes instances as the original's `tf.train.Example`s, without building protos.

  Building a `tf.train.Example` takes longer than making the instance; writing the protocol
  buffer wire format directly is several times faster and gives the same bytes. Token ids are
  kept encoded, as the varint bytes they are written as ("encoded ids"), from the moment a line
  is tokenized, so the input_ids of an example are one join of its tokens. An example is the
  map of its features; each map entry is a header (tags, lengths and the feature name) that
  depends only on the feature and the length of its packed values, and those values. The
  entries follow the order of the original's records (`tf_example.feature_order`).

  Attributes:
    varints: list, the encoded id of each vocabulary id.
    encoded_vocab: ordered dictionary token -> encoded id, in the vocabulary's order.
  """

  def __init__(self, vocab, max_seq_length, max_predictions_per_seq):
    self.max_seq_length = max_seq_length
    self.max_predictions_per_seq = max_predictions_per_seq
    self.varints = [tf_example.varint(token_id) for token_id in range(max(vocab.values()) + 1)]
    self.encoded_vocab = collections.OrderedDict(
        (token, self.varints[token_id]) for token, token_id in vocab.items())
    self._feature_order = [_FEATURE_NAMES.index(name)
                           for name in tf_example.feature_order(_FEATURE_NAMES)]
    self._entry_headers = {}

  def encode(self, tokens, segment_ids, masked_lm_positions, masked_lm_labels,
             is_random_next):
    """Returns the serialized `tf.train.Example` of one instance.

    Args:
      tokens: list of the encoded ids of [CLS] A [SEP] B [SEP], at most max_seq_length.
      segment_ids: integers (a list, or bytes) as many as `tokens`, 0 for [CLS] A [SEP] and
        1 for B [SEP].
      masked_lm_positions: list of the masked positions.
      masked_lm_labels: list of the encoded ids of the original tokens at those positions.
      is_random_next: whether B is a random passage rather than the continuation of A.
    """
    num_tokens = len(tokens)
    if num_tokens > self.max_seq_length:
      raise ValueError("instance of %d tokens is longer than max_seq_length=%d" %
                       (num_tokens, self.max_seq_length))
    # Zero is encoded as one zero byte, and so is the 0.0 of a float split in four bytes.
    padding = b"\x00" * (self.max_seq_length - num_tokens)
    num_predictions = len(masked_lm_labels)
    prediction_padding = b"\x00" * (self.max_predictions_per_seq - num_predictions)
    values = (
        b"".join(tokens) + padding,
        b"\x01" * num_tokens + padding,
        self._packed(segment_ids) + padding,
        self._packed(masked_lm_positions) + prediction_padding,
        b"".join(masked_lm_labels) + prediction_padding,
        _FLOAT_ONE * num_predictions + prediction_padding * 4,
        b"\x01" if is_random_next else b"\x00")
    parts = []
    for feature_index in self._feature_order:
      packed_values = values[feature_index]
      key = (feature_index, len(packed_values))
      header = self._entry_headers.get(key)
      if header is None:
        header = self._entry_headers[key] = _feature_entry_header(*key)
      parts.append(header)
      parts.append(packed_values)
    features = b"".join(parts)
    return b"\n" + tf_example.varint(len(features)) + features

  def _packed(self, values):
    """The concatenated varints of the integers `values`."""
    try:
      as_bytes = bytes(values)
      if as_bytes.isascii():
        return as_bytes  # An integer below 128 is its own one-byte varint.
    except ValueError:
      pass
    return b"".join(map(tf_example.varint, values))


_FLOAT_ONE = struct.pack("<f", 1.0)


def _feature_entry_header(feature_index, packed_length):
  """The bytes before the values in an entry of the map Features.feature.

  The entry is (field 1 of Features) a message with the key (field 1) and the Feature
  (field 2), which holds an Int64List (field 3) or a FloatList (field 2), which holds the
  packed values (field 1, left out when there are none).
  """
  name = _FEATURE_NAMES[feature_index].encode("utf-8")
  value_list = tf_example.length_prefix(b"\n", packed_length) if packed_length else b""
  value_list_length = len(value_list) + packed_length
  is_float = _FEATURE_NAMES[feature_index] == "masked_lm_weights"
  feature = tf_example.length_prefix(b"\x12" if is_float else b"\x1a", value_list_length)
  feature_length = len(feature) + value_list_length
  key_and_value = (tf_example.length_prefix(b"\n", len(name)) + name +
                   tf_example.length_prefix(b"\x12", feature_length))
  entry_length = len(key_and_value) + feature_length
  return tf_example.length_prefix(b"\n", entry_length) + key_and_value + feature + value_list


def _write_records(records, output_files, inv_vocab):
  """Writes the serialized examples dealt in turn to `output_files`; logs the first ones."""
  with contextlib.ExitStack() as stack:
    writers = []
    for output_file in output_files:
      temporary_file = stack.enter_context(script_io.atomic_output(output_file))
      writers.append(tf.io.TFRecordWriter(temporary_file))
      stack.callback(writers[-1].close)  # Runs before the renaming, entered earlier.
    total_written = 0
    for record in records:
      writers[total_written % len(writers)].write(record)
      if total_written < _NUM_LOGGED_EXAMPLES:
        _log_example(record, inv_vocab)
      total_written += 1
      if total_written % _PROGRESS_EVERY == 0:
        tf.logging.info("Wrote %d instances", total_written)
  tf.logging.info("Wrote %d total instances", total_written)


def _log_example(record, inv_vocab):
  """Logs a serialized example as the original does: its tokens, then each feature."""
  features = tf.train.Example.FromString(record).features.feature
  num_tokens = sum(features["input_mask"].int64_list.value)
  tokens = [inv_vocab[i] for i in features["input_ids"].int64_list.value[:num_tokens]]
  tf.logging.info("*** Example ***")
  tf.logging.info("tokens: %s" % " ".join(tokens))
  for name in _FEATURE_NAMES:
    feature = features[name]
    values = feature.int64_list.value or feature.float_list.value
    tf.logging.info("%s: %s" % (name, " ".join(str(x) for x in values)))


def _tokenizer_from_flags():
  """The FullTokenizer of --vocab_file, which must hold the [CLS], [SEP] and [MASK] tokens."""
  tokenizer = script_io.load_tokenizer(FLAGS.vocab_file, FLAGS.do_lower_case)
  missing = [token for token in _SPECIAL_TOKENS if token not in tokenizer.vocab]
  if missing:
    raise script_io.InputError("--vocab_file: %s has no %s token" %
                               (FLAGS.vocab_file, " or ".join(missing)))
  return tokenizer


def _output_files_from_flag():
  """The files of --output_file, a comma-separated list, each checked to be writable."""
  output_files = FLAGS.output_file.split(",")
  for output_file in output_files:
    if not output_file:
      raise script_io.InputError("--output_file=%s names an empty file name" % FLAGS.output_file)
    script_io.check_output_file(output_file, "output_file")
  return output_files


def _serialized_examples(all_documents, encoder, rng):
  """What create_training_instances makes of the documents, as serialized examples.

  Args:
    all_documents: documents whose sentences are lists of encoded ids (see _ExampleEncoder).
    encoder: the `_ExampleEncoder` of the vocabulary and the flags.
    rng: the `random.Random` of --random_seed.

  Returns:
    List of serialized `tf.train.Example`s, in random order.
  """
  _shuffle(all_documents, rng)
  masking = _Masking(_TokenSymbols.of_encoded_ids(encoder.encoded_vocab),
                     FLAGS.masked_lm_prob, FLAGS.max_predictions_per_seq,
                     FLAGS.do_whole_word_mask)

  def serialized_example(tokens, num_first_segment_tokens, is_random_next,
                         masked_lm_positions, masked_lm_labels):
    segment_ids = (b"\x00" * num_first_segment_tokens +
                   b"\x01" * (len(tokens) - num_first_segment_tokens))
    return encoder.encode(tokens, segment_ids, masked_lm_positions, masked_lm_labels,
                          is_random_next)

  # Serialized, the examples that wait for the final shuffle take a fraction of the memory of
  # `TrainingInstance`s.
  records = _all_instances(all_documents, FLAGS.dupe_factor, FLAGS.max_seq_length,
                           FLAGS.short_seq_prob, masking, serialized_example, rng)
  _shuffle(records, rng)
  return records


def main(_):
  tf.logging.set_verbosity(tf.logging.INFO)
  if FLAGS.max_seq_length < _MIN_SEQ_LENGTH:
    raise script_io.InputError(
        "--max_seq_length=%d is too short for [CLS] A [SEP] B [SEP]: it must be at least %d" %
        (FLAGS.max_seq_length, _MIN_SEQ_LENGTH))
  tokenizer = _tokenizer_from_flags()
  input_files = script_io.input_files_from_globs(FLAGS.input_file, "input_file")
  output_files = _output_files_from_flag()
  encoder = _ExampleEncoder(tokenizer.vocab, FLAGS.max_seq_length,
                            FLAGS.max_predictions_per_seq)
  encoded_vocab = encoder.encoded_vocab

  tf.logging.info("*** Reading from input files ***")
  for input_file in input_files:
    tf.logging.info("  %s", input_file)
  all_documents = _read_documents(
      input_files, lambda line: [encoded_vocab[token] for token in tokenizer.tokenize(line)])
  if not all_documents:
    tf.logging.warning("--input_file: no text in %s; the output files will hold no examples",
                       ", ".join(input_files))
  records = _serialized_examples(all_documents, encoder, random.Random(FLAGS.random_seed))

  tf.logging.info("*** Writing to output files ***")
  for output_file in output_files:
    tf.logging.info("  %s", output_file)
  _write_records(records, output_files, tokenizer.inv_vocab)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_file")
  flags.mark_flag_as_required("vocab_file")
  script_io.run_main(main)
