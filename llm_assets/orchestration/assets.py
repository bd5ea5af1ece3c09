"""The five assets, in pipeline order: raw_books -> corpus -> tokenizer -> tokenized_dataset -> trained_model."""

from llm_assets.orchestration.data_assets import (
    RawBooksConfig,
    TokenizedDatasetConfig,
    TokenizerConfig,
    corpus,
    raw_books,
    tokenized_dataset,
    tokenizer,
)
from llm_assets.orchestration.training_asset import TrainedModelConfig, trained_model

all_assets = [raw_books, corpus, tokenizer, tokenized_dataset, trained_model]

# Each configurable asset's config class, by op name. Automation validates data/run_config.yaml with
# them before asking for a run: Dagster's config schema checks keys and types, these check values
# (an unknown preset would otherwise fail the run hours later, in training).
config_classes = {
    "raw_books": RawBooksConfig,
    "tokenizer": TokenizerConfig,
    "tokenized_dataset": TokenizedDatasetConfig,
    "trained_model": TrainedModelConfig,
}

__all__ = ["all_assets", "config_classes", "corpus", "raw_books", "tokenized_dataset", "tokenizer", "trained_model"]
