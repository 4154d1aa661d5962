"""Streaming decode: text for token ids as they are generated, in O(1) work per token.

`StreamDecoder.push(id)` returns only the new text, decoding a short window of recent tokens instead of
everything generated so far. A token may end inside a multi-byte UTF-8 character (byte and byte-level
BPE tokenizers): its decode then ends in U+FFFD, and the decoder waits for the rest before it emits.
Everything pushed, joined with `flush()`, equals `tokenizer.decode(all ids)`.
Not here: sampling (model/generate.py) or printing (cli/infer.py `infer`).
"""

REPLACEMENT = "\ufffd"  # what an incomplete UTF-8 sequence decodes to


class StreamDecoder:
    """Incremental `tokenizer.decode`. The window runs from the start of the last emitted text (kept as
    context, so a decoder that treats the first token specially sees it the same way both times) to
    the newest token; each emit moves it on, so it stays a few tokens long."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids = []
        self.prefix = 0   # window start: the first token of the text emitted last
        self.read = 0     # tokens up to here have been emitted

    def push(self, token_id):
        """Add one token; return the text it completes ("" while a character is still incomplete)."""
        self.ids.append(int(token_id))
        before = self.tokenizer.decode(self.ids[self.prefix:self.read])
        text = self.tokenizer.decode(self.ids[self.prefix:])
        if len(text) <= len(before) or text.endswith(REPLACEMENT):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before):]

    def flush(self):
        """The text still held back (an incomplete character at the end decodes to U+FFFD, as in a full
        decode); afterwards everything pushed has been emitted."""
        before = self.tokenizer.decode(self.ids[self.prefix:self.read])
        text = self.tokenizer.decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return text[len(before):]
