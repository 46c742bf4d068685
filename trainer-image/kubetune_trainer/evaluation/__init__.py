"""Evaluation: loss/perplexity, text-overlap metrics, domain metrics and comparisons.

Pure metric functions live in `text_metrics` and `domain`; `generation` runs a model;
`runner` puts them together for `kubetune eval`; `compare` renders A-vs-B reports.
Importing this package does not import torch.
"""
