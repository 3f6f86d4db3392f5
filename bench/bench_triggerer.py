"""Triggerer at scale on the real local stack: hundreds of deferred Slurm jobs tracked at once.

Ours, two ways, both on the real stack (local Slurm reached over the stack's sshd):
- one event loop: 500 ``SlurmJobTrigger.run()`` coroutines awaited in one asyncio loop of this
  process, as the triggerer's runner awaits them (they share one ClusterPoller, as there);
- the real ``airflow triggerer``: the DAG ``selftest_trigger_scale`` (tests/dags) maps one task
  instance per job; each starts in the triggerer (``start_from_trigger``) and ends there when its
  job succeeds, so no worker slot is held. 500 task instances by default, as many as the loop.
The jobs (short plain jobs and job arrays) are submitted held, so every one is tracked before the
first runs, then released together.

Peer, in the same run: the blocking style, one worker slot per job polling over its own SSH
connection (``SlurmJobOperator(deferrable=False)``'s wait, as an SSHOperator/SSH sensor per job
would), for as many jobs as this machine can hold threads and sshd sessions for.

Measured from the services themselves (bench/stack_probes.py): SSH connections from sshd's log,
squeue calls from slurmctld's RPC counters (total, and the busiest poll interval), CPU and peak
RSS of the tracker and of the login node's sshd, and the delay from each job's end (Slurm's
completion log) to its trigger's event or its task's end in Airflow.

Run alone: ``python bench/bench_triggerer.py``. Uses the stack named by the SKILLFLOW_* variables
(default: the default one), starting it if needed and stopping it after only if it was not running.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.parse
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import stack_probes as probe  # noqa: E402
from tests.polling import wait_until  # noqa: E402

DAG_ID = "selftest_trigger_scale"
POLL_S = 2.0  # the DAG's trigger poll interval; the peer polls as often
PARTITION = "bench"
# Airflow 3.3.2's triggerer deadlocked here once at 500 start_from_trigger tasks (2026-11-23, one
# run in two): its runner blocked writing trigger log lines to the supervisor while the supervisor
# blocked sending it the workloads. SlurmJobTrigger has since stopped logging the PENDING state it
# finds first (one line per trigger, all at start-up); three 500-task runs after that completed.


@contextmanager
def local_stack():
    """The running stack, started here (and stopped after) only if none of it was running."""
    from devtools.stack import control

    started = not any(r.pid for r in control.status())
    if not control.is_up():
        control.up(quiet=True)
    ctx = control.context()
    try:
        yield ctx
    finally:
        if started:
            control.down(quiet=True)


def ensure_partition(ctx) -> None:
    """A stack started before the ``bench`` partition existed learns it from its regenerated
    slurm.conf (``scontrol reconfigure`` keeps running jobs and services as they are)."""
    from devtools.stack.config import write_configs

    if subprocess.run(["scontrol", "show", "partition", PARTITION], env=ctx.env, capture_output=True).returncode:
        write_configs(ctx.layout)
        subprocess.run(["scontrol", "reconfigure"], env=ctx.env, check=True, capture_output=True)
        wait_until(lambda: subprocess.run(["scontrol", "show", "partition", PARTITION], env=ctx.env,
                                          capture_output=True).returncode == 0, 30, "the bench partition")


def is_array(i: int, array_every: int) -> bool:
    return bool(array_every) and i % array_every == array_every - 1


def arrays(count: int, array_every: int) -> int:
    return sum(is_array(i, array_every) for i in range(count))


def submit_held(ctx, count: int, array_every: int, array_size: int, name: str, seconds: int) -> list[str]:
    """``count`` held jobs of ``seconds`` each: every ``array_every``-th one an array of
    ``array_size`` elements."""
    ids = []
    for i in range(count):
        argv = ["sbatch", "--parsable", "--hold", "-p", PARTITION, "-J", name, "-t", "5", "-o", "/dev/null"]
        if is_array(i, array_every):
            argv.append(f"--array=0-{array_size - 1}")
        out = subprocess.run(argv + ["--wrap", f"sleep {int(seconds)}"], env=ctx.env, capture_output=True,
                             text=True, check=True)
        ids.append(out.stdout.strip().split(";")[0])
    return ids


def release(ctx, job_ids: list[str]) -> None:
    for i in range(0, len(job_ids), 200):
        subprocess.run(["scontrol", "release", ",".join(job_ids[i:i + 200])], env=ctx.env, check=True,
                       capture_output=True)


def cancel(ctx, name: str) -> None:
    subprocess.run(["scancel", "-n", name], env=ctx.env, capture_output=True)


def login_node(ctx) -> int:
    """sshd's listener: its tree's CPU, reaped children included, is what the login node spent
    on our sessions (key exchange, shells, squeue)."""
    return int(ctx.layout.pidfile("sshd").read_text().split()[0])


def squeues(after: dict[str, int], before: dict[str, int]) -> int:
    """squeue calls: one job asks for REQUEST_JOB_INFO_SINGLE, several for REQUEST_JOB_INFO."""
    d = probe.delta(after, before)
    return d.get("REQUEST_JOB_INFO", 0) + d.get("REQUEST_JOB_INFO_SINGLE", 0)


def queries(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Every read-only RPC slurmctld answered in the window (squeue also asks for partitions),
    less the probe's own ``sdiag`` calls (REQUEST_STATS_INFO)."""
    return {k: v for k, v in sorted(probe.delta(after, before).items()) if "_INFO" in k and "STATS" not in k}


