"""The Markdown report of a recipe run, rendered from its results (results.json)."""
from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .metrics import fmt_p
from .paper import paper_rho


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("" if c is None else str(c) for c in row) + " |")
    return "\n".join(lines)


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def paper_c1(generator: str, rerank: str, ks: Sequence[int]) -> str:
    found = [paper_rho(generator, rerank, k) for k in ks]
    sources = {f[1] for f in found if f}
    if not sources:
        return "–"
    if len({f[0] for f in found if f}) == 1 and "k not stated" in next(iter(sources)):
        return f"{next(f for f in found if f)[0]:.2f} ({next(iter(sources))})"
    return " / ".join(f"{f[0]:.2f}" if f else "–" for f in found) + f" ({next(iter(sources))})"


def c1_table(res: dict[str, Any]) -> str:
    """Every C1 row: generator x pool x recall x re-rank, rho at each k, the paper beside."""
    cfg = res["config"]
    ks = cfg["ks"]
    acc = res.get("sample_accuracy", {})
    rows = [[c["generator"], f"{c['pool']} ({c['n_train']:,})", c["recall"], c["rerank"],
             *[pct(c[f"rho@{k}"]) for k in ks], paper_c1(c["generator"], c["rerank"], ks),
             pct(acc[c["generator"]]) if c["generator"] in acc else "n/a"] for c in res.get("c1", [])]
    return md_table(["generator", "training pool", "recall", "re-rank", *[f"ρ@{k}" for k in ks],
                     "paper ρ@" + "/".join(map(str, ks)), "sample acc. %"], rows)


def _paper_at(generator: str, rerank: str, k: int) -> str:
    found = paper_rho(generator, rerank, k)
    if found is None:
        return "–"
    return f"{found[0]:.2f}" + ("*" if "k not stated" in found[1] else "")


