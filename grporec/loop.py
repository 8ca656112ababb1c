"""The GRPO loop: `python -m grporec.loop --config FILE` or `torchrun --nproc_per_node=N -m grporec.loop ...`.

One optimizer step, in order:
  1. take this rank's slice of the global batch of prompts (each sample carries its target);
  2. rollout: G catalog completions per prompt (constrained beam search, sampling or dynamic
     sampling) with the policy in eval mode, no grad;
  3. rewards, then group-relative advantages (rl.advantage: one per completion, or per-token
     prefix-tree "sibling" advantages);
  4. reference per-token log-probs (frozen reference; skipped, and never loaded, when beta = 0);
  5. policy log-probs with grad, the GRPO loss and backward over micro-batches; clip the
     gradient norm; AdamW; cosine schedule (num_iterations > 1 reuses the rollout, clipped);
  6. every ref_sync_steps: ref <- alpha * policy + (1 - alpha) * ref;
  7. every eval_steps: HR@K / NDCG@K on the valid split by constrained beam search;
  8. every save_steps, at the end, and on SIGTERM/SIGINT: a checkpoint.
Prompts are split over ranks by whole groups; advantages are per group, so ranks exchange only
logged metrics (and FSDP's gradient reduction). A researcher forks this file for a variant.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

from grporec import dist
from grporec.checkpoint import save_checkpoint
from grporec.config import Config, check_values
from grporec.data.load import load_data_catalog, load_split
from grporec.data.stream import SampleStream
from grporec.decode import build_catalog_trie
from grporec.errors import SettingsError
from grporec.evaluate import eval_samples, evaluate
from grporec.models.format import build_format
from grporec.optim import build_optimizer, guarded_step
from grporec.resume import RESUME_KEYS, new_run_id
from grporec.rewards import RewardInputs, resolve_rewards
from grporec.grpo.batches import add_logps, make_micro_batches
from grporec.grpo.fit import MicroBatchFit, check_auto_micro
from grporec.grpo.rollout import check_one_sid_length, level_codes, roll_out, rollout_metrics
from grporec.grpo.setup import build_rewards, build_rl_dataset, load_models, load_teacher, teacher_items
from grporec.grpo import reference as ref_sync
from grporec.grpo.advantages import advantages as advantages_of
from grporec.grpo.update import policy_backward
from grporec.runlog import RunLog, check_report_to
from grporec.steps import count_update, end_of_step, start_run
from grporec.stop import StopRequest


def check_settings(cfg: Config) -> None:
    """Reject settings the loop cannot run, naming the key (ranges: config.check_values, as on loading)."""
    check_values(cfg)
    check_report_to(cfg.train.report_to)
    named = resolve_rewards(cfg.reward.reward_type, cfg.reward.names, cfg.reward.weights)  # names checked, user rewards imported
    if cfg.rl.add_teacher and "teacher" not in {n for n, _ in named}:
        raise SettingsError(f"rl.add_teacher={cfg.rl.add_teacher} injects the teacher's favourite items; reward.names must "
                            "include teacher (without it they would be scored as plain misses)")
    if cfg.rl.add_teacher + cfg.rl.add_gt >= cfg.rl.num_generations:
        raise SettingsError(f"rl.add_teacher={cfg.rl.add_teacher}" + (" with rl.add_gt" if cfg.rl.add_gt else "")
                            + f" could fill every row of a group of rl.num_generations={cfg.rl.num_generations}: keep at "
                            "least one decoded completion (lower rl.add_teacher)")
    if cfg.rl.advantage == "sibling" and cfg.rl.loss_type == "sequence":
        raise SettingsError("rl.advantage=sibling gives per-token advantages; rl.loss_type=sequence has one ratio per "
                         "sequence: use grpo, token or dr_grpo")


def train(cfg: Config, env: dist.DistEnv) -> dict:
    """Run GRPO as configured. Returns a summary (steps run, per-step metrics on rank 0, ...)."""
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    G, world = cfg.rl.num_generations, env.world_size
    check_settings(cfg)
    if cfg.train.prompts_per_step % world:
        raise SettingsError(f"train.prompts_per_step={cfg.train.prompts_per_step} must be divisible by the {world} ranks")
    per_rank = cfg.train.prompts_per_step // world
    check_auto_micro(cfg.train, world)

    # Data, models, decoder and rewards; every check here runs before any training.
    catalog = load_data_catalog(cfg.data)
    if G > len(catalog.sids):
        raise SettingsError(f"rl.num_generations={G} is more than the catalog's {len(catalog.sids)} distinct SIDs: a group "
                         f"cannot hold {G} different items; lower rl.num_generations")
    dataset = build_rl_dataset(cfg, catalog)
    valid = None
    if cfg.train.eval_steps > 0:
        valid = eval_samples(cfg, load_split(cfg.data, "valid", catalog), cfg.eval.max_rows)
    policy, reference, tokenizer = load_models(cfg, catalog, env)
    fmt = build_format(tokenizer, cfg.data.prompt_format, cfg.model.path, cfg.data.max_prompt_tokens)  # prompts and completions as SFT made them
    trie = build_catalog_trie(fmt, catalog.sids, env.device)
    label_of = {sid: i for i, sid in enumerate(catalog.sids)}
    teacher = load_teacher(cfg, catalog, env.device)  # the teacher reward's model, also rl.add_teacher's
    rewards = build_rewards(cfg, catalog, env.device, teacher)
    # with add_teacher, check_settings has required the teacher reward and RewardSet its SASRec: teacher is set
    teacher_top = teacher_items(teacher, cfg.rl.add_teacher) if cfg.rl.add_teacher else None
    if cfg.rl.advantage == "sibling":
        check_one_sid_length(trie.codes)
    total_steps = cfg.train.max_steps if cfg.train.max_steps > 0 else cfg.train.epochs * math.ceil(len(dataset) / cfg.train.prompts_per_step)
    optimizer, scheduler = build_optimizer(policy, cfg.train, total_steps * cfg.rl.num_iterations)
    stream = SampleStream(dataset, cfg.seed)
    state = {"step": 0, "bad_steps": 0, "skipped_steps": 0, "ref_synced": False, "run_id": new_run_id()}

    start = start_run(out, cfg, cfg.train, env, total_steps, state, model=policy, optimizer=optimizer, scheduler=scheduler,
                      stream=stream, keys=RESUME_KEYS, optimizer_steps=total_steps * cfg.rl.num_iterations, key="train",
                      reference=reference)
    state, resume = start.state, start.resume
    log = RunLog(out, total_steps, state["step"], env.is_main, cfg.train.progress, cfg.train.log_steps,
                 report_to=tuple(cfg.train.report_to), config=dataclasses.asdict(cfg))
    for note in start.notes:
        log.message(f"[grpo] {note}")
    log.message(f"[grpo] {catalog.describe()}; {len(dataset)} prompts ({dict(dataset.sizes)}); "
                f"{total_steps} steps of {cfg.train.prompts_per_step} prompts x {G}; {trie.describe()}"
                + (f"; resumed from {resume}" if resume else "") + ("" if reference is not None else "; beta=0: no reference model"))
    history, stop, checkpoint, first_step, stopped = [], StopRequest(), None, state["step"] + 1, False
    micro = MicroBatchFit(cfg.train, lambda note: log.message(f"[grpo] {note}"))
    if state["step"] >= total_steps:
        log.message(f"[grpo] nothing to do: {resume} is already at the last step ({total_steps}); raise train.max_steps "
                    "to train further")

    def save(step: int) -> Path:
        trainer = {**state, "data": stream.state_dict()}
        return save_checkpoint(out, step, env, cfg, policy, tokenizer, optimizer, scheduler, trainer,
                               reference if state["ref_synced"] else None, cfg.train.save_total_limit)

    try:
        for step in range(state["step"] + 1, total_steps + 1):
            t0 = time.perf_counter()
            times = {}
            # 1. this rank's prompts
            batch = stream.take(cfg.train.prompts_per_step)[env.rank * per_rank:(env.rank + 1) * per_rank]
            # 2. rollout
            chunks = roll_out(policy, fmt, trie, batch, cfg, label_of, step, env.rank * per_rank, env, teacher_top)
            times["rollout"] = time.perf_counter() - t0
            # 3. rewards and advantages
            t = time.perf_counter()
            codes, target_codes = level_codes(chunks)  # [rows, K], [prompts, K]
            reward, reward_metrics = rewards(RewardInputs(
                completions=[x for ch in chunks for x in ch.rollout.sids],
                targets=[s.target_sid for s in batch],
                group_size=G,
                ranks=torch.cat([ch.rollout.ranks.cpu() for ch in chunks]),
                histories=[s.history_sids for s in batch],
                level_codes=codes,
                target_codes=target_codes,
            ))
            advantages, adv_metrics = advantages_of(reward, codes, G, chunks[0].rollout.completion_ids.shape[1], cfg, env)
            times["reward"] = time.perf_counter() - t
            # 4. reference (and, for several updates per rollout, old-policy) log-probs, into micro-batches of
            #    micro.size prompts; 5. the policy's forward + backward over them (both redone at half the size
            #    after running out of device memory, with train.micro_batch_prompts=0)
            def reference_and_backward(size: int):
                t = time.perf_counter()
                batches = make_micro_batches(chunks, advantages, cfg, size)  # what grpo.update.micro_loss sees
                if reference is not None:
                    add_logps(batches, reference, "ref_logps", cfg, env, size)
                if cfg.rl.num_iterations > 1:
                    add_logps(batches, policy, "old_logps", cfg, env, size)
                times["reference"] = time.perf_counter() - t
                t = time.perf_counter()
                backward = policy_backward(policy, batches, cfg, env)  # grpo.update.micro_loss on each
                times["policy"] = time.perf_counter() - t
                return batches, backward

            batches, backward = micro.run(reference_and_backward, policy)
            times["optimizer"] = 0.0
            updates = []  # one record per optimizer step (rl.num_iterations of them)
            for it in range(cfg.rl.num_iterations):
                lr = optimizer.param_groups[0]["lr"]  # the rate this optimizer step uses
                if it > 0:
                    t = time.perf_counter()
                    backward = policy_backward(policy, batches, cfg, env)
                    times["policy"] += time.perf_counter() - t
                loss, loss_metrics, finite = backward
                t = time.perf_counter()
                stepped, grad_norm = guarded_step(policy, optimizer, scheduler, cfg.train.max_grad_norm, finite)
                times["optimizer"] += time.perf_counter() - t
                updates.append({"loss": loss, "lr": lr, "grad_norm": grad_norm, "stepped": stepped})
                if not stepped:
                    log.message(f"[grpo] step {step}" + (f", update {it + 1}" if cfg.rl.num_iterations > 1 else "")
                                + ": non-finite loss or gradient; optimizer step skipped")
                count_update(state, stepped, cfg.train, f"steps had a non-finite loss or gradient (last: step {step}"  # per optimizer step
                             + (", counting each of rl.num_iterations updates" if cfg.rl.num_iterations > 1 else "") + "); "
                             "stopping. Lower train.lr, check the data and rewards, or raise train.max_bad_steps.")
            # 6. reference sync
            if reference is not None and ref_sync.due(step, cfg.rl.sync_ref_model, cfg.rl.ref_sync_steps):
                ref_sync.sync_reference(reference, policy, cfg.rl.ref_sync_alpha)
                state["ref_synced"] = True
            state["step"] = step
            elapsed = time.perf_counter() - t0
            metrics = dist.all_reduce_mean({
                "loss": loss, "reward": reward.mean().item(), **reward_metrics,
                **{k: float(v) for k, v in adv_metrics.items()}, **loss_metrics, **rollout_metrics(chunks),
                **{f"time/{k}": v for k, v in times.items()},
            }, env)
            metrics.update(grad_norm=grad_norm, lr=lr, skipped_steps=state["skipped_steps"],  # the last update's
                           completions_per_s=world * len(batch) * G / elapsed, epoch=stream.epoch)
            if micro.auto:
                metrics["micro_batch_prompts"] = micro.size
            if cfg.rl.num_iterations > 1:  # every optimizer step's own values
                metrics.update({f"update{i + 1}/{k}": float(v) for i, u in enumerate(updates) for k, v in u.items()})
            history.append(metrics)
            log.step(step, metrics)
            # 7. evaluation
            if valid is not None and step % cfg.train.eval_steps == 0:
                with dist.autocast(env, cfg.train):  # bf16 on one CUDA device, as the rollouts
                    eval_metrics, _ = evaluate(policy, fmt, trie, valid, cfg.eval.test_beams, cfg.eval.batch_prompts,
                                               env, catalog, ks=tuple(cfg.eval.ks))
                log.event(step, {k: v for k, v in eval_metrics.items() if k != "ranks"})
            # 8. checkpoint, and stop when asked (a signal, or the session's step budget)
            end = end_of_step(step, first_step, total_steps, cfg.train, stop, env)
            if end.save:
                checkpoint = save(step)
                log.message(f"[grpo] checkpoint {checkpoint}")
            if end.stop:
                log.message(f"[grpo] stopping at step {step} (checkpoint written); resume with train.resume=auto")
                stopped = end.signalled
                break
    finally:
        stop.restore()
        log.close()
    return {"steps": state["step"], "history": history, "reference_loaded": reference is not None,
            "checkpoint": checkpoint, "total_steps": total_steps, "stopped": stopped}


def main(argv: list[str] | None = None, prog: str = "python -m grporec.loop") -> int:
    from grporec import commandline

    return commandline.run_main(train, argv, prog, description="GRPO training of a generative recommender from an SFT model.",
                                example="python -m grporec.loop --config configs/office-tiny.yaml train.max_steps=100",
                                model_of=lambda cfg: (cfg.model.path, "model.path"))


if __name__ == "__main__":
    sys.exit(main())
