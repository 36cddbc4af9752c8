"""Eval outputs: ``results.json`` with provenance, the curves PNG and ``report.md``.

The report leads with one headline table over every benchmark, then a section per benchmark with
every strategy, and says in words where the frontier router loses (a paired 95% interval of the
utility difference entirely below zero), where it ties, and where it wins.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict

from flowfront.artifacts import Artifact, Provenance, package_versions
from flowfront.errors import FlowfrontError
from flowfront.eval.plots import plot_curves
from flowfront.eval.summary import RESULTS_SCHEMA

__all__ = [
    "EvalResults",
    "environment",
    "headline",
    "plot_curves",
    "refresh_report",
    "write_report",
    "write_results",
]

log = logging.getLogger(__name__)

ROUTER = "frontier"
KEY_STRATEGIES = ("frontier", "frontier-progressive", "frontier-hinted", "frontier-prior", "per-task",
                  "full-space", "static", "knn", "cluster", "best-single", "oracle")
# The bar the frontier router must clear (issue #14): never significantly below these.
FIELD = ("cluster", "frontier-prior")
_PACKAGES = ("flowfront", "numpy", "scipy", "lightgbm", "scikit-learn", "sentence-transformers", "matplotlib")


def _source_tree() -> Path:
    """The folder flowfront's code runs from: a git checkout, or site-packages for a wheel."""
    return Path(__file__).resolve().parent.parent


def _git_commit() -> tuple[str | None, bool | None]:
    """HEAD's commit and whether the tree has local changes; (None, None) outside a git checkout."""
    if not (_source_tree() / ".git").exists():  # an installed wheel (site-packages may sit in a checkout)
        return os.environ.get("FLOWFRONT_GIT_COMMIT"), None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_source_tree(),
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_source_tree(),
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("FLOWFRONT_GIT_COMMIT"), None  # e.g. an installed wheel: let CI say
    return head, dirty


def environment() -> dict[str, Any]:
    """Git commit and platform of this run."""
    commit, dirty = _git_commit()
    return {"python": platform.python_version(), "platform": platform.platform(), "git_commit": commit,
            "git_dirty": dirty}


class EvalResults(Artifact):
    """``results.json``. Its body is the summary documented in docs/eval.md (built by
    ``eval.summary``), kept as extra keys; ``provenance.data_hash`` is the frontier's hash."""

    model_config = ConfigDict(extra="allow", frozen=True)
    ERROR = FlowfrontError
    REBUILD = "re-run `flowfront eval`"
    kind: Literal["eval"] = "eval"
    schema_version: Literal[2] = RESULTS_SCHEMA
    benchmark: str


def write_results(result: dict, folder: Path) -> Path:
    """``folder/results.json``: the result with its provenance completed, written atomically and
    checksummed. ``result`` is not modified."""
    base = result["provenance"]
    stamped = Provenance(workflow_hash=base["workflow_hash"], data_hash=base["data_hash"],
                         packages=package_versions(_PACKAGES), environment=environment())
    return EvalResults.model_validate({**result, "provenance": stamped}).save(Path(folder) / "results.json")


# --- formatting -------------------------------------------------------------------------------


