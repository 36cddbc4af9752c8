"""The feedback loop, simulated end to end: ``python -m bench loop`` → ``bench/results/loop.json``.

``flowfront serve`` on replay ``model-route`` (a real server, exploring with ``EXPLORE``) serves a
champion router trained without the *shifted* tasks (``SHIFTED``). A client plays two phases:

1. the training mix: queries of the other tasks in the proportions the champion was trained on
   (test-split queries; train-split ones for the four tasks the test split lacks);
2. the shifted traffic: the shifted tasks only, in equal shares. Its first half (``PHASE2A``
   requests) plays their *train*-split queries, drawn with repeats as traffic repeats (the test
   split holds only 50 queries per task, too few to split again), its second half their
   test-split queries.

Each request carries its task as the caller's hint. A grader answers ``POST /v1/feedback`` for a
share (``GRADED``) of the answers, from the recorded outcomes. After the first half of phase 2,
``retrain`` runs on the graded decisions of phase 2 with the champion's offline matrix (the
shifted tasks' train rows left out: what it knows of them it learned from the graded traffic);
its offline check leaves out the shifted test queries, which phase 2's second half evaluates
on. A promoted challenger reaches the server through the shared generation. On the second half:
the expected utility (over the lambda sweep, from the recorded outcomes) of the old champion,
the challenger, static selection and a router trained offline with full knowledge of the
shifted tasks. ``recovered_fraction`` is the share of the gap between the champion and that
informed router recovered by the router that serves after the retrain decision (0 where the
champion was kept); ``challenger_recovered_fraction`` is the challenger's, promoted or not. The
off-policy estimate of the challenger made before promotion is checked against the value its
choices then realise on the second half (the served requests' own preferences, from the
recorded outcomes).
Drift: the task-mix measure over each phase's decisions (the service's own code).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import PROJECT_ROOT, stop_process, write_result
from bench.service import _free_port, _wait_ready
from flowfront.settings import Settings

BENCHMARK = "model-route"
SHIFTED = ("agentverse-logicgrid", "human_eval", "commongen")
SEEDS = tuple(range(int(os.environ.get("FLOWFRONT_BENCH_LOOP_SEEDS", "3"))))
EXPLORE = 0.5
GRADED = 1.0
PHASE1 = 600
PHASE2A = 900  # phase 2's first half: shifted-task train queries, drawn with repeats (as traffic repeats)


def _server(work: Path, workflows: Path, data_dir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "FLOWFRONT_EXPLORE": str(EXPLORE),
        "FLOWFRONT_LOG_LEVEL": "warning",
        "FLOWFRONT_ACCESS_LOG": "false",
        "FLOWFRONT_GENERATION_POLL_S": "1",
        "FLOWFRONT_DRIFT_INTERVAL_S": "2",
        "FLOWFRONT_DRIFT_WINDOW_S": "15",
    }
    return subprocess.Popen([sys.executable, "-m", "flowfront.cli", "serve", "--workflows", str(workflows),
                             "--port", str(port), "--workdir", str(work), "--data-dir", str(data_dir)],
                            env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _play(base: str, jobs: list[tuple[str, str, float, float]], rng: np.random.Generator) -> list[dict]:
    """Send (query, task, lambda, recorded grade of each candidate...) jobs; grade a share; return
    what was served: id, candidate index, lambda, explored."""
    import aiohttp

    served: list[dict] = []
    todo = iter(range(len(jobs)))
    graded = rng.random(len(jobs)) < GRADED

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in todo:
            query, task, lam, grades = jobs[i]
            async with session.post(f"{base}/v1/workflows/{BENCHMARK}/run",
                                    json={"query": query, "task": task, "preference": {"lambda": lam}}) as r:
                body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"request failed: {r.status} {body}")
            index = body["candidate"]["index"]
            served.append({"i": i, "id": body["trace_id"], "index": index, "lambda": lam})
            if graded[i]:
                async with session.post(
                    f"{base}/v1/feedback",
                    json={"id": body["trace_id"], "name": "correct", "value": float(grades[index])},
                ) as g:
                    assert g.status == 200, await g.text()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        await asyncio.gather(*(worker(session) for _ in range(16)))
    return sorted(served, key=lambda s: s["i"])


def _generation(base: str) -> int:
    import httpx

    return int(httpx.get(f"{base}/readyz", timeout=10).json()["generation"])


def _eu(policy, X: np.ndarray, Y, scale, lambdas, hints: list[str]) -> np.ndarray:  # noqa: ANN001 - a Policy
    """Per-query expected utility over the lambda sweep, with the callers' task hints."""
    from flowfront.router.select import Preference, utility

    rows = np.arange(len(Y.query_ids))
    out = np.zeros(len(rows))
    for lam in lambdas:
        index = np.asarray(policy.select(X, Preference(lambda_=float(lam)), scale, hints=hints).index)
        out += utility(Y.correct[rows, index], Y.latency_parallel_s[rows, index], float(lam), scale)
    return out / len(lambdas)


