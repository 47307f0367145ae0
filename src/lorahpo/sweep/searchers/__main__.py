"""`python -m lorahpo.sweep.searchers`: the searcher table for the docs."""

from lorahpo.sweep.searchers import markdown_table

print(markdown_table())
