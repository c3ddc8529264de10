"""metadb: a dataset meta-feature and similarity database for transfer learning in medical imaging."""

__version__ = "0.1.0"
