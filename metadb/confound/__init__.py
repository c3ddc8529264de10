"""Shortcut robustness of sources ("Source Matters", Juodelyte et al., arXiv 2403.04484).

    transforms.py  the study's image confounders (tag, lowpass, noise), as fractions of the image side
    variant.py     a confounded variant: which images carry the confounder, in which split; read-time alteration
    study.py       plan and run source x rate x fold trials through the fine-tuning runner; store outcomes
"""
