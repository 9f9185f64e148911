"""`optune report`: PNG charts and a Markdown summary of one or more run directories."""
