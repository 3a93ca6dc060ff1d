"""Token embeddings: the first block of a tower over text, turning token ids into vectors.

A csv text column reaches the tower as token ids (``data.text``); an embedding block maps each id to a
learned vector, so the blocks after it see a sequence (tokens x dimensions): convolutions, recurrent and
attention blocks, global pooling. A bag of tokens (``bag_of_tokens_64``: fastText, Joulin et al. 2016) is
an embedding averaged over the text's tokens, padding left out, so only dense blocks follow it. The
vocabulary's size comes from the data, so these blocks are built by the tower builder with
:meth:`TokenEmbedding.embed` rather than ``build``.

Example::

    >>> build_tower(["embedding_32", "global_avg_pool1d"], {}, DataSpec((64,), "classification", 4, tokens=5000))
    >>> build_tower(["bag_of_tokens_64"], {}, DataSpec((64,), "classification", 4, tokens=5000))   # fastText
"""

from __future__ import annotations

from typing import Any

from blocks.registry import Block, Count, Shape, layers, register

EMBEDDING = "embedding"
#: The dimensions of the embedding a tower over tokens gets when it does not start with an embedding block.
DEFAULT_DIMENSIONS = 64


@register("embedding_16", dimensions=16)
@register("embedding_32", dimensions=32)
@register("embedding_64", dimensions=64)
@register("embedding_128", dimensions=128)
class TokenEmbedding(Block):
    """A learned vector of ``dimensions`` per token id; id 0 (padding) and 1 (unknown) have theirs too."""

    family = EMBEDDING
    order_matters = False
    keeps_order = True

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    def embed(self, x: Any, name: str, vocabulary: int) -> Any:
        return layers().Embedding(vocabulary, self.dimensions, name=f"{name}_embedding")(x)

    def build(self, x: Any, name: str) -> Any:
        raise TypeError("an embedding needs the vocabulary's size: the tower builder calls embed()")

    def counted(self, shape: Shape, vocabulary: int) -> Count:
        """What :meth:`embed` makes of token ids of ``shape``."""
        return Count(vocabulary * self.dimensions, (*shape, self.dimensions))


@register("bag_of_tokens_32", dimensions=32)
@register("bag_of_tokens_64", dimensions=64)
@register("bag_of_tokens_128", dimensions=128)
class TokenBag(TokenEmbedding):
    """A learned vector of ``dimensions`` per token id, averaged over the text's tokens (padding left out): the
    text as one vector, in no order. Averaging over every position instead (an embedding, then
    ``global_avg_pool1d``) dilutes a short text with padding."""

    keeps_order = False

    def embed(self, x: Any, name: str, vocabulary: int) -> Any:
        from blocks.token_mean import TokenMean

        vectors = super().embed(x, name, vocabulary)
        return TokenMean(name=f"{name}_mean")([vectors, x])

    def counted(self, shape: Shape, vocabulary: int) -> Count:
        return Count(vocabulary * self.dimensions, (self.dimensions,))
