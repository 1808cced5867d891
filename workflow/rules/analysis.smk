# Analysis rules: see analysis_helpers.smk for the helper functions.