def _f(x: float | None, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _iv(iv: dict | None, nd: int = 3, sign: bool = False) -> str:
    if iv is None or iv.get("mean") is None:
        return "—"
    fmt = f"{{:+.{nd}f}}" if sign else f"{{:.{nd}f}}"
    return f"{fmt.format(iv['mean'])} [{fmt.format(iv['low'])}, {fmt.format(iv['high'])}]"


def _ratio(m: dict | None, key: str = "at_baseline_best") -> str:
    if m is None or m.get("targets", 0) == 0:
        return "—"
    value = m.get(key)
    return "never reaches" if value is None else f"{value:.2f}×"


def _verdict(iv: dict) -> str:
    if iv["high"] < 0:
        return "loses"
    return "wins" if iv["low"] > 0 else "ties"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


# --- sections ---------------------------------------------------------------------------------


def headline(res: dict) -> dict[str, str]:
    """The few numbers ``flowfront run`` prints per benchmark, formatted like the report's."""
    st = res["strategies"]

    def eu(name: str) -> str:
        return _iv(st[name]["expected_utility"]) if name in st else "—"

    minus = st.get("frontier", {}).get("compare", {}).get("expected_utility_minus", {}).get("static")
    return {"router_eu": eu("frontier"), "static_eu": eu("static"), "full_space_eu": eu("full-space"),
            "router_minus_static": _iv(minus, sign=True)}


def _headline(results: list[dict]) -> list[str]:
    rows = []
    for res in results:
        for name in (n for n in KEY_STRATEGIES if n in res["strategies"]):
            st = res["strategies"][name]
            cmp = st["compare"]
            minus_static = cmp["expected_utility_minus"].get("static")
            rows.append([res["benchmark"], name, _iv(st["expected_utility"]),
                         "—" if name == "static" else _iv(minus_static, sign=True),
                         _ratio(cmp["speedup_vs_best-single"]), _ratio(cmp["speedup_vs_static"], "max")])
    header = ["benchmark", "strategy", "expected utility over λ (95% CI)", "minus static (95% CI)",
              "speed-up at best-single's accuracy", "best speed-up vs static at matched accuracy"]
    return ["## Headline", "", *_table(header, rows), ""]


def _strategy_rows(res: dict) -> list[list[str]]:
    rows = []
    for name, st in res["strategies"].items():
        cmp, dec = st["compare"], st["decision_latency"]
        gap = cmp["gap_to_oracle"].get("oracle", {}).get("expected_utility")
        rows.append([
            name, st["candidates"], str(st["runs"]), _iv(st["expected_utility"]),
            _iv(cmp["expected_utility_minus"].get("static"), sign=True), _iv(gap),
            _f(st["lambda_sweep"][0]["accuracy"]["mean"]), _f(st["hypervolume"]["latency"]["mean"]),
            _f(st["hypervolume"]["cost"]["mean"]), _ratio(cmp["speedup_vs_best-single"]),
            _ratio(cmp["speedup_vs_static"], "max"), _ratio(cmp["cost_down_vs_static"], "max"),
            _f(st["fit_seconds"]["mean"], 2), "—" if dec is None else _f(dec["p50_ms"], 2),
        ])
    return rows


def _budget_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    header = ["strategy"] + [f"≤ {b:.2f} s" for b in res["latency_budgets_s"]]
    rows = []
    for name, st in res["strategies"].items():
        cells = [
            f"{_f(b['accuracy']['mean'])} ({b['over_budget_share'] * 100:.0f}% over)" for b in st["budgets"]
        ]
        rows.append([name, *cells])
    return header, rows


def _losses(res: dict) -> list[str]:
    """Plain sentences on where the frontier router loses, ties and wins."""
    if ROUTER not in res["strategies"]:
        return ["The frontier router was not evaluated on this benchmark."]
    st = res["strategies"][ROUTER]
    groups: dict[str, list[str]] = {"loses": [], "ties": [], "wins": []}
    for other, iv in st["compare"]["expected_utility_minus"].items():
        if not res["strategies"][other]["fitted_on"].startswith("test"):
            groups[_verdict(iv)].append(f"{other} ({_iv(iv, sign=True)})")
    out = []
    if groups["loses"]:
        out.append(f"**The frontier router loses** on expected utility to: {', '.join(groups['loses'])}.")
    if groups["ties"]:
        out.append(f"No significant difference (interval includes 0) from: {', '.join(groups['ties'])}.")
    if groups["wins"]:
        out.append(f"It beats: {', '.join(groups['wins'])}.")
    out += _budget_losses(res)
    if st["compare"]["speedup_vs_best-single"]["at_baseline_best"] is None:
        out.append("It never reaches the best single configuration's accuracy on the λ sweep, so it has no "
                   "speed-up at that accuracy.")
    return out


def _budget_losses(res: dict) -> list[str]:
    if "static" not in res["strategies"]:
        return []
    mine, static = res["strategies"][ROUTER]["budgets"], res["strategies"]["static"]["budgets"]
    worse = [f"{a['max_latency_s']:.2f} s ({_f(a['accuracy']['mean'])} vs {_f(b['accuracy']['mean'])})"
             for a, b in zip(mine, static, strict=True) if a["accuracy"]["mean"] < b["accuracy"]["mean"]]
    if not worse:
        return ["Under every latency budget its accuracy is at least static selection's (by constraint)."]
    return [
        "Under latency budgets it is less accurate than static selection by constraint at: "
        f"{', '.join(worse)}."
    ]


def _latency_sentence(res: dict) -> str:
    if res["latency_source"] == "modeled":
        return (
            "Latency: every latency here is **modeled** from configs/models/*.yaml (time to first token + "
            "prompt tokens / prefill rate + output tokens / decode rate); none is recorded, because "
            f"{res['data_source']} records no latencies. Execution model: {res['execution']}."
        )
    return (f"Latency: {res['latency_source']} (per call, from the data source {res['data_source']}). "
            f"Execution model: {res['execution']}.")


def _link(target: Path, report_dir: Path, text: str, missing: str) -> str:
    if not target.is_file():
        return missing
    return f"[{text}]({os.path.relpath(target, report_dir)})"


def _section(res: dict, report_dir: Path) -> list[str]:
    folder = Path(res.get("artifacts_dir", "."))
    sets = res["candidate_sets"]
    sample = (f", full-space sample of {sets['sample']} configurations (seed {sets['sample_seed']})"
              if sets["sample"] else "")
    lines = [f"## {res['benchmark']}", "",
             f"{res['split']['test_queries']} test queries, {res['split']['train_queries']} train queries; "
             f"{sets['frontier']} frontier candidates{sample}; seeds {res['seeds']}; "
             f"{len(res['lambdas'])} λ values from {res['lambdas'][0]:.3g} to {res['lambdas'][-1]:.3g}.", "",
             _latency_sentence(res), "", *_losses(res), ""]
    header = ["strategy", "candidates", "runs", "EU over λ (95% CI)", "minus static", "gap to oracle",
              "accuracy at λ=0", "HV latency", "HV cost", "speed-up at best-single's acc.",
              "max speed-up vs static", "max cost-down vs static", "fit s", "decision p50 ms"]
    lines += [*_table(header, _strategy_rows(res)), ""]
    bh, br = _budget_rows(res)
    lines += ["Accuracy under each latency budget (hard `max_latency_s`; share of queries whose realised "
              "latency exceeded it):", "", *_table(bh, br), ""]
    ref = res["hypervolume_reference"]
    lines += [f"Hypervolume: normalised axes (the frontier's latency / cost range maps to [0, 1]), "
              f"reference point accuracy {ref['accuracy']}, normalised x {ref['normalised_x']} "
              f"(= {ref['latency_s']:.3g} s, ${ref['cost_usd']:.3g}). Decision latency is predict + select "
              "on one feature row; the embedding is timed by the router benchmark.", "",
              "Plots: " + _link(folder / "eval" / "curves.png", report_dir,
                                "accuracy–latency and accuracy–cost curves", "curves not written") + "; " +
              _link(folder / "validation.png", report_dir, "proxy vs measured (validate)",
                    "proxy-vs-measured scatter not found (run `flowfront validate`)") + ".", ""]
    return lines


def _flowcompile(results: list[dict]) -> list[str]:
    """Where the frontier router stands against FlowCompile's claim: speed-ups at matched accuracy."""
    parts = []
    for res in results:
        st = res["strategies"].get(ROUTER)
        if st is None:
            continue
        cmp = st["compare"]
        refs = [k.removeprefix("speedup_vs_") for k in cmp if k.startswith("speedup_vs_")]
        vs = ", ".join(
            f"{ref} {_ratio(cmp[f'speedup_vs_{ref}'])} ({_ratio(cmp[f'speedup_vs_{ref}'], 'max')} max)"
            for ref in refs
        )
        parts.append(
            f"**{res['benchmark']}** ({res['latency_source']} latency, {res['execution']} execution): {vs}"
        )
    if not parts:
        return []
    return [
        "FlowCompile reports speed-ups of up to 6.4× at matched accuracy against routing baselines. "
        "The frontier router's speed-up at each baseline's best accuracy (and the largest over the "
        'accuracies that baseline reaches; "never reaches" when the router\'s curve does not get there):',
        "",
        *[f"- {p}" for p in parts],
        "",
    ]


def _field(results: list[dict]) -> list[str]:
    """The frontier router against the field's simple routers and its own prior, with a verdict."""
    rows, short, ahead = [], [], []
    for res in results:
        st = res["strategies"]
        if ROUTER not in st:
            continue
        minus = st[ROUTER]["compare"]["expected_utility_minus"]
        hinted = st.get("frontier-hinted", {}).get("compare", {}).get("expected_utility_minus", {})
        cells = [_iv(minus.get(o), sign=True) for o in (*FIELD, "static")]
        rows.append(
            [
                res["benchmark"],
                *cells,
                _iv(hinted.get(ROUTER), sign=True),
                _iv(hinted.get("static"), sign=True),
                _iv(hinted.get("per-task"), sign=True),
            ]
        )
        short += [f"{res['benchmark']} vs {o}" for o in FIELD if o in minus and minus[o]["high"] < 0]
        for label, iv in (
            (res["benchmark"], minus.get("static")),
            (f"{res['benchmark']} (hinted)", hinted.get("static")),
        ):
            if iv is not None and iv["low"] > 0:
                ahead.append(label)
    if not rows:
        return []
    header = ["benchmark", "router − cluster", "router − own prior", "router − static", "hinted − router",
              "hinted − static", "hinted − per-task"]
    verdict = (f"**Significantly below** a simple router on: {', '.join(short)}." if short else
               "The frontier router is never significantly below the cluster router or its own prior "
               "(every interval's upper end is ≥ 0).")
    verdict += (f" Its interval against static lies above 0 on: {', '.join(ahead)}." if ahead else
                " Its interval against static lies above 0 on no benchmark.")
    return [
        "## Against the field's simple routers",
        "",
        "Paired differences in expected utility (95% CI). *cluster* is the Avengers-Pro-style router; *own "
        "prior* is the frontier router's group prior without boosting; *hinted* is the frontier router "
        "given each test query's task label as the caller's hint, *per-task* the per-task best selection "
        "given the same label (the prior's shrunk task means; both only where the data labels tasks).",
        "",
        *_table(header, rows),
        "",
        verdict,
        "",
    ]


def _progressive(results: list[dict]) -> list[str]:
    """Progressive routing against the upfront router it starts from, per benchmark, with why each
    checkpoint router is used or not and what perfect switching could add at most."""
    rows, notes = [], []
    for res in results:
        st = res["strategies"]
        pg = st.get("frontier-progressive")
        if pg is None or ROUTER not in st:
            continue
        minus = pg["compare"]["expected_utility_minus"].get(ROUTER)
        ceiling = pg.get("switch_ceiling") or {}
        used = [cid for cid, c in (pg.get("checkpoints") or {}).items() if c.get("adopted")]
        rows.append([
            res["benchmark"], _iv(minus, sign=True), _verdict(minus) if minus else "—",
            "—" if pg.get("switch_share") is None else f"{100 * pg['switch_share']:.1f}%",
            (f"{ceiling['gain_over_upfront']:+.4f} ± {ceiling['se']:.4f}" if ceiling else "—"),
            _ratio(st[ROUTER]["compare"]["speedup_vs_static"]), _ratio(pg["compare"]["speedup_vs_static"]),
            ", ".join(used) or ("none" if pg.get("checkpoints") else "— (the workflow has none)"),
        ])
        for cid, c in (pg.get("checkpoints") or {}).items():
            gain, se = c.get("cv_gain_over_upfront", 0.0), c.get("cv_se", 0.0)
            state = "used" if c.get("adopted") else "not used"
            notes.append(
                f"- {res['benchmark']} `{cid}`: {state}; cross-validated "
                f"gain over the upfront choice {gain:+.4f} ± {se:.4f} (SE), perfect switching on the train "
                f"split {c.get('ceiling_gain_over_upfront', 0.0):+.4f}.")
    if not rows:
        return []
    header = ["benchmark", "progressive − router (95% CI)", "verdict", "decisions that switched",
              "perfect switching − router (test, ± SE)", "router speed-up at static's best accuracy",
              "progressive speed-up at static's best accuracy", "checkpoints used"]
    return [
        "## Progressive routing",
        "",
        "*frontier-progressive* starts from the frontier router's choice and may re-decide at the workflow's "
        "checkpoints among the frontier candidates compatible with the calls already made. A checkpoint "
        "router is used only where, cross-validated on the train split, it beats keeping the upfront choice "
        "by more than one standard error; elsewhere the upfront choice stands. *Perfect switching* picks, "
        "at every checkpoint, the compatible candidate the test outcomes favour: no checkpoint router can "
        "add more on this frontier.",
        "",
        *_table(header, rows),
        "",
        *notes,
        "",
    ]


def write_report(results: list[dict], path: Path, *, extra_sections: Mapping[str, str] | None = None) -> Path:
    """``report.md``: headline table, one section per benchmark, then ``extra_sections``
    (title → markdown)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# flowfront evaluation",
        "",
        "Every strategy is fitted on the train split only and evaluated on the same held-out test queries; "
        "intervals are 95% paired bootstrap intervals over test queries. The MasRouter-style and MaAS-style "
        "baselines are trained offline from the outcome tables (rewards looked up in the train outcome "
        "matrix, no live LLM calls), unlike their papers. The oracle is an upper bound fitted on the test "
        "outcomes, not a deployable router.",
        "",
        *_headline(results),
        *_field(results),
        *_progressive(results),
        *_flowcompile(results),
    ]
    for res in results:
        lines += _section(res, path.parent)
    for title, body in (extra_sections or {}).items():
        lines += [f"## {title}", "", body.rstrip(), ""]
    path.write_text("\n".join(lines))
    return path


def refresh_report(workdir: Path, first: Sequence[str] = ()) -> Path:
    """``report.md`` from every benchmark's ``eval/results.json`` under ``workdir`` (the names in
    ``first`` lead, in that order): a run or an ``eval`` of one benchmark rewrites the report
    without dropping the others' results. Files that are not eval results are left out."""
    workdir = Path(workdir)
    results = []
    for path in sorted(workdir.glob("*/eval/results.json")):
        try:
            results.append(EvalResults.load(path).model_dump(mode="json"))
        except FlowfrontError as exc:  # an older schema or an edited file: say so, report the rest
            log.warning("report.md leaves out %s: %s", path.parent.parent.name, exc)
    order = {name: i for i, name in enumerate(first)}
    results.sort(key=lambda r: (order.get(r["benchmark"], len(order)), r["benchmark"]))
    return write_report(results, workdir / "report.md")