def fresh_code(pid: int) -> None:
    """A triggerer started before the trigger code changed runs the old code: say so plainly."""
    start = probe.started_at(pid)
    code = max((ROOT / "operators" / "slurm" / f).stat().st_mtime for f in ("trigger.py", "poller.py"))
    if start < code:
        raise SystemExit(f"the triggerer (pid {pid}) started before operators/slurm/ last changed; restart it "
                         "(`skillflow stack down && skillflow stack up`) so it runs the code measured here")


def summary_of_delays(delays: list[float]) -> dict:
    return {"median_s": round(probe.percentile(delays, 0.5), 2), "p95_s": round(probe.percentile(delays, 0.95), 2),
            "max_s": round(max(delays), 2), "n": len(delays)}


# Ours at full size: the triggerer's loop, in this process ----------------------------------
def run_in_loop(ctx, tasks: int, array_every: int, array_size: int, seconds: int, timeout: float) -> dict:
    """``tasks`` SlurmJobTrigger.run() coroutines in one asyncio loop, as the triggerer's runner
    awaits them (they share one ClusterPoller per loop and connection, as there)."""
    import asyncio

    from operators.slurm.poller import ClusterPoller
    from operators.slurm.trigger import SlurmJobTrigger

    job_ids = submit_held(ctx, tasks, array_every, array_size, "sfbench-loop", seconds)
    sshd_log = ctx.layout.logfile("sshd")
    ended: dict[str, float] = {}
    kinds: dict[str, str] = {}

    async def track(job_id: str) -> None:
        trigger = SlurmJobTrigger(ssh_conn_id="slurm_local", job_id=job_id, poll_interval=POLL_S,
                                  accounting="jobcomp", stream_logs=False, end_from_trigger=True)
        async for event in trigger.run():
            ended[job_id] = time.time()
            kinds[job_id] = type(event).__name__
            return

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        running = [asyncio.create_task(track(j)) for j in job_ids]
        poller = ClusterPoller.get("slurm_local", POLL_S, "jobcomp")
        await asyncio.sleep(0)
        while len(poller.watches) < tasks:
            await asyncio.sleep(0.1)
        rpc1 = await loop.run_in_executor(None, probe.slurm_rpcs, ctx.env)
        with probe.QueryRate(ctx.env, POLL_S) as rate:
            t1 = time.monotonic()
            await loop.run_in_executor(None, release, ctx, job_ids)
            await asyncio.wait_for(asyncio.gather(*running), timeout)
            t2 = time.monotonic()
        rpc2 = await loop.run_in_executor(None, probe.slurm_rpcs, ctx.env)
        return {"poller": poller, "rpc1": rpc1, "rpc2": rpc2, "rate": rate, "tracking": t2 - t1}

    ssh0, rpc0 = probe.sshd_accepts(sshd_log), probe.slurm_rpcs(ctx.env)
    cpu0, login0 = resource.getrusage(resource.RUSAGE_SELF), probe.cpu_seconds(login_node(ctx))
    with probe.PeakRss(os.getpid()) as rss:
        out = asyncio.run(main())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(1)  # sshd logs and reaps the poller's closed session
    ssh1, login1 = probe.sshd_accepts(sshd_log), probe.cpu_seconds(login_node(ctx))
    ends = probe.job_end_times(ctx.layout.slurm / "jobcomp.log", set(job_ids))
    delays = [ended[j] - ends[j].timestamp() for j in ended if j in ends]
    poller = out["poller"]
    return {
        "tasks": tasks, "job_seconds": seconds,
        "arrays": arrays(tasks, array_every), "array_size": array_size,
        "succeeded": sum(k == "TaskSuccessEvent" for k in kinds.values()),
        "ssh_connections": ssh1 - ssh0,
        "poller_counted": {"connections": poller.connections_opened, "polls": poller.polls},
        "squeue_calls": squeues(out["rpc2"], rpc0),
        "tracking_s": round(out["tracking"], 1),
        "squeue_per_interval": {"mean": round(squeues(out["rpc2"], out["rpc1"]) / (out["tracking"] / POLL_S), 2),
                                "peak": out["rate"].peak},
        "slurm_queries": queries(out["rpc2"], rpc0),
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "login_node_cpu_s": round(login1 - login0, 1),
        "rss_mb": {"before": round(rss.first, 1), "peak": round(rss.peak, 1)},
        "worker_slots": 0,
        "end_to_event_delay": summary_of_delays(delays),
    }


