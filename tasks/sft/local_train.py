"""Supervised fine-tuning on the CPU with Hugging Face ``transformers``: the `local` profile's
stand-in for NeMo-Aligner SFT (docs/recipes/openmath.md §10.2).

It keeps the parts of ``sft_config_codegen`` that decide what a run *is* -- data format
(``{input}{output}`` with EOS, loss on the output only, input truncated from the right), constant
learning rate, AdamW with weight decay 0.01 and betas 0.9/0.98, dropout, seed 1234, validation
and checkpointing every ``val_check_interval`` steps, the best ``save_top_k`` checkpoints kept by
the validation metric -- and the parts that make a long run survive a cluster:

* it resumes from the newest complete checkpoint in ``--out`` by itself, so a continuation job is
  the same command as the first job;
* ``--deadline-epoch`` (the job script sets it from its own start: walltime minus the margin)
  makes it save and stop at the end of the last step that can finish before the deadline, judged
  by the duration of the step just done, so no trained step is lost even when a loaded machine
  makes steps slow; ``--max-time-s`` (NeMo's ``exp_manager.max_time_per_run``) and SIGTERM/SIGUSR1
  stop it at the end of the current step too;
* ``status.json`` keeps a ``history`` entry per job (Slurm job id, the step it resumed from, the
  step it saved and stopped at, why), so what each job of a chain did is on disk;
* ``status.json`` says where training stands (``done`` or not), because Slurm's state cannot:
  a job stopped for walltime after saving ends COMPLETED.

The validation metric is the loss on the validation file; NeMo's is code-generation accuracy with
the sandbox, which would take minutes per validation on a CPU.

``--apply-chat-template --input-key question --output-key response`` reads OpenRLHF's chat format
instead (docs/recipes/apps_sft.md §1.3, the `local` stand-in of ``apps_sft``): both fields are lists of chat
messages, rendered with the tokenizer's chat template, and rows are filtered, truncated and
masked as OpenRLHF 0.5.3's SFT dataset does (:func:`encode_chat`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
STATUS = "status.json"
TOPK = "topk.json"


def complete_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``checkpoint-N`` folders that a resume can trust, oldest first.

    A job killed while saving leaves a folder without its trainer state or weights; such a
    folder is skipped rather than resumed from.
    """
    found = []
    for path in folder.glob("checkpoint-*"):
        try:
            step = int(path.name.split("-", 1)[1])
        except ValueError:
            continue
        if (path / "trainer_state.json").is_file() and any(path.glob("model*.safetensors")):
            found.append((step, path))
    return sorted(found)


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _is_messages(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in value))