def _interval(values: np.ndarray, stat, seed: int) -> tuple[float, float]:  # noqa: ANN001 - a statistic
    from scipy.stats import bootstrap

    if np.ptp(values, axis=-1).max() == 0:
        v = float(stat(values, axis=-1))
        return v, v
    ci = bootstrap(
        (values,) if values.ndim == 1 else tuple(values),
        stat,
        n_resamples=2000,
        method="percentile",
        random_state=seed,
        paired=values.ndim > 1,
    ).confidence_interval
    return float(ci.low), float(ci.high)


def _jobs(rows: np.ndarray, Y, tasks: np.ndarray, lambdas: np.ndarray, rng: np.random.Generator) -> list:  # noqa: ANN001
    return [(Y.texts[i], str(tasks[i]), float(rng.choice(lambdas)), Y.correct[i]) for i in rows]


def _training_mix(rng: np.random.Generator, mix: dict[str, float], data, tr_tasks: np.ndarray,  # noqa: ANN001
                  te_tasks: np.ndarray) -> list:
    """PHASE1 requests in the champion's training mix: per draw a task by its training share, then a
    test query of that task, or a train query for the four tasks the test split does not hold."""
    names = sorted(mix)
    jobs = []
    for task in rng.choice(names, PHASE1, p=np.array([mix[n] for n in names]) / sum(mix.values())):
        test_rows = np.flatnonzero(te_tasks == task)
        if len(test_rows):
            jobs += _jobs(rng.choice(test_rows, 1), data.test, te_tasks, data.lambdas, rng)
        else:
            jobs += _jobs(
                rng.choice(np.flatnonzero(tr_tasks == task), 1), data.train, tr_tasks, data.lambdas, rng
            )
    return jobs


def _scrape_alarm(base: str) -> int:
    import httpx

    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("flowfront_drift_alarm{") and 'measure="mix"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def _one_seed(seed: int, settings: Settings, data, frontier, workflows: Path) -> dict:  # noqa: ANN001
    from flowfront.service.drift import DriftThresholds, drift_report
    from flowfront.store import connect

    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix=f"flowfront-bench-loop-{seed}-"))
    try:
        run = _prepare(seed, settings, data, frontier, work, rng)
        times, gauges, report, challenger, served2 = _serve_phases(run, settings, data, workflows, rng)
        with connect(work / "serve" / "traces.sqlite") as store:
            decisions = store.decisions()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t0, t1, t2 = times
    drift = [drift_report([d for d in decisions if a <= d.created_at < b], [], run.mix, DriftThresholds())
             for a, b in ((t0, t1), (t1, t2))]
    return {"seed": seed, "promoted": report["promoted"], "reason": report["reason"],
            "retrain": {k: report[k] for k in ("graded", "learned_from", "held_out", "offpolicy", "offline")},
            **_outcomes(run, data, report, challenger, served2),
            "drift": {phase: {"psi": d["mix"]["psi"], "alarm": d["alarms"]["mix"], "gauge": g}
                      for phase, d, g in zip(("phase1", "phase2"), drift, gauges, strict=True)},
            "explored_share": float(np.mean([d.explored for d in decisions]))}


@dataclass
class _Run:
    """One seed's routers and traffic: the champion served first, the reference policies, and the
    three phases' jobs (training mix, shifted train-split queries, shifted test-split queries)."""

    seed: int
    work: Path
    champion: Any
    informed: Any
    static: Any
    mix: dict
    phases: tuple[list, list, list]
    shifted_train: np.ndarray
    shifted_test: np.ndarray