# Ours: the real triggerer ----------------------------------------------------------------
def _tis(api, run_id: str) -> list[dict]:
    out, offset = [], 0
    while True:
        path = (f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
                f"?task_id=track&limit=100&offset={offset}")
        page = api._request("GET", path)["task_instances"]
        out += [t for t in page if t["task_id"] == "track"]
        if len(page) < 100:
            return out
        offset += 100


def run_ours(ctx, api, tasks: int, array_every: int, array_size: int, seconds: int, timeout: float) -> dict:
    job_ids = submit_held(ctx, tasks, array_every, array_size, "sfbench-ours", seconds)
    triggerer = int(ctx.layout.pidfile("airflow-triggerer").read_text().split()[0])
    sshd_log = ctx.layout.logfile("sshd")
    idle0 = probe.cpu_seconds(triggerer)
    time.sleep(10)
    idle_cpu_per_min = (probe.cpu_seconds(triggerer) - idle0) * 6
    sshd = login_node(ctx)
    t_start = time.monotonic()
    ssh0, rpc0, cpu0 = probe.sshd_accepts(sshd_log), probe.slurm_rpcs(ctx.env), probe.cpu_seconds(triggerer)
    login0 = probe.cpu_seconds(sshd)
    with probe.PeakRss(triggerer) as rss:
        run = api.trigger(DAG_ID, {"jobs": job_ids})
        run_id = run["dag_run_id"]

        try:
            def deferred():
                tis = _tis(api, run_id)
                return len(tis) == tasks and all(t["state"] == "deferred" for t in tis)

            wait_until(deferred, timeout, f"{tasks} deferred task instances", interval=3)
            t_tracked, tracked_at = time.monotonic(), datetime.now().astimezone()
            rpc1 = probe.slurm_rpcs(ctx.env)

            def finished():
                tis = _tis(api, run_id)
                return tis if all(t["state"] in ("success", "failed") for t in tis) else None

            with probe.QueryRate(ctx.env, POLL_S) as rate:
                release(ctx, job_ids)
                tis = wait_until(finished, timeout, "all tasks finished", interval=3)
        except BaseException:
            # Leave no run behind: failing it removes its triggers from the triggerer.
            api._request("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}",
                         {"state": "failed"})
            raise
        t_end = time.monotonic()
    time.sleep(1)  # sshd reaps the session that the poller closed with its last watch
    ssh2, rpc2, cpu2 = probe.sshd_accepts(sshd_log), probe.slurm_rpcs(ctx.env), probe.cpu_seconds(triggerer)
    login2 = probe.cpu_seconds(sshd)
    ends = probe.job_end_times(ctx.layout.slurm / "jobcomp.log", set(job_ids))
    delays = [(datetime.fromisoformat(t["end_date"]) - ends[job_ids[t["map_index"]]]).total_seconds()
              for t in tis if t["state"] == "success" and job_ids[t["map_index"]] in ends]
    # From the moment every task was deferred to the last task's end (as Airflow recorded it).
    tracking = (max(datetime.fromisoformat(t["end_date"]) for t in tis) - tracked_at).total_seconds()
    return {
        "tasks": tasks, "job_seconds": seconds, "arrays": arrays(tasks, array_every), "array_size": array_size,
        "succeeded": sum(t["state"] == "success" for t in tis),
        "failed": sum(t["state"] != "success" for t in tis),
        "ssh_connections": ssh2 - ssh0,
        "squeue_calls": squeues(rpc2, rpc0),
        "tracking_s": round(tracking, 1),
        "squeue_per_interval": {"mean": round(squeues(rpc2, rpc1) / (tracking / POLL_S), 2), "peak": rate.peak},
        "slurm_queries": queries(rpc2, rpc0),
        "triggerer_cpu_s": round(cpu2 - cpu0, 1),
        "triggerer_idle_cpu_s_per_min": round(idle_cpu_per_min, 2),
        "login_node_cpu_s": round(login2 - login0, 1),
        "triggerer_rss_mb": {"idle": round(rss.first, 1), "peak": round(rss.peak, 1)},
        "worker_slots": 1,  # the `slots` task that lists the map indexes; no slot while tracking
        "end_to_task_delay": summary_of_delays(delays),
        "wall_s": round(t_end - t_start, 1),
    }