def read_jsonl(path: Path, input_key: str = "input", output_key: str = "output", chat: bool = False) -> list[dict]:
    """The training rows; ``chat``: the two fields are chat message lists (OpenRLHF), else strings (NeMo)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if chat and not (_is_messages(row.get(input_key)) and _is_messages(row.get(output_key))):
                raise ValueError(f"{path}:{number}: needs chat message lists '{input_key}' and '{output_key}' "
                                 "([{\"role\": ..., \"content\": ...}], OpenRLHF --apply_chat_template format)")
            if not chat and not (isinstance(row.get(input_key), str) and isinstance(row.get(output_key), str)):
                raise ValueError(f"{path}:{number}: needs string fields '{input_key}' and '{output_key}' "
                                 "(NeMo-Skills SFT format)")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no training examples")
    return rows


def encode(rows: list[dict], tokenizer, max_seq_length: int, input_key: str = "input",
           output_key: str = "output") -> list[dict]:
    """Token ids and labels: the input is masked out of the loss and cut from its right end when
    input + output + EOS exceed ``max_seq_length`` (the output is never cut)."""
    examples = []
    for row in rows:
        inp = tokenizer(row[input_key], add_special_tokens=False)["input_ids"]
        out = tokenizer(row[output_key], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        room = max_seq_length - len(out)
        if room < 0:
            out = out[:max_seq_length]
            room = 0
        inp = inp[:room]
        examples.append({"input_ids": inp + out, "labels": [-100] * len(inp) + out})
    return examples


def encode_chat(rows: list[dict], tokenizer, max_seq_length: int, input_key: str,
                output_key: str) -> tuple[list[dict], int]:
    """OpenRLHF 0.5.3's SFT dataset with ``--apply_chat_template`` (docs/recipes/apps_sft.md §1.3): (examples,
    rows dropped).

    The prompt is the chat template over ``input_key`` with the generation prompt; the response is
    the template over input + output minus that prompt text. Rows with an empty part, or whose
    prompt has ``max_seq_length - 2`` tokens or more, are dropped. The text (trailing newlines
    stripped, EOS appended unless it ends with it) is cut to ``max_seq_length`` tokens with EOS as
    the last token, and the prompt's tokens are masked out of the loss.
    """
    eos = tokenizer.eos_token
    examples, dropped = [], 0
    for row in rows:
        prompt = tokenizer.apply_chat_template(row[input_key], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(row[input_key] + row[output_key], tokenize=False)
        response = full[len(prompt):]
        prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if not prompt or not response or prompt_len >= max_seq_length - 2:
            dropped += 1
            continue
        text = (prompt + response).rstrip("\n")
        if not text.endswith(eos):
            text += " " + eos
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_seq_length]
        ids[-1] = tokenizer.eos_token_id
        masked = min(prompt_len, len(ids))
        examples.append({"input_ids": ids, "labels": [-100] * masked + ids[masked:]})
    return examples, dropped


class _Collator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch):
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any process (a gloo all-reduce); the flag itself on one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _trainer_class():
    """transformers' Trainer whose validation loss does not depend on the number of processes.

    With several processes, transformers 5.23 normalises each validation batch's loss by the token
    count of all processes' batches (``average_tokens_across_devices``), which weights examples by
    their length; on one process it averages per-batch means. Validation here takes each batch's
    own mean on any number of processes, so a two-node run reports the loss a one-node run does.
    Training keeps the token count of the whole global batch, which is what makes the two runs'
    gradients equal.
    """
    from transformers import Trainer

    class SameLossOnAnyWorld(Trainer):
        validating = False

        def evaluation_loop(self, *args, **kwargs):
            self.validating = True
            try:
                return super().evaluation_loop(*args, **kwargs)
            finally:
                self.validating = False

        def _get_num_items_in_batch(self, batch_samples, device):
            if self.validating:
                return None
            return super()._get_num_items_in_batch(batch_samples, device)

    return SameLossOnAnyWorld


def _callbacks(args, stop_reason: dict, started: float):
    from transformers import TrainerCallback

    class StopAndSave(TrainerCallback):
        """Save and stop at the end of the step after a signal, past the time budget, or when the
        next step (as long as the one just done) would end after the deadline."""

        last_end = None

        def on_step_begin(self, targs, state, control, **kw):
            if self.last_end is None:
                self.last_end = time.time()
            return control

        def on_step_end(self, targs, state, control, **kw):
            now = time.time()
            step_s, self.last_end = now - (self.last_end or now), now
            if not stop_reason.get("why") and args.max_time_s and time.monotonic() - started > args.max_time_s:
                stop_reason["why"] = f"max_time_s={args.max_time_s}"
            if not stop_reason.get("why") and args.deadline_epoch and now + step_s > args.deadline_epoch:
                stop_reason["why"] = f"deadline (next step of ~{step_s:.0f} s would end past it)"
            if _any_rank(bool(stop_reason.get("why"))) and not stop_reason.get("why"):
                # Every rank must stop at the same step, or the others wait in the next all-reduce.
                stop_reason["why"] = "another rank is stopping"
            if stop_reason.get("why"):
                print(f"Stopping at step {state.global_step}: {stop_reason['why']}; saving a checkpoint", flush=True)
                control.should_save = True
                control.should_training_stop = True
            elif state.global_step >= state.max_steps:
                # Validate and save at the very end too, so the last steps count in the average.
                control.should_evaluate = True
                control.should_save = True
            return control

    class KeepTopK(TrainerCallback):
        """NeMo's ``save_top_k`` by the validation metric, plus the newest checkpoint for resuming.

        Checkpoints kept only for averaging lose their optimizer state (the largest file).
        """

        def on_save(self, targs, state, control, **kw):
            if not state.is_world_process_zero:  # one process prunes the shared folder
                return control
            root = Path(targs.output_dir)
            losses = {int(e["step"]): float(e["eval_loss"]) for e in state.log_history if "eval_loss" in e}
            ckpts = complete_checkpoints(root)
            if not ckpts:
                return control
            newest = ckpts[-1][0]
            ranked = sorted((losses[s], s) for s, _ in ckpts if s in losses)
            top = {s for _, s in ranked[: args.save_top_k]}
            for step, path in ckpts:
                if step == newest:
                    continue
                if step not in top:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    for name in ("optimizer.pt", "scheduler.pt"):
                        (path / name).unlink(missing_ok=True)
            write_json_atomic(root / TOPK, {"metric": "eval_loss", "mode": "min", "save_top_k": args.save_top_k,
                                            "checkpoints": [{"step": s, "eval_loss": loss, "path": f"checkpoint-{s}"}
                                                            for loss, s in ranked[: args.save_top_k]]})
            return control

    return [StopAndSave(), KeepTopK()]


def world() -> tuple[int, int]:
    """(this process's rank, number of processes): torchrun's variables, or one process.

    Every skillflow job exports the Slurm task's ranks (for launchers); only ``WORLD_SIZE``, which
    torchrun sets, means peers exist. Without it the rank variables are dropped, since they would
    make transformers start torch.distributed and wait for peers that never come.
    """
    size = int(os.environ.get("WORLD_SIZE") or 1)
    if size <= 1:
        for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GLOBAL_RANK"):
            os.environ.pop(name, None)
        return 0, 1
    return int(os.environ["RANK"]), size


def train(args) -> dict:
    rank, size = world()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    started = time.monotonic()
    stop_reason: dict = {}

    def on_signal(signum, _frame):
        stop_reason.setdefault("why", f"signal {signal.Signals(signum).name}")
        print(f"Received {signal.Signals(signum).name}: will save and stop after this step", flush=True)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)

    out = Path(args.out)
    ckpt_dir = out / CHECKPOINTS
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, args.threads or len(os.sched_getaffinity(0))))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop"):
        if hasattr(model.config, name):
            setattr(model.config, name, args.dropout)

    def examples(path: str) -> list[dict]:
        rows = read_jsonl(Path(path), args.input_key, args.output_key, chat=args.apply_chat_template)
        if not args.apply_chat_template:
            return encode(rows, tokenizer, args.max_seq_length, args.input_key, args.output_key)
        kept, dropped = encode_chat(rows, tokenizer, args.max_seq_length, args.input_key, args.output_key)
        print(f"{path}: {len(kept)} of {len(rows)} examples kept; {dropped} dropped (prompt of "
              f"{args.max_seq_length - 2} tokens or more, or an empty part)", flush=True)
        return kept

    # Encoded before the holdout is split off, so that the chat format's filter cannot empty it.
    train_set = examples(args.train_data)
    if args.validation_data:
        val_set = examples(args.validation_data)
    else:
        if len(train_set) <= args.holdout:
            raise ValueError(f"{args.train_data}: {len(train_set)} examples leave none for training after holding "
                             f"out {args.holdout} for validation")
        train_set, val_set = train_set[:-args.holdout], train_set[-args.holdout:]
    if args.global_batch_size % (args.micro_batch_size * size):
        raise ValueError(f"--global-batch-size {args.global_batch_size} is not a multiple of --micro-batch-size "
                         f"x processes ({args.micro_batch_size} x {size})")
    # Data-parallel: each process takes micro-batches in turn from one shared order (accelerate
    # shards the batches of the seeded sampler), so a step sees the same global batch on any number
    # of processes and accumulates fewer micro-batches each.
    accum = args.global_batch_size // (args.micro_batch_size * size)
    # drop_last, as the config: only whole global batches make a step.
    steps_per_epoch = len(train_set) // args.global_batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{args.train_data}: {len(train_set)} examples are fewer than one global batch "
                         f"({args.global_batch_size})")
    max_steps = args.max_steps or steps_per_epoch * args.epochs

    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / TENSORBOARD)
    targs = TrainingArguments(
        output_dir=str(ckpt_dir), use_cpu=True, seed=args.seed, data_seed=args.seed,
        per_device_train_batch_size=args.micro_batch_size, per_device_eval_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=accum, max_steps=max_steps, learning_rate=args.lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.98,
        max_grad_norm=1.0, eval_strategy="steps", eval_steps=args.val_check_interval,
        save_strategy="steps", save_steps=args.val_check_interval, logging_steps=1, logging_first_step=True,
        report_to=["tensorboard"], dataloader_drop_last=True, disable_tqdm=True, remove_unused_columns=False,
        # torch.distributed on CPUs: gloo, over the interface GLOO_SOCKET_IFNAME names (the profile's env).
        ddp_backend="gloo" if size > 1 else None,
        # Every parameter gets a gradient in a causal LM; the search for unused ones costs a pass.
        ddp_find_unused_parameters=False,
    )
    # processing_class: every checkpoint carries the tokenizer, so each is a usable HF folder.
    trainer = _trainer_class()(model=model, args=targs, train_dataset=train_set, eval_dataset=val_set,
                      data_collator=_Collator(pad_id), processing_class=tokenizer, callbacks=_callbacks(args, stop_reason, started))
    resume = complete_checkpoints(ckpt_dir)
    resume_from = str(resume[-1][1]) if resume else None
    node = os.environ.get("SLURMD_NODENAME") or os.uname().nodename
    print(f"rank {rank} of {size} on node {node}: micro-batch {args.micro_batch_size} x {accum} accumulated x "
          f"{size} processes = global batch {args.global_batch_size}", flush=True)
    print(f"examples: train {len(train_set)}, validation {len(val_set)}; steps per epoch {steps_per_epoch}, "
          f"max_steps {max_steps}; " + (f"resuming from {resume_from}" if resume_from else "starting from the base model"),
          flush=True)
    if resume_from and resume[-1][0] >= max_steps:
        step = resume[-1][0]
    else:
        trainer.train(resume_from_checkpoint=resume_from)
        step = trainer.state.global_step
    if rank != 0:  # the status file is rank 0's to write
        return {"global_step": step, "rank": rank}
    history = []
    try:
        history = list(json.loads((out / STATUS).read_text()).get("history") or [])
    except (OSError, ValueError):
        pass
    history.append({"slurm_job_id": os.environ.get("SLURM_JOB_ID"), "resumed_from_step": resume[-1][0] if resume else 0,
                    "stopped_at_step": step, "stopped_by": stop_reason.get("why")})
    status = {"global_step": step, "max_steps": max_steps, "done": step >= max_steps,
              "stopped_by": stop_reason.get("why"), "resumed_from": resume_from,
              "steps_per_epoch": steps_per_epoch, "epochs": args.epochs,
              "checkpoints": [p.name for _, p in complete_checkpoints(ckpt_dir)],
              "seconds": round(time.monotonic() - started, 1), "history": history}
    write_json_atomic(out / STATUS, status)
    print("status: " + json.dumps(status), flush=True)
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.sft.local_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="HF model folder (the base model, never modified)")
    p.add_argument("--train-data", required=True, help="SFT jsonl with 'input' and 'output' (see --input-key)")
    p.add_argument("--validation-data", help="SFT jsonl for the validation metric")
    p.add_argument("--holdout", type=int, default=0,
                   help="without --validation-data: validate on the last N examples of the training file")
    p.add_argument("--out", required=True, help="experiment folder: checkpoints/, tensorboard/, status.json")
    p.add_argument("--input-key", default="input", help="field of the prompt (default: input)")
    p.add_argument("--output-key", default="output", help="field of the target (default: output)")
    p.add_argument("--apply-chat-template", action="store_true",
                   help="the two fields are chat message lists, rendered with the tokenizer's chat template as "
                        "OpenRLHF's --apply_chat_template does")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="0: epochs x steps per epoch")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--global-batch-size", type=int, default=128)
    p.add_argument("--micro-batch-size", type=int, default=1)
    p.add_argument("--max-seq-length", type=int, default=4096)
    p.add_argument("--val-check-interval", type=int, default=4000)
    p.add_argument("--save-top-k", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-time-s", type=int, default=0, help="save and stop after this many seconds (0: never)")
    p.add_argument("--deadline-epoch", type=float, default=0,
                   help="save and stop before this time (seconds since the epoch) at the end of the last step "
                        "that can finish by then (0: none)")
    p.add_argument("--threads", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.global_batch_size % args.micro_batch_size:
        print(f"--global-batch-size {args.global_batch_size} is not a multiple of --micro-batch-size "
              f"{args.micro_batch_size}", file=sys.stderr)
        return 2
    for name in ("epochs", "val_check_interval", "save_top_k", "global_batch_size", "max_seq_length"):
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if not args.validation_data and args.holdout < 1:
        print("give --validation-data or --holdout N", file=sys.stderr)
        return 2
    if not math.isfinite(args.lr) or args.lr <= 0:
        print(f"--lr {args.lr} must be a positive number", file=sys.stderr)
        return 2
    try:
        train(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