def headline_tables(res: dict[str, Any]) -> str:
    """The compact tables meant for the README."""
    cfg = res["config"]
    ks = cfg["ks"]
    k_head = 50 if 50 in ks else ks[len(ks) // 2]
    acc = res.get("sample_accuracy", {})
    out = []
    stores = list(dict.fromkeys((c["pool"], c["n_train"], c["recall"], c["rerank"]) for c in res.get("c1", [])))
    by = {(c["generator"], c["pool"], c["recall"], c["rerank"]): c for c in res.get("c1", [])}
    gens = list(dict.fromkeys(c["generator"] for c in res.get("c1", [])))

    def head(pool: str, n: int, rec: str, rr: str) -> str:
        rr_s = f"emb({cfg['embedding_rerank'].replace('-lite0', '')})" if rr == "embedding" else rr
        return f"{rec.replace('-lite0', '')} / {rr_s} ({n // 1000}k)"

    rows = []
    for g in gens:
        rows.append([g, pct(acc[g]) if g in acc else "n/a",
                     *[pct(by[(g, p, rec, rr)][f"rho@{k_head}"]) if (g, p, rec, rr) in by else "" for p, _, rec, rr in stores],
                     " / ".join(_paper_at(g, rr, k_head) for rr in ("none", "l2", "embedding"))])
    out.append(f"**C1 identical-class ratio ρ@{k_head} (%)** per generator and recall / re-rank (training pool size), "
               f"m = {cfg['m']}, N = {cfg['recall_factor'] * cfg['k_max']}; paper = Table 7 (GAN, diffusion) or "
               "Table 9* (β-VAE, k not stated), CLIP recall, re-rank none / l2 / DreamSim. All k: report.md.\n")
    out.append(md_table(["generator", "sample acc. %", *[head(*s_) for s_ in stores], "paper none / l2 / DreamSim"], rows))
    if res.get("ood"):
        out.append(f"\n**C3 out-of-distribution** ({cfg['ood_fraction']:.0%} foreign images in the training set, "
                   f"m = {cfg['ood_m']}, k = {cfg['ood_k']}): ROC AUC of \"low value ⇒ foreign\"\n")
        by_source: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for o in res["ood"]:
            by_source.setdefault((o["generator"], o["source"]), {})[o["quality"]] = o
        quals = [q for q in cfg["ood_qualities"] if q != "none"]

        def auc(d: dict[str, dict[str, Any]], q: str) -> str:
            return f"{d[q]['auc_low_value_is_foreign']:.3f}" if q in d else "n/a"

        def med(d: dict[str, dict[str, Any]], q: str) -> str:
            return f"{d[q]['median_rank_fraction_foreign']:.2f}" if q in d else "n/a"

        rows = [[g, src, auc(d, "none"), *[auc(d, q) for q in quals], " / ".join(med(d, q) for q in ["none", *quals])]
                for (g, src), d in by_source.items()]
        out.append(md_table(["generator", "foreign source", "AUC, no quality", *[f"AUC, quality {q}" for q in quals],
                             "median rank fraction of foreign (" + " / ".join(["none", *quals]) + ")"], rows))
    if res.get("membership"):
        out.append(f"\n**Trained vs held-out** ({res['data']['trained']:,} + {res['data']['heldout']:,} images, "
                   f"m = {cfg['member_m']}, k = {cfg['member_k']}; values × n, 1 = an equal share)\n")
        rows = [[m["generator"], f"{m['mean_value_trained_x_n']:.3f}", f"{m['mean_value_heldout_x_n']:.3f}",
                 f"{m['t']:.2f}", fmt_p(m["p_one_sided"]), f"{m['auc_membership']:.3f}"] for m in res["membership"]]
        out.append(md_table(["generator", "mean value trained", "mean value held-out", "t (Welch)", "p (one-sided)",
                             "membership AUC"], rows))
    if res.get("two_stage_recall") or res.get("hnsw_recall"):
        out.append("\n**Recall quality** (recall@k against exact search)\n")
        rows = [[t["label"], "two-stage: recall N then re-rank vs exact re-rank top-k", t["recall_N"], t["k"],
                 f"{t['recall_at_k']:.4f}"] for t in res.get("two_stage_recall", []) if t.get("as_valued")]
        rows += [[h["store"], (f"HNSW (m={h['m']}, ef_construct={h['ef_construct']}) vs exact, "
                               f"recall vector"), f"ef={h['hnsw_ef']}", h["k"], f"{h['recall_at_k']:.4f}"]
                 for h in res.get("hnsw_recall", [])]
        out.append(md_table(["store", "what", "N / ef", "k", "recall@k"], rows))
    if res.get("runtime"):
        out.append("\n**Runtime** per generated image (ms; 2 shared CPU cores, no GPU)\n")
        rows = []
        for t in res["runtime"]:
            v = t["value"]
            rows.append([t["label"], f"{v['forwards_ms']:.1f}", f"{v['search_ms']:.1f}", f"{v['scoring_ms']:.2f}",
                         f"{v['write_ms']:.1f}", f"{v['other_ms']:.1f}", f"{v['ms_per_image']:.1f}",
                         f"{v['total_s']:.1f} s / {v['generated']}", f"{t['ingest']['ms_per_image']:.2f}"])
        out.append(md_table(["store (pool · recall / re-rank)", "forwards", "search", "scoring", "ledger writes",
                             "other", "total", "whole sets", "ingest ms/training image"], rows))
    return "\n".join(out) + "\n"


def write_report(res: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    cfg = res["config"]
    parts = [f"# GMValuator evaluation on MNIST{' (quick: pipeline check, numbers not meaningful)' if cfg['quick'] else ''}\n",
             f"Generated {res.get('finished_at') or datetime.now(timezone.utc).isoformat(timespec='seconds')} by `gmv eval recipe"
             f"{' --quick' if cfg['quick'] else ''}` on {platform.machine()} with {os.cpu_count()} CPU cores; "
             f"total {res.get('total_seconds', 0):.0f} s. Stage times (s): "
             + ", ".join(f"{k} {v:.0f}" for k, v in res.get("stage_seconds", {}).items()) + ".\n"]
    if res.get("generators_skipped"):
        parts.append("Generators not run: " + "; ".join(f"{g} ({why})" for g, why in res["generators_skipped"].items())
                     + "\n")
    parts.append("## Headline\n")
    parts.append(headline_tables(res))

    parts.append("\n## Generators\n")
    clf = res.get("classifier", {})
    if "test_accuracy" in clf:
        parts.append(f"Sample accuracy = share of generated images that a CNN trained on the {clf['n_train']:,} "
                     f"training images (accuracy {100 * clf['test_accuracy']:.2f}% on MNIST test) assigns to the "
                     f"class they were generated for ({cfg['m'] + cfg['sens_pool']} samples per generator).\n")
    elif clf.get("error"):
        parts.append(f"Sample accuracy not measured: {clf['error']}.\n")
    rows = [[t["generator"], t["role"], f"{t['n_train']:,}", "yes" if t["cached"] else "no", t["train_s"], t["wall_s"]]
            for t in res.get("generator_training", [])]
    parts.append(md_table(["generator", "used for", "training images", "from cache", "training s (when trained)",
                           "wall s (this run)"], rows))
    if res.get("member_sample_accuracy"):
        parts.append("\nSample accuracy of the generators trained on the trained half only: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in res["member_sample_accuracy"].items()) + ".\n")
    if res.get("ood_sample_accuracy"):
        parts.append("\nSample accuracy of the generators trained with foreign images: " + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in res["ood_sample_accuracy"].items()) + ".\n")

    parts.append("\n## C1 identical-class test\n")
    parts.append(c1_table(res) + "\n")
    parts.append(f"ρ for every k ≤ {cfg['k_max']} is read from one set valued at k = {cfg['k_max']} (the top-k for a "
                 f"smaller k is a prefix of it; N = {cfg['recall_factor'] * cfg['k_max']} for every k).\n")
    parts.append(f"![rho vs k]({res['plots'].get('rho_vs_k', '')})\n")
    if res.get("rho_vs_m"):
        parts.append(f"\n## Sensitivity: ρ@{cfg['sens_k']} against m (paper Fig. 7)\n")
        parts.append(f"{cfg['sens_repeats']} random subsets of m generated images, drawn without replacement from a pool "
                     f"of {cfg['sens_pool']} per generator valued in the `{res.get('sensitivity_store')}` store; "
                     "mean ± std over the repeats (%).\n")
        ms = cfg["sens_ms"]
        rows = [[g, *[f"{100 * r['rho_mean']:.2f} ± {100 * r['rho_std']:.2f}" for r in rows_]]
                for g, rows_ in res["rho_vs_m"].items()]
        parts.append(md_table(["generator", *[f"m = {m}" for m in ms]], rows))
        rows = [[g, *[pct(r["rho"]) for r in rows_]] for g, rows_ in res.get("rho_vs_k_sensitivity", {}).items()]
        if rows:
            kk = [r["k"] for r in next(iter(res["rho_vs_k_sensitivity"].values()))]
            parts.append(f"\nρ against k on the same pool ({cfg['sens_pool']} generated images):\n")
            parts.append(md_table(["generator", *[f"k = {k}" for k in kk]], rows))
        parts.append(f"\n![rho vs m]({res['plots'].get('rho_vs_m', '')})\n")

    if res.get("ood"):
        parts.append("\n## C3 out-of-distribution detection (paper Fig. 9 ablation)\n")
        parts.append(f"{cfg['ood_fraction']:.0%} of the training set are foreign images (sources: "
                     + ", ".join(cfg["ood_sources"]) + "; see docs/evaluation.md), given random class labels; "
                     "each generator is trained on the mixture, then the same generated images are valued in two stores "
                     "that differ only in the quality backend. Values × n (1 = an equal share). Rank fraction 0 = the "
                     "most valuable training image, 1 = the least.\n")
        rows = [[o["generator"], o["source"], o["quality"], f"{o['quality_mean']:.3f}",
                 f"{o['auc_low_value_is_foreign']:.3f}", f"{o['mean_value_foreign'] * o['n_training']:.3f}",
                 f"{o['mean_value_rest'] * o['n_training']:.3f}", f"{100 * o['value_share_foreign']:.2f}",
                 f"{100 * o['zero_value_foreign']:.1f} / {100 * o['zero_value_rest']:.1f}",
                 f"{o['median_rank_fraction_foreign']:.3f}", f"{100 * o['foreign_in_top_10pct']:.1f}",
                 o["best_foreign_rank"]] for o in res["ood"]]
        parts.append(md_table(["generator", "source", "quality", "mean q", "AUC low value ⇒ foreign",
                               "mean value foreign", "mean value MNIST", "value share of foreign %",
                               "uncredited % foreign / MNIST", "median rank fraction foreign", "foreign in top 10 %",
                               "best foreign rank"], rows))
        parts.append(f"\n![foreign ranks]({res['plots'].get('ood_ranks', '')})\n![ROC]({res['plots'].get('ood_roc', '')})\n")

    if res.get("membership"):
        parts.append("\n## Trained vs held-out (paper Table 6) and membership inference\n")
        parts.append(f"Each generator is trained on {res['data']['trained']:,} images (owner `trained`); "
                     f"{res['data']['heldout']:,} other images (owner `heldout`) are ingested beside them. "
                     "Welch's one-sided t-test of mean value trained > held-out over all images of each half "
                     "(uncredited images count 0), and the ROC AUC of the value as a membership score.\n")
        rows = [[m["generator"], f"{m['mean_value_trained_x_n']:.3f}", f"{m['mean_value_heldout_x_n']:.3f}",
                 f"{100 * m['credited_trained']:.1f} / {100 * m['credited_heldout']:.1f}", f"{m['t']:.2f}",
                 f"{m['dof']:.0f}", fmt_p(m["p_one_sided"]), f"{m['auc_membership']:.3f}"] for m in res["membership"]]
        parts.append(md_table(["generator", "mean value × n trained", "held-out", "credited % trained / held-out",
                               "t", "dof", "p", "AUC"], rows))
        parts.append("\nPaper (CIFAR-10, Table 6): BigGAN 1.63 vs 0.32, t = 17.9, p = 6.9e-68; diffusion 0.37 vs 0.03, "
                     "p = 8.1e-55 (its value scale differs).\n")
        parts.append(f"\n![membership ROC]({res['plots'].get('membership_roc', '')})\n")

    parts.append("\n## Recall quality\n")
    if res.get("two_stage_recall"):
        parts.append("Two-stage (recall N by the recall embedding, re-rank to k) against the exact top-k by the re-rank "
                     f"distance over all training images (numpy brute force), {cfg['recall_queries']} generated images "
                     "per store:\n")
        rows = [[t["label"], t["recall_N"], t["k"], f"{t['recall_at_k']:.4f}", f"{t['min_recall_at_k']:.2f}",
                 f"{t['ms_per_query']:.1f}", "← as valued" if t["as_valued"] else ""] for t in res["two_stage_recall"]]
        parts.append(md_table(["store", "N", "k", "recall@k", "min", "ms/query", ""], rows))
        parts.append(f"\n![recall vs N]({res['plots'].get('recall_vs_n', '')})\n")
    if res.get("hnsw_recall"):
        h0 = res["hnsw_recall"][0]
        parts.append(f"\n`{h0['store']}`'s own Qdrant HNSW index on the training recall vector "
                     f"({h0['training']:,} points, {h0.get('indexed_points', h0['training']):,} indexed, build "
                     f"{h0.get('build_s', 0.0):.1f} s) against exact search of the same vectors:\n")
        rows = [[h["hnsw_ef"], h["k"], f"{h['recall_at_k']:.4f}", f"{h['min_recall_at_k']:.2f}",
                 f"{h['ms_per_query']:.2f}", f"{h['exact_ms_per_query']:.2f}"] for h in res["hnsw_recall"]]
        parts.append(md_table(["hnsw_ef", "k", "recall@k", "min", "HNSW ms/query", "exact ms/query"], rows))

    if res.get("runtime"):
        parts.append("\n## Runtime (C4)\n")
        parts.append("Per store: ingest of the training pool once, then valuation of every set in it. Forwards = "
                     "embedder + re-rank vector + quality models; search = Qdrant recall and re-rank queries; scoring = "
                     "Eq. 6 (timed by recomputing it from the stored distances); ledger writes = generated vectors, "
                     "credits and value sums; other = decoding and de-duplication. Paper: 0.25 s per generated MNIST "
                     "image (No-Rerank, RTX 3080) against 47.9 s for VAE-TracIn.\n")
        rows = []
        for t in res["runtime"]:
            i, v = t["ingest"], t["value"]
            rows.append([t["label"], f"{i['added']:,}", f"{i['total_s']:.1f}", f"{i['embed_ms']:.2f}",
                         f"{i['write_ms']:.2f}", v["generated"], f"{v['total_s']:.2f}", f"{v['ms_per_image']:.1f}",
                         f"{v['forwards_ms']:.1f}", f"{v['search_ms']:.1f}", f"{v['scoring_ms']:.3f}",
                         f"{v['write_ms']:.1f}", f"{v['other_ms']:.1f}"])
        parts.append(md_table(["store", "ingested", "ingest s", "embed ms/img", "write ms/img", "generated valued",
                               "value s", "ms/generated", "forwards", "search", "scoring", "writes", "other"], rows))

    if res.get("grids"):
        parts.append("\n## Generated images and their top contributors (paper Fig. 6 style)\n")
        for g, f in res["grids"].items():
            parts.append(f"![{g}]({f})\n")
    parts.append("\n## Reproduce\n")
    parts.append("```\ngmv eval recipe" + (" --quick" if cfg["quick"] else "") + " --out DIR [--cache DIR]\n"
                 "gmv eval class-test --store DIR/stores/full-pixels-l2 --set c1-<generator>\n```\n"
                 "The stores stay in `stores/` for every `gmv` command (`gmv eval ...`, `gmv values`, `gmv sql`); "
                 "`results.json` holds every number above.\n")
    path.write_text("\n".join(parts))
    return path


def load_results(folder: str | Path) -> dict[str, Any]:
    """results.json of a recipe folder."""
    from gmv_store.errors import BadInput

    f = Path(folder) / "results.json"
    if not f.is_file():
        raise BadInput(f"{f}: missing; fix: pass --out a folder written by `gmv eval recipe`")
    res: dict[str, Any] = json.loads(f.read_text())
    return res
