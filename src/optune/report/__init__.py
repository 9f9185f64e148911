"""What a finished run gives back: `optune report` (PNG charts and a Markdown summary of one or more run
directories), the model card, and `optune export` (a run's preference pairs in TRL's format: `export`).

`runs` reads run directories through the store's named paths (tolerant of runs still in progress) and
derives the report's numbers: reward per iteration, held-out curve, gain shares of the bottom and top
halves; `plots` draws them; `summary` writes the Markdown table.
"""