def _prepare(seed: int, settings: Settings, data, frontier, work: Path, rng) -> _Run:  # noqa: ANN001
    from flowfront.router.artifact import save_router
    from flowfront.router.baselines import StaticRouter
    from flowfront.router.features import FeatureConfig
    from flowfront.router.train import make_router
    from flowfront.store import connect

    with connect(settings.store_url) as src, connect(work / "traces.sqlite") as dst:
        src.copy_to(dst)
    shutil.copytree(settings.workdir / BENCHMARK, work / BENCHMARK,
                    ignore=shutil.ignore_patterns("router-*", "eval", "retrain", "*.png"))
    tr_tasks, te_tasks = np.array(data.train.tasks), np.array(data.test.tasks)
    known = np.flatnonzero(~np.isin(tr_tasks, SHIFTED))
    champion = make_router("frontier", seed=seed).fit(data.X_train[known], data.train.rows(known))
    save_router(champion, work / BENCHMARK / "router-frontier", frontier_hash=frontier.content_hash(),
                workflow_hash=data.bench.workflow.content_hash, feature_config=FeatureConfig(),
                metrics={"strategy": "frontier", **champion.describe()},
                note="champion: trained without the shifted tasks")
    informed = make_router("frontier", seed=seed).fit(data.X_train, data.train)
    static = StaticRouter().fit(data.X_train[known], data.train.rows(known))
    mix = champion.validation_metrics_["group_mix"]
    # the draws keep their order, so each seed serves the jobs it always did
    phase1 = _training_mix(rng, mix, data, tr_tasks, te_tasks)
    per_task = PHASE2A // len(SHIFTED)
    drawn = np.concatenate([rng.choice(np.flatnonzero(tr_tasks == t), per_task) for t in SHIFTED])
    first = _jobs(drawn[rng.permutation(per_task * len(SHIFTED))], data.train, tr_tasks, data.lambdas, rng)
    shifted_test = np.flatnonzero(np.isin(te_tasks, SHIFTED))
    second = _jobs(shifted_test, data.test, te_tasks, data.lambdas, rng)
    return _Run(seed=seed, work=work, champion=champion, informed=informed, static=static, mix=mix,
                phases=(phase1, first, second), shifted_train=np.flatnonzero(np.isin(tr_tasks, SHIFTED)),
                shifted_test=shifted_test)


def _serve_phases(run: _Run, settings: Settings, data, workflows: Path, rng):  # noqa: ANN001, ANN202
    """Serve phase 1 and phase 2a under the champion, retrain on what was graded, wait for a
    promotion to reach the server, serve phase 2b; the phase times, the drift gauges, the retrain
    report, the challenger and phase 2b's replies."""
    from flowfront.router.retrain import retrain

    phase1, first, second = run.phases
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _server(run.work, workflows, settings.data_dir, port)
    try:
        asyncio.run(_wait_ready(base, proc))
        t0 = time.time()
        asyncio.run(_play(base, phase1, rng))
        time.sleep(4)  # the service's drift gauge: two more measurements over the phase's window
        gauge1 = _scrape_alarm(base)
        t1 = time.time()
        asyncio.run(_play(base, first, rng))
        time.sleep(4)
        gauge2 = _scrape_alarm(base)
        t2 = time.time()
        before = _generation(base)
        report, challenger = retrain(
            settings.model_copy(update={"workdir": run.work, "store": None}), BENCHMARK,
            since_s=time.time() - t1 + 1, seed=run.seed,
            offline_exclude=frozenset(data.test.query_ids[i] for i in run.shifted_test),
            # the offline matrix it learns from is the champion's: the shifted tasks are known only
            # from the graded traffic
            train_exclude=frozenset(data.train.query_ids[i] for i in run.shifted_train))
        if report["promoted"]:
            deadline = time.monotonic() + 60
            while _generation(base) <= before and time.monotonic() < deadline:
                time.sleep(0.5)
        served2 = asyncio.run(_play(base, second, rng))
    finally:
        stop_process(proc)
    return (t0, t1, t2), (gauge1, gauge2), report, challenger, served2


def _outcomes(run: _Run, data, report: dict, challenger, served2: list) -> dict:  # noqa: ANN001
    """Each policy's expected utility on the shifted test queries, what the challenger realised at
    the served requests' own lambdas, and whether the off-policy interval covered it."""
    from flowfront.router.select import Preference, utility

    tr_tasks, te_tasks = np.array(data.train.tasks), np.array(data.test.tasks)
    rows = run.shifted_test
    X2, Y2, hints = data.X_test[rows], data.test.rows(rows), list(te_tasks[rows])
    eu = {name: _eu(p, X2, Y2, data.scale, data.lambdas, hints)
          for name, p in (("champion", run.champion), ("challenger", challenger), ("static", run.static),
                          ("informed", run.informed))}
    eu["served"] = eu["challenger"] if report["promoted"] else eu["champion"]
    realised = []  # the challenger's greedy choice at each served request's own lambda, recorded outcome
    for job, s2 in zip(run.phases[2], served2, strict=True):
        row = rows[s2["i"]]
        choice = challenger.select(data.X_test[row:row + 1], Preference(lambda_=s2["lambda"]), data.scale,
                                   hints=[job[1]])
        pick = int(np.asarray(choice.index)[0])
        realised.append(float(utility(data.test.correct[row, pick], data.test.latency_parallel_s[row, pick],
                                      s2["lambda"], data.scale)))
    on_2a = [float(utility(data.train.correct[i, pick], data.train.latency_parallel_s[i, pick], lam,
                           data.scale)) for i, pick, lam in _picks(challenger, data, run.phases[1], tr_tasks)]
    ope = report["offpolicy"]["challenger"]["dr"]
    return {"eu": {k: float(v.mean()) for k, v in eu.items()}, "_eu": eu, "ope_challenger_dr": ope,
            "realised_on_policy": float(np.mean(realised)),
            # what the challenger would realise on phase 2a's own queries (recorded outcomes): the
            # value the off-policy estimate estimates, where the second half asks other queries
            "challenger_on_phase2a": float(np.mean(on_2a)),
            "ope_covers_realised": bool(ope["low"] <= float(np.mean(realised)) <= ope["high"])}


