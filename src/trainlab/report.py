"""Sweep report: one table row per job and loss / metric / learning-rate curves of all jobs on shared charts.

Works on any folder whose job folders hold metrics.json (and .hydra/overrides.yaml), whatever the sweeper;
a job without metrics.json yet is listed as "missing". Jobs that differ only by `seed` form a configuration
(src/trainlab/seed_groups.py): summary.md and summary_groups.csv give each one's n, mean, std and 95%
interval, and Welch's t-test against the best. Each job and configuration gets flags (job_flags). Written at the
end of every multirun by SweepReport (a Hydra callback), and again on demand:

    python -m trainlab.report multirun/2026-11-23/16-30-00      # or a single run folder
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from trainlab import seed_groups
from trainlab.sweep_checks import job_overrides_file

log = logging.getLogger("trainlab")

CHARTS = {"loss.png": "Train (solid) and val (dashed) loss per epoch", "monitor.png": "Monitored metric per epoch",
          "lr.png": "Learning rate per epoch"}
BAND = "\nmean of each configuration's seeds, band ±1 std"  # under the titles of grouped charts
ALL_JOBS = "(all jobs)"  # the configuration of a sweep over seeds only


def job_dirs(folder: Path) -> list[Path]:
    """The run folders under folder (numbered Hydra job folders), or folder itself when it is one run."""
    if (folder / "metrics.json").exists() or (folder / ".hydra").is_dir():
        return [folder]
    jobs = [p for p in folder.iterdir()
            if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.json").exists() or job_overrides_file(p))]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


INTERNAL_KEYS = ("optuna_trial.", "resume=")
FINISHED = ("ok", "pruned")  # a pruned Optuna trial ended as the search asked: not a failure


def _overrides(job: Path) -> list[str]:
    path = job_overrides_file(job)
    if path is None:
        return []
    from trainlab.trust import load_stored_overrides

    # The Optuna sweeper's trial handle and resume= say how a job ran, not what it tried.
    return [o for o in load_stored_overrides(path) if not o.lstrip("+").startswith(INTERNAL_KEYS)]


def load_job(job: Path) -> dict:
    path = job / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {"status": "missing"}
    metrics["job"], metrics["overrides"] = job.name, _overrides(job)
    metrics["history"] = _with_event_curves(job, metrics.get("history") or [])
    metrics["seed"], metrics["scheduler"] = _from_config(job, "seed"), _from_config(job, "scheduler", "class_path")
    return metrics


def project_root() -> Path:
    """The trainlab checkout (the folder holding conf/train.yaml) above the working folder, else above the
    installed package (an editable install), else the working folder."""
    import trainlab

    for start in (Path.cwd().resolve(), Path(trainlab.__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "conf" / "train.yaml").is_file():
                return folder
    return Path.cwd()


def find_sweep(path: str | Path | None = None) -> Path:
    """A sweep (or run) folder, or the newest sweep inside a folder of sweeps; a relative path is taken from the
    project root, no path means its multirun/. Any sweeper's: a sweep is a folder of job folders (Optuna's
    write no multirun.yaml)."""
    folder = Path(path or "multirun").expanduser()
    folder = folder if folder.is_absolute() else project_root() / folder
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: set TRAINLAB_SWEEP to a sweep folder or a folder of sweeps")
    if job_dirs(folder):
        return folder
    sweeps = {p.parent.parent for p in folder.glob("**/.hydra") if p.parent.parent != folder}
    sweeps |= {p.parent.parent for p in folder.glob("**/metrics.json") if p.parent.parent != folder}
    if not sweeps:
        raise FileNotFoundError(f"no sweep under {folder}: no job folder (.hydra/ or metrics.json) in it")
    return max(sweeps, key=lambda p: (p.stat().st_mtime, str(p)))


def load_jobs(folder: Path) -> list[dict]:
    return [load_job(j) for j in job_dirs(Path(folder))]


def _from_config(job: Path, *keys: str):
    """A value of the job's resolved config.yaml (None when absent)."""
    import yaml

    path = job / "config.yaml"
    node = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def job_flags(job: dict) -> list[str]:
    """What to distrust in a job's result: its status when not ok; a best epoch that is the last of 2 or more
    (still improving: maybe under-trained) or the first (never improved); a scheduler that never changed lr."""
    status = job.get("status", "missing")
    flags = [] if status in ("ok", "missing") else [status]
    epochs, best = job.get("epochs") or 0, job.get("best_epoch")
    if status == "ok" and isinstance(best, int) and epochs >= 2:
        if best == epochs - 1:
            flags.append("best at last epoch")
        elif best == 0:
            flags.append("no gain after epoch 0")
    lrs = [r["lr"] for r in job["history"] if r.get("lr") is not None]
    if job.get("scheduler") and len(lrs) >= 2 and min(lrs) == max(lrs):
        flags.append("lr never changed")
    return flags


