"""Blind evaluation of Deep-Z models and its report."""

from .evaluate import PairEvaluation, evaluate_pair, summarize
from .report import write_report

__all__ = ["PairEvaluation", "evaluate_pair", "summarize", "write_report"]
