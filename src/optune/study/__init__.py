"""Blind pairwise human study (the paper's Appendix D, Table 4).

`optune study create` turns two or more systems' stored responses into a SQLite study file
(prompts drawn with a seed, comparisons, per-rater assignments and personal tokens);
`optune study serve` runs the rating web page on it; `optune study results` summarises it.
The web page never sees which system wrote which response.
"""