def _with_event_curves(job: Path, rows: list[dict]) -> list[dict]:
    """Per-epoch history; train/loss, val/loss and lr missing from metrics.json are read from the event files."""
    wanted = ("train/loss", "val/loss", "lr")
    if rows and all(k in rows[0] for k in wanted) or not list(job.glob("events.out.tfevents.*")):
        return rows
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # its directory watcher chats at INFO
    acc = EventAccumulator(str(job), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    if "epoch" not in tags:
        return rows
    # Lightning logs epoch-level scalars at the global step, with an "epoch" scalar beside them.
    epoch_at = {e.step: int(e.value) for e in acc.Scalars("epoch")}
    by_epoch = {r["epoch"]: dict(r) for r in rows}
    epoch_tags = {t for t in tags if t == "lr" or t.startswith(("train/", "val/")) and not t.endswith("_step")}
    for tag in epoch_tags:
        for event in acc.Scalars(tag):
            if event.step in epoch_at:
                by_epoch.setdefault(epoch_at[event.step], {"epoch": epoch_at[event.step]}).setdefault(tag, event.value)
    return [by_epoch[e] for e in sorted(by_epoch)]


def _varying(jobs: list[dict]) -> set[str]:
    """Overrides that differ between jobs: the ones worth a column (shared ones are the sweep's setting)."""
    all_sets = [set(j["overrides"]) for j in jobs]
    return set().union(*all_sets) - set.intersection(*all_sets) if len(jobs) > 1 else set().union(*all_sets)


def _monitor(jobs: list[dict]) -> tuple[str | None, str]:
    ok = [j for j in jobs if j.get("status") == "ok"]
    return (ok[0]["monitor"], ok[0].get("monitor_mode", "max")) if ok else (None, "max")


def _test_keys(jobs: list[dict]) -> list[str]:
    return sorted({k for j in jobs for k in (j.get("test") or {})})


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def summary_rows(jobs: list[dict]) -> tuple[list[dict], str | None]:
    """Table rows sorted by the monitored metric (best first; failed and missing jobs last)."""
    monitor, mode = _monitor(jobs)
    varying = _varying(jobs) if jobs else set()
    test_keys = _test_keys(jobs)
    tagged = any(j.get("tags") for j in jobs)
    rows = []
    for j in jobs:
        score = j.get("best_score")
        row = {"job": j["job"], "overrides": " ".join(o for o in j["overrides"] if o in varying),
               **({"tags": ", ".join(j.get("tags") or [])} if tagged else {}),
               "status": j.get("status", "missing"), "error": j.get("error", ""),
               f"best {monitor or 'score'}": _fmt(score), "best_epoch": j.get("best_epoch", "")}
        row.update({k: _fmt((j.get("test") or {}).get(k)) for k in test_keys})
        row.update({"epochs": j.get("epochs", ""), "seconds": _fmt(j.get("seconds"), 1),
                    "flags": ", ".join(job_flags(j))})
        sign = -1 if mode == "max" else 1
        row["_key"] = (j.get("status") != "ok" or score is None or math.isnan(score), sign * (score or 0.0))
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_key"))
    return rows, monitor


def is_grouped(jobs: list[dict]) -> bool:
    """Some configuration ran with more than one seed: the report gives statistics per configuration."""
    return any(len(members) > 1 for members in seed_groups.group(jobs, _varying(jobs) if jobs else set()).values())


def group_rows(jobs: list[dict]) -> list[dict]:
    """One row per configuration (seed_groups): n finished jobs, seeds, for the best monitored value and each
    test metric its mean, std and 95% interval, Welch's p against the best configuration, and the flags of
    its jobs (how many of them). Sorted by the mean monitored value, best first."""
    monitor, mode = _monitor(jobs)
    metrics = [(f"best {monitor or 'score'}", lambda j: j.get("best_score"))]
    metrics += [(k, lambda j, k=k: (j.get("test") or {}).get(k)) for k in _test_keys(jobs)]
    rows, scores = [], {}
    for config, members in seed_groups.group(jobs, _varying(jobs)).items():
        ok = [j for j in members if j.get("status") == "ok"]
        row = {"configuration": config or ALL_JOBS, "n": len(ok), "jobs": len(members),
               "seeds": ",".join(str(j.get("seed", "")) for j in members)}
        for name, value in metrics:
            stats = seed_groups.describe([v for v in map(value, ok) if _finite(v)])
            row.update({f"{name} {k}": _fmt(stats[k]) for k in ("mean", "std", "ci_low", "ci_high")})
        counts: dict[str, int] = {}
        for flag in (f for j in members for f in job_flags(j)):
            counts[flag] = counts.get(flag, 0) + 1
        row["flags"] = ", ".join(f"{flag} {n}/{len(members)}" for flag, n in counts.items())
        scores[row["configuration"]] = [j["best_score"] for j in ok if _finite(j.get("best_score"))]
        rows.append(row)
    sign = -1 if mode == "max" else 1
    mean = lambda r: statistics.fmean(scores[r["configuration"]] or [0.0])  # noqa: E731
    rows.sort(key=lambda r: (not scores[r["configuration"]], sign * mean(r)))
    best = rows[0]["configuration"] if rows and scores[rows[0]["configuration"]] else None
    for row in rows:
        p = None if best is None else seed_groups.welch_p(scores[row["configuration"]], scores[best])
        row["p vs best"] = "" if row["configuration"] == best or p is None else f"{p:.4g}"
        row["vs best"] = "best" if row["configuration"] == best else seed_groups.verdict(p)
        row["flags"] = row.pop("flags")  # the last column
    return rows


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue())


