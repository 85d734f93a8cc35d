"""`gmv eval lds` and `gmv eval remove`: do the values predict what retraining does?
Thin: options in, one call of `gmv_store.eval.counterfactual`, the result out."""
from __future__ import annotations

import json
import math
from typing import Any

import click

from .options import F, errors_to_lines, note, output_options, print_rows, store_option


def _clean(v: Any) -> Any:
    """JSON without NaN (not valid JSON): undefined numbers become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _common(f: F) -> F:
    f = click.option("--cache", default=None, type=click.Path(file_okay=False),
                     help="Where fit results are kept, so a re-run or another k of the same generated images reuses "
                          "them [default: $GMV_CACHE/counterfactual or ~/.cache/gmv-store/counterfactual].")(f)
    f = click.option("--no-cache", is_flag=True, help="Refit everything; keep nothing.")(f)
    f = click.option("--workers", type=click.IntRange(1, 64), default=None,
                     help="Fit processes [default: 2, or the CPU count if lower].")(f)
    f = click.option("--quick", is_flag=True,
                     help="The generator kind's small hyper-parameters and few fits: checks the pipeline, not the numbers.")(f)
    return f


def _emit(result: dict[str, Any], rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(_clean(result), indent=2))
    else:
        print_rows(rows, fmt)


@click.command("lds")
@store_option
@click.option("--set", "set_name", required=True, help="A set valued from a generator the project trained.")
@click.option("--subsets", type=click.IntRange(3), default=None, help="Random training subsets, one fit each [32; 8 with --quick].")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="Share of the training images in each subset.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subsets and the random baseline.")
@_common
@output_options
@errors_to_lines
def lds_cmd(store: str | None, set_name: str, subsets: int | None, fraction: float, seed: int, cache: str | None,
            no_cache: bool, workers: int | None, quick: bool, fmt: str) -> None:
    """Linear datamodeling score: refit the set's generator on random subsets of its training
    data; for each generated image, the Spearman correlation over the subsets between the sum
    of its credits over the subset and its log-likelihood under the subset's model (exact for
    the mixture, the ELBO for the VAE); the mean over images, with a bootstrap 95% interval.
    Baselines in the same run: random scores, no quality weighting, no re-rank.

    \b
    Examples:
      gmv eval lds --set demo-gmm-k50
      gmv eval lds --set demo-gmm-k50 --subsets 64 --json
      gmv eval lds --set demo-gmm-k50 --quick          # a pipeline check in seconds
    """
    from ..eval.counterfactual import lds

    r = lds(store, set_name, subsets=subsets or (8 if quick else 32), fraction=fraction, seed=seed, quick=quick,
            workers=workers, cache=cache, use_cache=not no_cache, note=note)
    rows = [{"scores": name, "lds": r["lds"] if key is None else r["baselines"][key],
             "ci_low": (r["lds_ci"] if key is None else r["baselines_ci"][key])[0],
             "ci_high": (r["lds_ci"] if key is None else r["baselines_ci"][key])[1],
             "set_level": r["set_level"]["lds"] if key is None else r["set_level"]["baselines"][key]}
            for name, key in (("credits (GMValuator)", None), ("random", "random"),
                              ("no quality weighting", "no_quality"), ("no re-rank", "no_rerank"))]
    if fmt == "table":
        note(f"{r['generator']} generator, {r['likelihood']}; {r['subsets']} fits on {r['fraction']:.0%} of "
             f"{r['n_train']:,} training images; m = {r['m']}, k = {r['k']}; {r['seconds']:.0f}s")
    _emit(r, rows, fmt)


@click.command("remove")
@store_option
@click.option("--set", "set_name", required=True, help="A set valued from a generator the project trained.")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Share of the training images removed.")
@click.option("--seeds", type=click.IntRange(1), default=None, help="Random removals compared with [5; 2 with --quick].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random removals and of ties.")
@_common
@output_options
@errors_to_lines
def remove_cmd(store: str | None, set_name: str, fraction: float, seeds: int | None, seed: int, cache: str | None,
               no_cache: bool, workers: int | None, quick: bool, fmt: str) -> None:
    """Remove-and-retrain: refit the set's generator without its top-valued training images,
    and without as many chosen at random (several seeds); the mean drop in the generated
    images' log-likelihood against the fit on all of them, with a paired one-sided test
    (top drop > random drop; t-test p_value, Wilcoxon p_wilcoxon).

    \b
    Examples:
      gmv eval remove --set demo-gmm-k50
      gmv eval remove --set demo-gmm-k50 --fraction 0.1 --seeds 10 --json
    """
    from ..eval.counterfactual import remove

    r = remove(store, set_name, fraction=fraction, seeds=seeds or (2 if quick else 5), seed=seed, quick=quick,
               workers=workers, cache=cache, use_cache=not no_cache, note=note)
    rows = [{"removed": r["removed"], "drop_top": r["drop_top"], "drop_random": r["drop_random"],
             "p_value": r["p_value"], "p_wilcoxon": r["p_wilcoxon"], "removed_credited": r["removed_credited"],
             "value_share_removed": r["value_share_removed"]}]
    if fmt == "table":
        note(f"{r['generator']} generator, {r['likelihood']} (nats); {r['removed']:,} of {r['n_train']:,} removed, "
             f"{r['seeds']} random draws; m = {r['m']}, k = {r['k']}; {r['seconds']:.0f}s")
    _emit(r, rows, fmt)
