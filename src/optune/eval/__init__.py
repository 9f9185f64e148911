"""Evaluation the way the paper does it: pairwise judges, the Win Score, prompt-set readers, exports.

Light to import: heavy parts (transformers generation, lm-eval) live in modules imported on use.
"""

from optune.eval.pairwise import combine_orders, win_score

__all__ = ["combine_orders", "win_score"]