def write_report(folder: str | Path) -> list[dict]:
    """summary.csv, summary.md, summary_groups.csv (seed groups) and the PNG charts in folder; returns the
    job rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    jobs = load_jobs(folder)
    rows, monitor = summary_rows(jobs)
    _write_csv(folder / "summary.csv", rows, list(rows[0]) if rows else ["job", "overrides", "status"])
    groups_csv = folder / "summary_groups.csv"
    if is_grouped(jobs):
        groups = group_rows(jobs)
        _write_csv(groups_csv, groups, list(groups[0]))
    elif groups_csv.exists():  # a report of the same folder from before its jobs changed
        groups_csv.unlink()
    for name, fig in charts(jobs, monitor).items():
        fig.savefig(folder / name, dpi=90)
        plt.close(fig)
    charts_md = [f"## {title}\n\n![{title}]({name})\n" for name, title in CHARTS.items() if (folder / name).exists()]
    (folder / "summary.md").write_text("\n".join([f"# Sweep report: {folder}", "", tables_markdown(jobs), *charts_md]))
    return rows


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    cells = lambda values: "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"  # noqa: E731
    return [cells(columns), cells(["---"] * len(columns)), *(cells(r[c] for c in columns) for r in rows)]


def tables_markdown(jobs: list[dict]) -> str:
    """The tables of summary.md: configurations (seed groups) when a configuration ran with several seeds,
    then the jobs."""
    rows, monitor = summary_rows(jobs)
    lines = []
    if is_grouped(jobs):
        groups = group_rows(jobs)
        names = [f"best {monitor or 'score'}", *_test_keys(jobs)]
        lines += ["## Configurations (seed groups)", "",
                  f"Jobs that differ only by `seed` are one configuration. n: its jobs that finished (status ok). "
                  f"Each metric: mean ± sample std [{seed_groups.CONFIDENCE:.0%} confidence interval, Student's t "
                  f"with n-1 degrees of freedom]. p vs best: Welch's two-sided t-test of best {monitor} against "
                  f"the best configuration's (best mean); tied: p >= {seed_groups.ALPHA}, it cannot be told apart "
                  f"from the best at alpha = {seed_groups.ALPHA}; worse: p < {seed_groups.ALPHA}.", ""]
        cells = []
        for row in groups:  # the CSV's four numbers of a metric in one cell
            mean, std, low, high = ({n: row[f"{n} {k}"] for n in names} for k in ("mean", "std", "ci_low", "ci_high"))
            cells.append({**{k: row[k] for k in ("configuration", "n", "jobs", "seeds")},
                          **{n: f"{mean[n]} ± {std[n]} [{low[n]}, {high[n]}]" if std[n] else mean[n] for n in names},
                          **{k: row[k] for k in ("p vs best", "vs best", "flags")}})
        lines += _table(cells, list(cells[0])) + [""]
    elif len(jobs) > 1:
        lines += [seed_groups.NO_CONFIDENCE, ""]
    columns = list(rows[0]) if rows else ["job", "overrides", "status"]
    lines += ["## Jobs", "", f"{len(rows)} jobs, sorted best first.", "", *_table(rows, columns), ""]
    return "\n".join(lines)


def _label(job: dict, varying: set[str]) -> str:
    return " ".join(o for o in job["overrides"] if o in varying) or job["job"]


def charts(jobs: list[dict], monitor: str | None) -> dict:
    """{file name: matplotlib Figure} of CHARTS: each job's curves, or each configuration's mean curve with a
    +-1 std band when the jobs form seed groups."""
    import matplotlib.pyplot as plt

    varying = _varying(jobs) if jobs else set()
    grouped = is_grouped(jobs)
    if grouped:
        lines = [(f"{config or ALL_JOBS} (n={len(ok)})", ok)
                 for config, members in seed_groups.group(jobs, varying).items()
                 if (ok := [j for j in members if j.get("status") == "ok" and j["history"]])]
    else:
        lines = [(_label(j, varying), [j]) for j in jobs if j["history"]]
    specs = {"loss.png": (("train/loss", "-"), ("val/loss", "--")), "monitor.png": ((monitor, "-"),),
             "lr.png": (("lr", "-"),)}
    figures = {}
    for name, series in specs.items():
        fig, ax = plt.subplots(figsize=(8, 5))
        for i, (label, members) in enumerate(lines):
            for key, style in series:
                epochs, mean, std = _mean_curve(members, key)
                if not epochs:
                    continue
                label_key = label + ("" if len(series) == 1 else f" ({key.split('/')[0]})")
                ax.plot(epochs, mean, style, color=f"C{i % 10}", marker=".", label=label_key)
                if len(members) > 1:
                    ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                    color=f"C{i % 10}", alpha=0.15, linewidth=0)
        if not ax.get_lines():
            plt.close(fig)
            continue
        ax.set(xlabel="epoch", ylabel=series[0][0] if len(series) == 1 else "loss",
               title=CHARTS[name] + (BAND if grouped else ""))
        ax.title.set_fontsize(10)
        if name == "lr.png" and min(min(line.get_ydata()) for line in ax.get_lines()) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        figures[name] = fig
    return figures


def _mean_curve(members: list[dict], key: str | None) -> tuple[list[int], list[float], list[float]]:
    """Per epoch: the mean and sample std (0 for one value) of key over the jobs that logged it."""
    values: dict[int, list[float]] = {}
    for job in members:
        for row in job["history"]:
            if _finite(row.get(key)):
                values.setdefault(row["epoch"], []).append(row[key])
    epochs = sorted(values)
    return (epochs, [statistics.fmean(values[e]) for e in epochs],
            [statistics.stdev(values[e]) if len(values[e]) > 1 else 0.0 for e in epochs])


class SweepReport(Callback):
    """Hydra callback: the report at the end of every multirun; a non-zero exit when any job failed."""

    def on_multirun_end(self, config, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        if not folder.is_dir():
            return
        rows = write_report(folder)
        log.info("Sweep report: %s (summary.md, summary.csv, loss/monitor/lr charts)", folder / "summary.md")
        # A job folder without metrics.json belongs to a process still running it (several workers of one
        # Optuna study share the sweep folder): listed, but this invocation's jobs all ended.
        pending = [r["job"] for r in rows if r["status"] == "missing"]
        if pending:
            log.warning("jobs %s have no results yet (running in another process?)", ", ".join(pending))
        failed = [r for r in rows if r["status"] not in FINISHED + ("missing",)]
        if failed:
            log.error("%d of %d jobs did not finish: %s", len(failed), len(rows),
                      "; ".join(f"job {r['job']} ({r['overrides']}): {r['status']} {r['error']}" for r in failed))
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m trainlab.report <sweep or run folder>", file=sys.stderr)
        return 2
    rows = write_report(args[0])
    print((Path(args[0]) / "summary.md").read_text())
    return 0 if all(r["status"] in FINISHED for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
