"""Rows of docs/reliability.md that tests elsewhere in the repository already prove.

Each row names those tests by pytest node id; ``make faults`` runs them in the same session as
tests/faults so the document reports what ran, and ``python -m tests.faults.cases`` prints the
node ids for the Makefile. Rows proven by tests in this folder carry the ``reliability`` marker
instead.
"""
from __future__ import annotations

from dataclasses import dataclass

SECTIONS = ("Faults", "Bad input", "Security")


@dataclass(frozen=True)
class Case:
    section: str
    case: str
    promise: str
    tests: tuple[str, ...]


U = "tests/unit/"
I = "tests/integration/"  # noqa: E741

CATALOGUE: tuple[Case, ...] = (
    Case("Faults", "sshd killed while jobs run, then restarted",
         "the shared poller reconnects, every task succeeds, a retried task reconnects to its job: no job is "
         "submitted twice",
         (I + "test_slurm_operator.py::test_retry_reconnects_instead_of_submitting_twice",)),
    Case("Faults", "a task killed while deferred, before or after the triggerer picked its trigger up",
         "the job is cancelled either way: by the trigger's on_kill once a triggerer runs it, and before that "
         "(triggerer held with SIGSTOP) by the API server's listener",
         (I + "test_airflow_stack.py::test_task_killed_while_deferred_cancels_the_job",
          I + "test_airflow_stack.py::test_task_killed_before_the_triggerer_picks_it_up_cancels_the_job")),
    Case("Faults", "a task killed while it waits on the worker (deferrable=False)",
         "the supervisor's SIGTERM reaches the operator's on_kill, which cancels the job",
         (I + "test_airflow_stack.py::test_task_killed_on_the_worker_cancels_the_job",)),
    Case("Faults", "a deferral that passes wait_timeout",
         "the task fails in its try and cancels the job it gave up on",
         (I + "test_airflow_stack.py::test_deferral_that_passes_wait_timeout_cancels_its_job",)),
    Case("Faults", "a job the cluster no longer knows",
         "in neither squeue nor accounting for 5 polls in a row, deferred or on the worker, it ends LOST and the "
         "task fails with a retryable SlurmJobLost instead of waiting forever",
         (I + "test_slurm_operator.py::test_a_job_slurm_does_not_know_is_lost",)),
    Case("Faults", "a training job that exits 0 without writing its progress",
         "the chain stops with an error naming where progress was looked for; no continuation is submitted",
         (I + "test_slurm_operator.py::test_training_job_that_exits_0_without_progress_is_not_resubmitted",)),
    Case("Faults", "a job that runs past its time limit",
         "Slurm ends it TIMEOUT and the task fails with SlurmJobTimeout naming the state; accounting agrees",
         (I + "test_slurm_operator.py::test_time_limit_gives_timeout_outcome",)),
    Case("Faults", "a training job that reaches its walltime",
         "each job of the chain saves and stops by itself inside its walltime (COMPLETED, not TIMEOUT), and the "
         "next job continues from that checkpoint",
         (I + "test_openmath_sft.py::test_job_cut_at_its_time_limit_is_continued_from_its_checkpoint",)),
    Case("Bad input", "malformed jsonl line",
         "the error names the file and the 1-based line; nothing is written over the old output",
         (U + "test_grading_files.py::test_malformed_line_names_file_and_line_and_writes_nothing",
          U + "test_sft_data_prepare.py::test_malformed_line_names_file_and_line_and_keeps_old_output",
          U + "test_generation.py::test_cli_reports_bad_input_line",
          U + "test_apps_sample.py::test_prompt_file_errors_name_the_line")),
    Case("Bad input", "partial outputs resumed, never overwritten",
         "a rerun keeps finished lines, rewrites only a torn last line, and resubmits only chunks without "
         "a .done marker",
         (U + "test_generation.py::test_resume_rewrites_a_truncated_last_line",
          U + "test_apps_sample.py::test_partial_problem_and_torn_line_are_dropped_on_resume",
          U + "test_apps_evaluate.py::test_resume_and_hostile_samples",
          U + "test_openmath_datagen.py::test_resubmission_submits_arrays_only_over_missing_seeds")),
    Case("Security", "params cannot inject shell into sbatch scripts",
         "every recipe builder fed shell metacharacters renders a script that parses, runs with the payload "
         "as literal text, and creates no marker file",
         (U + "test_recipes_injection.py",
          I + "test_slurm_operator.py::test_injection_in_params_stays_literal")),
    Case("Security", "params cannot inject shell into SSH commands",
         "hostile paths and job ids sent to the login node stay data: no command runs",
         (U + "test_slurm_commands.py::test_job_ids_are_checked_before_reaching_a_shell",
          U + "test_slurm_commands.py::test_write_file_command_never_puts_content_in_the_shell",
          U + "test_slurm_spec.py::test_injection_in_sbatch_or_mount_values_is_refused",
          U + "test_slurm_trigger.py::test_trigger_rejects_a_job_id_that_is_not_one")),
    Case("Security", "sandbox: fork bomb", "contained by the process limit; the host is unaffected",
         (U + "test_sandbox.py::test_fork_bomb_is_contained",)),
    Case("Security", "sandbox: memory bomb", "a 10 GB allocation fails inside the sandbox",
         (U + "test_sandbox.py::test_ten_gigabyte_allocation_fails_inside",)),
    Case("Security", "sandbox: infinite loop", "timed out, and no process is left behind",
         (U + "test_sandbox.py::test_infinite_loop_times_out_and_leaves_nothing",
          U + "test_sandbox.py::test_background_process_of_a_finished_program_is_killed")),
    Case("Security", "sandbox: writes outside its folder", "refused",
         (U + "test_sandbox.py::test_writes_outside_the_working_directory_fail",)),
    Case("Security", "sandbox: network access", "unreachable",
         (U + "test_sandbox.py::test_network_is_unreachable",)),
    Case("Security", "sandbox: reading the host's environment", "no host secret in the environment or /proc",
         (U + "test_sandbox.py::test_environment_and_proc_show_no_host_secret",)),
    Case("Security", "sandbox: reading the answer key",
         "a program sees a minimal root (the interpreter and its libraries, its scratch folder): not the "
         "--problems file, the checkout, the shipped samples, shared data, var, home or /etc",
         (U + "test_sandbox_adversarial.py::test_answer_key_is_out_of_reach_of_an_apps_sample",
          U + "test_sandbox_adversarial.py::test_program_sees_a_minimal_root")),
    Case("Security", "sandbox: the previous execution in memory",
         "a program finds nothing of an earlier execution (code, stdin, output) in its memory, cannot "
         "replay another APPS sample's outputs, and a service caller finds nothing of another's",
         (U + "test_sandbox_adversarial.py::test_next_program_finds_nothing_of_the_previous_one_in_memory",
          U + "test_sandbox_adversarial.py::test_apps_sample_cannot_replay_the_previous_samples_outputs",
          U + "test_sandbox_service.py::test_one_caller_finds_nothing_of_another_callers_program")),
    Case("Security", "sandbox: sparse output",
         "output is capped counting holes like bytes and moved without copies: two 64 MiB sparse streams cost "
         "the evaluator less than four times the cap",
         (U + "test_sandbox_adversarial.py::test_sparse_output_does_not_exhaust_the_evaluators_memory",)),
    Case("Security", "sandbox: SysV IPC",
         "shared memory and message queues live in an IPC namespace of the execution and die with it",
         (U + "test_sandbox_adversarial.py::test_sysv_ipc_objects_die_with_the_program",)),
    Case("Security", "sandbox: host Unix sockets", "connect() to a host socket fails: its path does not exist",
         (U + "test_sandbox_adversarial.py::test_host_unix_sockets_are_unreachable",)),
    Case("Security", "sandbox: inode exhaustion", "at most max_files files, folders and links per execution",
         (U + "test_sandbox_adversarial.py::test_inodes_are_limited",)),
    Case("Security", "sandbox: CPU through helper processes",
         "cpu_s and one CPU hold for all processes of a program together (cgroup), not per process",
         (U + "test_sandbox_adversarial.py::test_cpu_is_limited_per_program_not_per_process",
          U + "test_sandbox_adversarial.py::test_a_program_gets_one_core_however_many_processes_it_runs")),
)


