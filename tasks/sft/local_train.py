"""Supervised fine-tuning on the CPU with Hugging Face ``transformers``: the `local` profile's
stand-in for NeMo-Aligner SFT (spec openmath §10.2).

It keeps the parts of ``sft_config_codegen`` that decide what a run *is* -- data format
(``{input}{output}`` with EOS, loss on the output only, input truncated from the right), constant
learning rate, AdamW with weight decay 0.01 and betas 0.9/0.98, dropout, seed 1234, validation
and checkpointing every ``val_check_interval`` steps, the best ``save_top_k`` checkpoints kept by
the validation metric -- and the parts that make a long run survive a cluster:

* it resumes from the newest complete checkpoint in ``--out`` by itself, so a continuation job is
  the same command as the first job;
* SIGTERM/SIGUSR1 (Slurm's ``--signal`` before walltime, or the time limit itself) and
  ``--max-time-s`` (NeMo's ``exp_manager.max_time_per_run``) make it save and stop at the end of
  the current step instead of losing the work since the last validation;
* ``status.json`` says where training stands (``done`` or not), because Slurm's state cannot:
  a job stopped for walltime after saving ends COMPLETED.

The validation metric is the loss on the validation file; NeMo's is code-generation accuracy with
the sandbox, which would take minutes per validation on a CPU.
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


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row.get("input"), str) or not isinstance(row.get("output"), str):
                raise ValueError(f"{path}:{number}: needs string fields 'input' and 'output' (NeMo-Skills SFT format)")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no training examples")
    return rows


def encode(rows: list[dict], tokenizer, max_seq_length: int) -> list[dict]:
    """Token ids and labels: the input is masked out of the loss and cut from its right end when
    input + output + EOS exceed ``max_seq_length`` (the output is never cut)."""
    examples = []
    for row in rows:
        inp = tokenizer(row["input"], add_special_tokens=False)["input_ids"]
        out = tokenizer(row["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        room = max_seq_length - len(out)
        if room < 0:
            out = out[:max_seq_length]
            room = 0
        inp = inp[:room]
        examples.append({"input_ids": inp + out, "labels": [-100] * len(inp) + out})
    return examples


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


def _callbacks(args, stop_reason: dict, started: float):
    from transformers import TrainerCallback

    class StopAndSave(TrainerCallback):
        """Save and stop at the end of the step after a signal or past the time budget."""

        def on_step_end(self, targs, state, control, **kw):
            if not stop_reason.get("why") and args.max_time_s and time.monotonic() - started > args.max_time_s:
                stop_reason["why"] = f"max_time_s={args.max_time_s}"
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


def train(args) -> dict:
    # One process on one node: the rank variables every skillflow job exports (for multi-node
    # launchers) would make transformers start torch.distributed and wait for peers.
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GLOBAL_RANK"):
        os.environ.pop(name, None)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

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

    train_rows = read_jsonl(Path(args.train_data))
    if args.validation_data:
        val_rows = read_jsonl(Path(args.validation_data))
    else:
        if len(train_rows) <= args.holdout:
            raise ValueError(f"{args.train_data}: {len(train_rows)} examples leave none for training after holding "
                             f"out {args.holdout} for validation")
        train_rows, val_rows = train_rows[:-args.holdout], train_rows[-args.holdout:]
    train_set = encode(train_rows, tokenizer, args.max_seq_length)
    val_set = encode(val_rows, tokenizer, args.max_seq_length)
    accum = args.global_batch_size // args.micro_batch_size
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
    )
    # processing_class: every checkpoint carries the tokenizer, so each is a usable HF folder.
    trainer = Trainer(model=model, args=targs, train_dataset=train_set, eval_dataset=val_set,
                      data_collator=_Collator(pad_id), processing_class=tokenizer, callbacks=_callbacks(args, stop_reason, started))
    resume = complete_checkpoints(ckpt_dir)
    resume_from = str(resume[-1][1]) if resume else None
    print(f"examples: train {len(train_set)}, validation {len(val_set)}; steps per epoch {steps_per_epoch}, "
          f"max_steps {max_steps}; " + (f"resuming from {resume_from}" if resume_from else "starting from the base model"),
          flush=True)
    if resume_from and resume[-1][0] >= max_steps:
        step = resume[-1][0]
    else:
        trainer.train(resume_from_checkpoint=resume_from)
        step = trainer.state.global_step
    status = {"global_step": step, "max_steps": max_steps, "done": step >= max_steps,
              "stopped_by": stop_reason.get("why"), "resumed_from": resume_from,
              "steps_per_epoch": steps_per_epoch, "epochs": args.epochs,
              "checkpoints": [p.name for _, p in complete_checkpoints(ckpt_dir)],
              "seconds": round(time.monotonic() - started, 1)}
    write_json_atomic(out / STATUS, status)
    print("status: " + json.dumps(status), flush=True)
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.sft.local_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="HF model folder (the base model, never modified)")
    p.add_argument("--train-data", required=True, help="SFT jsonl with 'input' and 'output'")
    p.add_argument("--validation-data", help="SFT jsonl for the validation metric")
    p.add_argument("--holdout", type=int, default=0,
                   help="without --validation-data: validate on the last N examples of the training file")
    p.add_argument("--out", required=True, help="experiment folder: checkpoints/, tensorboard/, status.json")
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
