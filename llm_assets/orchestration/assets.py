"""The five assets, in pipeline order: raw_books -> corpus -> tokenizer -> tokenized_dataset -> trained_model."""

from llm_assets.orchestration.data_assets import (
    corpus,
    raw_books,
    tokenized_dataset,
    tokenizer,
)
from llm_assets.orchestration.training_asset import trained_model

all_assets = [raw_books, corpus, tokenizer, tokenized_dataset, trained_model]

__all__ = ["all_assets", "corpus", "raw_books", "tokenized_dataset", "tokenizer", "trained_model"]
