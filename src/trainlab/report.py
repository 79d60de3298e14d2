"""Sweep report: one table row per job and loss / metric / learning-rate curves of all jobs on shared charts.

Works on any folder whose job folders hold metrics.json (and .hydra/overrides.yaml), whatever the sweeper;
a job without metrics.json yet is listed as "missing". Written at the end of every multirun by SweepReport
(a Hydra callback), and again on demand:

    python -m trainlab.report multirun/2026-11-23/16-30-00      # or a single run folder
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger("trainlab")

CHARTS = {"loss.png": "Train (solid) and val (dashed) loss per epoch", "monitor.png": "Monitored metric per epoch",
          "lr.png": "Learning rate per epoch"}


def job_dirs(folder: Path) -> list[Path]:
    """The run folders under folder (numbered Hydra job folders), or folder itself when it is one run."""
    if (folder / "metrics.json").exists() or (folder / ".hydra").is_dir():
        return [folder]
    jobs = [p for p in folder.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.json").exists())]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


INTERNAL_KEYS = ("optuna_trial.", "resume=")
FINISHED = ("ok", "pruned")  # a pruned Optuna trial ended as the search asked: not a failure


def _overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    from trainlab.trust import load_stored_overrides

    # The Optuna sweeper's trial handle and resume= say how a job ran, not what it tried.
    return [o for o in load_stored_overrides(path) if not o.lstrip("+").startswith(INTERNAL_KEYS)]


def load_job(job: Path) -> dict:
    path = job / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {"status": "missing"}
    metrics["job"], metrics["overrides"] = job.name, _overrides(job)
    metrics["history"] = _with_event_curves(job, metrics.get("history") or [])
    return metrics


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


def summary_rows(jobs: list[dict]) -> tuple[list[dict], str | None]:
    """Table rows sorted by the monitored metric (best first; failed and missing jobs last)."""
    ok = [j for j in jobs if j.get("status") == "ok"]
    monitor = ok[0]["monitor"] if ok else None
    mode = ok[0].get("monitor_mode", "max") if ok else "max"
    varying = _varying(jobs) if jobs else set()
    test_keys = sorted({k for j in jobs for k in (j.get("test") or {})})
    tagged = any(j.get("tags") for j in jobs)
    rows = []
    for j in jobs:
        score = j.get("best_score")
        row = {"job": j["job"], "overrides": " ".join(o for o in j["overrides"] if o in varying),
               **({"tags": ", ".join(j.get("tags") or [])} if tagged else {}),
               "status": j.get("status", "missing"), "error": j.get("error", ""),
               f"best {monitor or 'score'}": _fmt(score), "best_epoch": j.get("best_epoch", "")}
        row.update({k: _fmt((j.get("test") or {}).get(k)) for k in test_keys})
        row.update({"epochs": j.get("epochs", ""), "seconds": _fmt(j.get("seconds"), 1)})
        sign = -1 if mode == "max" else 1
        row["_key"] = (j.get("status") != "ok" or score is None or math.isnan(score), sign * (score or 0.0))
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_key"))
    return rows, monitor


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_report(folder: str | Path) -> list[dict]:
    """summary.csv, summary.md and the PNG charts in folder; returns the table rows."""
    folder = Path(folder)
    jobs = [load_job(j) for j in job_dirs(folder)]
    rows, monitor = summary_rows(jobs)
    columns = list(rows[0]) if rows else ["job", "overrides", "status"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (folder / "summary.csv").write_text(buffer.getvalue())
    _plot(jobs, monitor, folder)
    (folder / "summary.md").write_text(_markdown(rows, columns, folder))
    return rows


def _markdown(rows: list[dict], columns: list[str], folder: Path) -> str:
    cells = lambda values: "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"  # noqa: E731
    lines = [f"# Sweep report: {folder}", "", f"{len(rows)} jobs, sorted best first.", "",
             cells(columns), cells(["---"] * len(columns)), *(cells(r[c] for c in columns) for r in rows), ""]
    lines += [f"## {title}\n\n![{title}]({name})\n" for name, title in CHARTS.items() if (folder / name).exists()]
    return "\n".join(lines)


def _label(job: dict, varying: set[str]) -> str:
    return " ".join(o for o in job["overrides"] if o in varying) or job["job"]


def _plot(jobs: list[dict], monitor: str | None, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    varying = _varying(jobs) if jobs else set()
    curves = [j for j in jobs if j["history"]]
    specs = {"loss.png": (("train/loss", "-"), ("val/loss", "--")), "monitor.png": ((monitor, "-"),),
             "lr.png": (("lr", "-"),)}
    for name, series in specs.items():
        fig, ax = plt.subplots(figsize=(8, 5))
        drawn = False
        for i, job in enumerate(curves):
            for key, style in series:
                points = [(r["epoch"], r[key]) for r in job["history"] if key in r]
                if points:
                    xs, ys = zip(*points)
                    label = _label(job, varying) + ("" if len(series) == 1 else f" ({key.split('/')[0]})")
                    ax.plot(xs, ys, style, color=f"C{i % 10}", marker=".", label=label)
                    drawn = True
        if drawn:
            ax.set(xlabel="epoch", ylabel=series[0][0] if len(series) == 1 else "loss", title=CHARTS[name])
            if name == "lr.png" and min(min(l.get_ydata()) for l in ax.get_lines()) > 0:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=90)
        plt.close(fig)


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
