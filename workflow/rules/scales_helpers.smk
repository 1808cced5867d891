# Helpers of the model-scale sweep (functions only; the modules and rules are in
# scales.smk): each scale's validated config, paths of a scale, the sweep's targets.

from effopd.config import scale_configs

SCALE_CONFIGS = scale_configs(
    config, source=" + ".join(map(str, workflow.configfiles)) or "snakemake config"
)
SCALE_NAMES = list(SCALE_CONFIGS)
SCALE_TEACHER = f"{ARTIFACTS}/{SCALE_NAMES[0]}/models/teacher"


def scale_results(scale, path):
    """A path under a scale's results/<experiment>/<scale>/."""
    return f"{RESULTS}/{scale}/{path}"


def scale_teacher_input(scale):
    """fetch_model's input in a scale: the first scale's built teacher, which the other
    scales copy (the first scale fetches nothing)."""
    return [] if scale == SCALE_NAMES[0] else [SCALE_TEACHER]


def scale_rule_inputs(rule_name):
    """The inputs of one rule (all or figures) of every scale module, in scale order."""
    return [
        str(f)
        for scale in SCALE_NAMES
        for f in getattr(rules, f"scale_{scale}_{rule_name}").input
    ]


def cross_scale_targets():
    """The cross-scale table (CSV and Markdown) and figure."""
    return [
        f"{RESULTS}/tables/cross_scale.csv",
        f"{RESULTS}/tables/cross_scale.md",
        f"{FIGURES}/cross_scale.png",
    ]
