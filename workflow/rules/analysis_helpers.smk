# Helpers of the analysis rules (functions only; the rules are in analysis.smk).


def analysis_targets():
    """Every table and figure of the checkpoint-series analyses."""
    return []