# What the suite found that is not a promise of ours; written under the table.
LIMITATIONS: tuple[str, ...] = (
    "A SIGKILLed slurmctld loses the job state written since its last save. On this Slurm (22.05) a job "
    "started seconds before such a crash was recovered as PENDING, its relaunch failed and Slurm held it "
    "(reason launch_failed_requeued_held, needs `scontrol release`), and its job id was given again to the "
    "next submission. The slurmctld case therefore restarts the controller cleanly (SIGTERM saves state); "
    "a held job stays deferred until an administrator releases it or the task's wait_timeout ends it.",
    "A compute node whose slurmd dies is declared down by slurmctld only after SlurmdTimeout (300 s on the "
    "local stack); the node-failure case declares it down at once with `scontrol update state=down`.",
    "Slurm holds a requeued job (BeginTime) before it may start again; the preemption case releases it with "
    "`scontrol update StartTime=now`.",
    "A submit command retried after a dropped connection finds the first attempt's job by the token in "
    "its comment through squeue, which keeps a finished job only for MinJobAge (300 s on the local stack); "
    "the jobcomp log has no comment field. The retry follows the drop within seconds; a lock and an id "
    "file on the login node cover a first attempt that is still running or that finished writing.",
    "A task ended by a person while deferred has its job cancelled by a listener in the API server "
    "(operators/slurm/listener.py); a task ended otherwise before its trigger runs (a DAG run marked "
    "failed as a whole) relies on the trigger's on_kill, which Airflow calls only for a running trigger.",
)


def node_ids() -> list[str]:
    seen: list[str] = []
    for case in CATALOGUE:
        seen += [t for t in case.tests if t not in seen]
    return seen


if __name__ == "__main__":
    print(" ".join(node_ids()))
