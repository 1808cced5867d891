# Helpers of the analysis rules (functions only; the rules are in analysis.smk).
# Per-run outputs go to results/<experiment>/analysis/<method>/seed<seed>/, tables to
# results/<experiment>/tables/analysis/, figures to paper_figures/<experiment>/, and the
# checkpoints the accuracy analyses build (deleted once scored) under
# artifacts/<experiment>/analysis/<method>/seed<seed>/<analysis>/.

ANALYSIS = config["analysis"]
# The intervention evaluations sample with the generation block, in analysis.eval_dtype.
ANALYSIS_GENERATION = json.dumps(
    {**config["generation"], "dtype": ANALYSIS["eval_dtype"] or config["generation"]["dtype"]},
    sort_keys=True,
)
# The early checkpoint's best alpha is chosen on this benchmark, never on the series one.
SELECTION_BENCHMARK = ANALYSIS["selection_benchmark"] or VALIDATION_BENCHMARK
# analysis.methods may name OPD's learning-rate baselines too (effopd.config.ANALYSABLE_ROLES)
ANALYSIS_METHODS = [m for m in (ANALYSIS["methods"] or METHODS)
                    if m in DECLARED and DECLARED[m].role in ANALYSABLE_ROLES]
ANALYSIS_RUNS = f"{RESULTS}/analysis"
ANALYSIS_TABLES = f"{RESULTS}/tables/analysis"
ANALYSIS_WORK = f"{ARTIFACTS}/analysis"
ANALYSIS_BENCHMARK = SPEEDUP_BENCHMARK  # the series benchmark the accuracy analyses score

# Per-run files of `effopd analyze` and `effopd evaluate-*`, and the names of the tables
# and figures: each list written once, in effopd/tables.py.
import effopd.tables

ANALYSIS_RUN_FILES = list(effopd.tables.ANALYSIS_RUN_FILES)
ANALYSIS_TABLE_NAMES = list(effopd.tables.ANALYSIS_TABLES)
ANALYSIS_FIGURE_NAMES = list(effopd.tables.ANALYSIS_FIGURES)


def input_dir(wildcards, input):
    """A params function: the directory of the rule's first input."""
    return os.path.dirname(input[0])


def analysis_run_dirs():
    """The per-run analysis directories, one per analysed (method, seed)."""
    return expand(
        f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}", method=ANALYSIS_METHODS, seed=SEEDS
    )


def analysis_run_files():
    """Every per-run analysis file of every analysed run."""
    return [f"{d}/{name}" for d in analysis_run_dirs() for name in ANALYSIS_RUN_FILES]


def analysis_eval_csvs():
    """The analysed runs' checkpoint scores on the series benchmark, in run order."""
    return expand(
        f"{RESULTS}/eval/runs/{{method}}/seed{{seed}}/{ANALYSIS_BENCHMARK}.csv",
        method=ANALYSIS_METHODS,
        seed=SEEDS,
    )


def analysis_tables():
    return expand(
        f"{ANALYSIS_TABLES}/{{name}}.{{ext}}", name=ANALYSIS_TABLE_NAMES, ext=["csv", "md"]
    )


def analysis_figures():
    return expand(
        f"{FIGURES}/{{name}}.{{ext}}", name=ANALYSIS_FIGURE_NAMES, ext=["png", "pdf"]
    )


def analysis_targets():
    """Every table and figure of the checkpoint-series analyses (none when disabled)."""
    if not ANALYSIS["enabled"] or not ANALYSIS_METHODS:
        return []
    return [*analysis_tables(), *analysis_figures()]
