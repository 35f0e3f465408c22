"""Byte-level BPE tokenizer with one special token that marks where a joke ends.

Byte-level means the base vocabulary is the 256 byte values, so any Unicode text (emoji, CJK,
control characters) encodes and decodes back exactly, with no unknown token. There is no
normaliser and no prefix space for the same reason: decode(encode(text)) == text.

END_OF_JOKE has id 0. Joke text is always encoded with special-token matching switched off, so
a joke that happens to contain the string "<|endofjoke|>" is encoded as ordinary bytes and can
never end itself early.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data.errors import DataError

END_OF_JOKE = "<|endofjoke|>"
DEFAULT_VOCAB_SIZE = 4096
# Every byte value plus END_OF_JOKE; a smaller vocabulary could not encode all text.
MIN_VOCAB_SIZE = 257


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """Learn byte-level BPE merges from `texts` (the training split only, never validation)."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise DataError(
            f"vocabulary size {vocab_size} is below {MIN_VOCAB_SIZE}; pass a larger one"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_JOKE],  # listed first, so it gets id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.encode_special_tokens = True
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer saved with `tok.save(path)`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: tokenizer file not found; check the path or train a new one")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust library raises plain Exception for any bad file
        reason = str(error).splitlines()[0]
        raise DataError(
            f"{path}: damaged tokenizer file ({reason}); restore it, or delete it to train anew"
        ) from error
    if tok.token_to_id(END_OF_JOKE) is None:
        raise DataError(
            f"{path}: tokenizer has no {END_OF_JOKE} token; use one trained by Punchline"
        )
    # The flag is not saved in the file.
    tok.encode_special_tokens = True
    return tok


def end_of_joke_id(tok: Tokenizer) -> int:
    return tok.token_to_id(END_OF_JOKE)


def encode(tok: Tokenizer, text: str) -> list[int]:
    """Token ids of joke text, without END_OF_JOKE (the caller adds the markers)."""
    return encode_batch(tok, [text])[0]


def encode_batch(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of many jokes at once, encoded in parallel by the Rust library."""
    # Set here too, for a tokenizer built elsewhere: a literal "<|endofjoke|>" in a joke must stay
    # text, or the model would learn to end jokes whenever the string appears.
    tok.encode_special_tokens = True
    return [encoding.ids for encoding in tok.encode_batch(list(texts), add_special_tokens=False)]


def decode(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Text of token ids; END_OF_JOKE stays visible, so joke boundaries are never silently lost."""
    # int() accepts numpy and JAX integers, which the Rust library does not.
    return tok.decode([int(token_id) for token_id in ids], skip_special_tokens=False)


def token_strings(tok: Tokenizer, ids: Sequence[int]) -> list[str]:
    """The text of each token on its own, for showing a tokenized joke token by token.

    Byte-level tokens are stored as printable stand-ins ("Ġcat" for " cat"). They are turned back
    into bytes and decoded; a token that holds only part of a multi-byte character (a piece of
    an emoji) shows its bytes as escapes such as "\\xf0\\x9f".
    """
    special = tok.token_to_id(END_OF_JOKE)
    strings = []
    for token_id in map(int, ids):
        token = tok.id_to_token(token_id)
        if token_id == special:
            strings.append(token)
        else:
            raw = bytes(_BYTE_OF_CHAR[char] for char in token)
            strings.append(raw.decode("utf-8", errors="backslashreplace"))
    return strings


def _byte_level_chars() -> dict[str, int]:
    """GPT-2's map from each byte to a printable character, inverted (character -> byte).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, ...) are
    given the characters from U+0100 on, in byte order. Hugging Face's ByteLevel uses this map.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = {byte: chr(byte) for byte in printable}
    others = [byte for byte in range(256) if byte not in chars]
    chars.update({byte: chr(256 + offset) for offset, byte in enumerate(others)})
    return {char: byte for byte, char in chars.items()}


_BYTE_OF_CHAR = _byte_level_chars()