def _picks(policy, data, jobs: list, tasks: np.ndarray):  # noqa: ANN001, ANN202 - a Policy, TrainingData
    """(train row, the policy's pick, lambda) for each phase-2a job (they are train-split queries)."""
    from flowfront.router.select import Preference

    row_of = {text: i for i, text in enumerate(data.train.texts)}
    for query, task, lam, _ in jobs:
        i = row_of[query]
        pick = int(np.asarray(policy.select(data.X_train[i:i + 1], Preference(lambda_=lam), data.scale,
                                            hints=[task]).index)[0])
        yield i, pick, lam


def main() -> None:
    from flowfront.compile.artifact import Frontier
    from flowfront.router.train import load_data

    settings = Settings()
    frontier_path = settings.workspace.benchmark(BENCHMARK).frontier()
    if not frontier_path.is_file():
        raise RuntimeError(f"no {BENCHMARK} frontier under {settings.workdir}: run `make run` first")
    frontier = Frontier.load(frontier_path)
    data = load_data(settings, BENCHMARK, "frontier")
    workflows = Path(tempfile.mkdtemp(prefix="flowfront-bench-loop-wf-"))
    shutil.copy(settings.configs_dir / "workflows" / f"{BENCHMARK}.yaml", workflows)
    load = os.getloadavg()[0]
    runs = [_one_seed(seed, settings, data, frontier, workflows) for seed in SEEDS]
    gap = np.concatenate([r["_eu"]["informed"] - r["_eu"]["champion"] for r in runs])
    ratio = lambda a, b, axis=-1: np.mean(a, axis=axis) / np.mean(b, axis=axis)  # noqa: E731
    recovered = {}
    for who in (
        "served",
        "challenger",
    ):  # what served after the promotion decision; the challenger either way
        gain = np.concatenate([r["_eu"][who] - r["_eu"]["champion"] for r in runs])
        low, high = _interval(np.stack([gain, gap]), ratio, 0)
        gain_low, _ = _interval(gain, np.mean, 0)
        recovered[who] = {
            "mean": float(gain.mean() / gap.mean()),
            "low": low,
            "high": high,
            "gain": float(gain.mean()),
            "gain_low": gain_low,
            "gap": float(gap.mean()),
        }
    for r in runs:
        r.pop("_eu")
    result = {
        "benchmark": BENCHMARK, "shifted_tasks": list(SHIFTED), "explore": EXPLORE, "graded_share": GRADED,
        "phase1_requests": PHASE1, "seeds": list(SEEDS), "load_1m_at_start": round(load, 2),
        "phase2a_requests": PHASE2A,
        # the share of the champion-to-informed gap that the router serving after retrain recovers
        # (the champion's own 0 where the rule kept it), paired over the second half's queries
        "recovered_fraction": recovered["served"], "challenger_recovered_fraction": recovered["challenger"],
        "ope_covers_realised": all(r["ope_covers_realised"] for r in runs),
        "drift": {"phase1_alarms": sum(r["drift"]["phase1"]["alarm"] for r in runs),
                  "phase2_alarm": all(r["drift"]["phase2"]["alarm"] for r in runs),
                  "gauge_phase1_alarms": sum(r["drift"]["phase1"]["gauge"] for r in runs),
                  "gauge_phase2_alarm": all(r["drift"]["phase2"]["gauge"] for r in runs)},
        "eu_second_half": {k: float(np.mean([r["eu"][k] for r in runs])) for k in runs[0]["eu"]},
        "promoted": [r["promoted"] for r in runs], "runs": runs,
        "latency": "modeled (replay of recorded outcomes)",
    }
    write_result("loop", result)
    rf = result["recovered_fraction"]
    print(
        f"recovered {rf['mean']:.2f} [{rf['low']:.2f}, {rf['high']:.2f}] of the gap; OPE covers realised: "
        f"{result['ope_covers_realised']}; drift alarms phase 1 {result['drift']['phase1_alarms']}, phase 2 "
        f"{result['drift']['phase2_alarm']}; promoted {result['promoted']}"
    )