# Peer: one blocking worker per job -------------------------------------------------------
def run_peer(ctx, jobs: int, array_every: int, array_size: int, seconds: int, timeout: float) -> dict:
    from operators.slurm.hook import SlurmHook
    from operators.slurm.operator import SlurmJobOperator
    from tasks.profiles import load_profile

    profile = load_profile("local")
    job_ids = submit_held(ctx, jobs, array_every, array_size, "sfbench-peer", seconds)
    sshd_log = ctx.layout.logfile("sshd")
    done: dict[str, float] = {}
    errors: list[str] = []
    ready = threading.Barrier(jobs + 1)

    def worker(i: int, job_id: str) -> None:
        # What one worker slot does for one SlurmJobOperator(deferrable=False): its own SSH
        # connection, one squeue per poll interval until the job ends.
        op = SlurmJobOperator(task_id=f"peer_{i}", job={"name": "peer", "command": "true"},
                              poll_interval=POLL_S, deferrable=False)
        hook = SlurmHook(profile.ssh_conn_id, accounting=profile.accounting)
        try:
            hook.get_conn()
        except Exception as exc:
            errors.append(f"{job_id}: {exc}")
            ready.abort()
            return
        try:
            ready.wait()
            op._wait_inline(hook, profile, job_id, None)
            done[job_id] = time.time()
        except Exception as exc:  # counted, never hidden
            errors.append(f"{job_id}: {exc}")
        finally:
            hook._reset()

    ssh0, rpc0 = probe.sshd_accepts(sshd_log), probe.slurm_rpcs(ctx.env)
    cpu0, login0 = resource.getrusage(resource.RUSAGE_SELF), probe.cpu_seconds(login_node(ctx))
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i, j), daemon=True) for i, j in enumerate(job_ids)]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=timeout)
    except threading.BrokenBarrierError:
        pass  # a worker could not connect: its error is reported, the others still run
    t_tracked, rpc_tracked = time.monotonic(), probe.slurm_rpcs(ctx.env)
    with probe.QueryRate(ctx.env, POLL_S) as rate:
        release(ctx, job_ids)
        for t in threads:
            t.join(timeout)
    t1 = time.monotonic()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(1)  # sshd reaps the sessions the workers closed
    login1 = probe.cpu_seconds(login_node(ctx))
    ssh1, rpc1 = probe.sshd_accepts(sshd_log), probe.slurm_rpcs(ctx.env)
    ends = probe.job_end_times(ctx.layout.slurm / "jobcomp.log", set(job_ids))
    delays = [done[j] - ends[j].timestamp() for j in done if j in ends]
    return {
        "tasks": jobs, "succeeded": len(done), "errors": errors[:5],
        "ssh_connections": ssh1 - ssh0,
        "squeue_calls": squeues(rpc1, rpc0),
        "tracking_s": round(t1 - t_tracked, 1),
        "squeue_per_interval": {"mean": round(squeues(rpc1, rpc_tracked) / ((t1 - t_tracked) / POLL_S), 2),
                                "peak": rate.peak},
        "slurm_queries": queries(rpc1, rpc0),
        "login_node_cpu_s": round(login1 - login0, 1),
        "worker_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "worker_slots": jobs,
        "end_to_task_delay": summary_of_delays(delays) if delays else {},
        "wall_s": round(t1 - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=500, help="triggers tracked at once in one event loop")
    ap.add_argument("--airflow-tasks", type=int, default=500,
                    help="deferred task instances tracked by the real triggerer")
    ap.add_argument("--peer", type=int, default=50, help="jobs for the blocking peer (one thread + SSH each)")
    ap.add_argument("--array-every", type=int, default=10, help="every N-th job is an array")
    ap.add_argument("--array-size", type=int, default=4)
    ap.add_argument("--job-seconds", type=int, default=5, help="how long each job (array element) runs")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    from devtools.airflow_client import AirflowClient
    from devtools.stack.config import load_secrets

    shape = (args.array_every, args.array_size, args.job_seconds, args.timeout)
    t0 = time.monotonic()
    with local_stack() as ctx:
        # This process reaches the stack as its services do (the Airflow connection slurm_local,
        # SLURM_CONF), before anything imports Airflow.
        os.environ.update(ctx.env)
        fresh_code(int(ctx.layout.pidfile("airflow-triggerer").read_text().split()[0]))
        ensure_partition(ctx)
        api = AirflowClient(f"http://127.0.0.1:{ctx.layout.ports.airflow}", "admin",
                            load_secrets(ctx.layout)["admin_password"])
        api.wait_for_dag(DAG_ID)
        try:
            loop = run_in_loop(ctx, args.tasks, *shape)
            print("ours, one event loop:", json.dumps(loop), flush=True)
            real = run_ours(ctx, api, args.airflow_tasks, *shape)
            print("ours, real triggerer:", json.dumps(real), flush=True)
            peer = run_peer(ctx, args.peer, *shape)
            print("peer:", json.dumps(peer), flush=True)
        finally:
            for name in ("sfbench-loop", "sfbench-ours", "sfbench-peer"):
                cancel(ctx, name)
    ot, pt = loop["tasks"], peer["tasks"]
    per_task = {
        # Per tracked task, both measured in this process: the peer's figures grow with its job
        # count (one connection, one squeue per interval, one slot per job); ours stay flat.
        "ssh_connections_per_task": (loop["ssh_connections"] / ot, peer["ssh_connections"] / pt),
        "peak_squeue_per_interval_per_task": (loop["squeue_per_interval"]["peak"] / ot,
                                              peer["squeue_per_interval"]["peak"] / pt),
        "cpu_s_per_task_tracker_plus_login_node": ((loop["cpu_s"] + loop["login_node_cpu_s"]) / ot,
                                                   (peer["worker_cpu_s"] + peer["login_node_cpu_s"]) / pt),
        "login_node_cpu_s_per_task": (loop["login_node_cpu_s"] / ot, peer["login_node_cpu_s"] / pt),
    }
    print(json.dumps({
        "bench": "triggerer", "poll_interval_s": POLL_S,
        "ours_one_event_loop": loop, "ours_real_triggerer": real, "peer_blocking": peer,
        "per_task_ours_vs_peer": {k: f"{o:.4g} vs {p:.4g}" for k, (o, p) in per_task.items()},
        "peer_over_ours": {k: round(p / o, 1) if o else None for k, (o, p) in per_task.items()},
        # What the peer holds per job (measured above: one connection, one slot) at our size. Its
        # squeue rate is left out: at 50 jobs it already saturates this machine's login node
        # (login_node_cpu_s close to its wall time), so the rate it reaches is the machine's cap.
        "peer_projected_at_ours_size": {
            "ssh_connections": round(per_task["ssh_connections_per_task"][1] * ot),
            "worker_slots": round(peer["worker_slots"] / pt * ot)},
        "wall_s": round(time.monotonic() - t0, 1),
    }))
    ok = all(r["succeeded"] == r["tasks"] for r in (loop, real, peer))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
