"""SFT warm start: `python -m grporec.sft --config FILE` (also under torchrun).

The explicit loop mirrors the GRPO loop and shares its config, distributed, logging, optimizer
and checkpoint code. Each step: take this rank's slice of `sft.train.prompts_per_step` samples
from the mix of `sft.datasets` (next SID, title -> SID, SID -> title, title history -> SID);
cross-entropy on completion tokens only (prompt tokens carry no loss), accumulated over
micro-batches of similar lengths (`sft.length_sorted_micro_batches`) weighted by their share of the
batch's completion tokens; clip; AdamW; warmup + cosine. Every `sft.train.eval_steps` the valid loss
(next-SID prompts of the valid split) is measured; a lower one saves `<output_dir>/best` (HF format,
what the GRPO loop and the evaluator load); `sft.patience` evaluations without improvement stop the
run early.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

from grporec import dist
from grporec.checkpoint import save_checkpoint, save_model_atomically
from grporec.config import Config, check_values
from grporec.data import datasets as D
from grporec.data.catalog import Catalog
from grporec.data.load import load_data_catalog, load_split, successor_hints, training_rows
from grporec.data.stream import SampleStream
from grporec.models.inputs import forward_kwargs, left_pad, positions
from grporec.errors import SettingsError
from grporec.logprobs import token_logps
from grporec.models.dropout import add_residual_dropout
from grporec.models.format import PromptFormat, format_for
from grporec.models.lora import check_lora, lora_for
from grporec.models.placement import place
from grporec.models.policy import extend_policy, load_policy
from grporec.models.settings import settings_of
from grporec.models.recompute import enable_activation_checkpointing
from grporec.models.tiny import build_tiny_for_data
from grporec.models.tokenizer import check_sid_tokenizer
from grporec.optim import build_optimizer, guarded_step
from grporec.resume import SFT_RESUME_KEYS, new_run_id
from grporec.runlog import RunLog, check_report_to
from grporec.steps import count_update, end_of_step, start_run
from grporec.stop import StopRequest

SFT_DATASETS = ("sid_history", "sid_suffix", "sid_markov", "sid_transition", "title2sid", "sid2title", "title_history")
IGNORE = -100  # label of tokens that carry no loss (prompt and padding)


def build_sft_dataset(cfg: Config, catalog: Catalog) -> D.MixedDataset:
    unknown = [d for d in cfg.sft.datasets if d not in SFT_DATASETS]
    if unknown or not cfg.sft.datasets:
        raise SettingsError(f"sft.datasets: unknown {unknown[0]!r}; choose from {list(SFT_DATASETS)}" if unknown else "sft.datasets is empty")
    rows = training_rows(cfg.data, catalog, "sft")  # without the rows data.hold_back keeps for GRPO
    compact = cfg.data.prompt_text == "compact"
    hints = successor_hints(cfg.data, catalog, cfg.seed)
    unhinted = [d for d in cfg.sft.datasets if d in ("sid_markov", "sid_transition", "title_history")]
    if hints is not None and unhinted:
        raise SettingsError(f"sft.datasets: {unhinted[0]!r} has no successor-hints prompt; with data.successor_hints="
                            f"{cfg.data.successor_hints} use sid_history, sid_suffix and the item tasks")
    make = {
        "sid_history": lambda: D.SftSidDataset(rows, cfg.data.max_history, compact, hints, training=True),
        "sid_suffix": lambda: D.SftSuffixDataset(rows, cfg.data.max_history, compact, hints),
        "sid_markov": lambda: D.SftMarkovDataset(rows, cfg.data.max_history, compact, cfg.seed),
        "sid_transition": lambda: D.SftTransitionDataset(rows, cfg.data.max_history, compact),
        "title2sid": lambda: D.SftTitle2SidDataset(catalog, compact),
        "sid2title": lambda: D.SftSid2TitleDataset(catalog),
        "title_history": lambda: D.SftTitleHistoryDataset(rows, cfg.data.max_history),
    }
    return D.MixedDataset([(make[name](), None) for name in cfg.sft.datasets], seed=cfg.seed)


def init_model(cfg: Config, catalog: Catalog, env: dist.DistEnv):
    """The model SFT starts from: the tiny from-scratch one, or an HF base model extended with SID tokens."""
    def build():
        if cfg.sft.init == "tiny":
            return build_tiny_for_data(cfg)
        model, tokenizer = load_policy(cfg.sft.init, "float32", key="sft.init")
        extend_policy(model, tokenizer, catalog.sid_tokens, cfg.model.pad_vocab_to_multiple_of)
        check_sid_tokenizer(tokenizer, catalog.sids, source=cfg.sft.init)
        return model, tokenizer

    check_lora(cfg.model.lora)
    model, tokenizer = place(build, env, cfg.sft.train.mixed_precision,  # under torchrun: built on rank 0 only
                             prepare=lora_for(cfg.model.lora, catalog.sid_tokens))
    model.config.use_cache = False
    add_residual_dropout(model, cfg.sft.dropout)
    if cfg.sft.train.gradient_checkpointing:
        enable_activation_checkpointing(model)
    return model, tokenizer


Tokens = tuple[list[int], list[int]]  # one sample's (prompt ids, completion ids)


def tokenize(fmt: PromptFormat, samples: list[D.Sample]) -> list[Tokens]:
    """Each sample's (prompt ids, completion ids): the format's, exactly as rollouts and evaluation build them
    (the prompt cut to data.max_prompt_tokens, as in every stage)."""
    return [(fmt.prompt_ids(s.prompt), fmt.completion_ids(s.completion)) for s in samples]


def pad_tokens(tokens: list[Tokens], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, labels) [n, T], left-padded: labels are the completion's ids, IGNORE elsewhere.
    Completions (then their terminator) end every row, so the last positions hold all of them."""
    ids, mask = left_pad([p + c for p, c in tokens], pad_id, device)
    lab = torch.full_like(ids, IGNORE)
    for i, (p, c) in enumerate(tokens):
        lab[i, ids.shape[1] - len(c):] = torch.tensor(c, device=device)
    return ids, mask, lab


def encode(fmt: PromptFormat, samples: list[D.Sample], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, labels) of `samples` (tokenize, then pad_tokens)."""
    return pad_tokens(tokenize(fmt, samples), fmt.pad_id, device)


def micro_batches(tokens: list[Tokens], size: int, by_length: bool) -> list[list[Tokens]]:
    """A step's tokenized samples in micro-batches of `size`, shortest first when `by_length`: left padding fills
    every row to its micro-batch's longest, and the gradient, a token-weighted sum over the step, does not depend
    on which samples share a micro-batch."""
    if by_length:
        tokens = sorted(tokens, key=lambda t: len(t[0]) + len(t[1]))  # stable: ties keep the stream's order
    return [tokens[i:i + size] for i in range(0, len(tokens), size)]


def completion_loss_sum(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of token cross-entropies over labelled positions, their count); logits only where needed."""
    has_label = (labels != IGNORE).any(0).nonzero()
    keep = ids.shape[1] - int(has_label[0]) + 1  # from the position before the first label to the end
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=False,
                   **forward_kwargs(model, keep_last=keep)).logits[:, -keep:-1]  # position t predicts token t+1
    target = labels[:, -(keep - 1):]
    labelled = target != IGNORE
    # cross-entropy = -log p(label), from the chunked head: no fp32 copy of [B, keep, V] is kept
    loss = -(token_logps(logits, target.masked_fill(~labelled, 0)) * labelled).sum()
    return loss, labelled.sum()


@torch.no_grad()
def valid_loss(model, fmt: PromptFormat, samples, cfg: Config, env: dist.DistEnv) -> float:
    """Mean completion-token cross-entropy over the valid samples, over all ranks."""
    model.eval()
    per_rank = math.ceil(len(samples) / env.world_size)
    mine = samples[env.rank * per_rank:(env.rank + 1) * per_rank]
    total, count = 0.0, 0
    step = cfg.sft.train.micro_batch_prompts
    for i in range(0, per_rank, step):  # the same number of forwards on every rank (FSDP)
        part = mine[i:i + step] or samples[:1]
        with dist.autocast(env, cfg.sft.train):
            loss, n = completion_loss_sum(model, *encode(fmt, part, env.device))
        if mine[i:i + step]:
            total, count = total + loss.item(), count + int(n)
    model.train()
    return dist.all_reduce_sum(total, env) / max(dist.all_reduce_sum(count, env), 1)


class Selector:
    """Which SFT model is best: the lowest valid loss, or the highest valid NDCG@10 of constrained
    beam search (`sft.select_on`), on the same valid rows (`sft.valid_max_rows`)."""

    def __init__(self, cfg: Config, fmt: PromptFormat, catalog: Catalog, valid_rows, env: dist.DistEnv):
        self.on, self.env, self.fmt, self.beams = cfg.sft.select_on, env, fmt, cfg.sft.select_beams
        self.train = cfg.sft.train
        self.key = "valid_loss" if self.on == "loss" else "valid_ndcg@10"
        self.worst = float("inf") if self.on == "loss" else float("-inf")
        if self.on == "ndcg":
            from grporec.decode import build_catalog_trie
            from grporec.evaluate import eval_samples, split_transitions

            self.samples = eval_samples(cfg, valid_rows, cfg.sft.valid_max_rows)
            self.transitions = split_transitions(cfg, catalog)  # to log the seen / unseen rows apart
            self.trie = build_catalog_trie(fmt, catalog.sids, env.device)
            self.batch = cfg.eval.batch_prompts

    def better(self, value: float, best: float) -> bool:
        return value < best if self.on == "loss" else value > best

    def measure(self, model) -> dict:
        if self.on == "loss":
            return {}
        from grporec.evaluate import predict, score

        with dist.autocast(self.env, self.train):  # bf16 on one CUDA device, as training computes
            preds = predict(model, self.fmt, self.trie, self.samples, self.beams, self.batch, self.env)
        m = score(preds, self.samples, self.beams, ks=(10,), transitions=self.transitions)
        buckets = {f"valid_{part}_ndcg@10": m[part]["ndcg@10"] for part in ("seen", "unseen") if m[part]["rows"]}
        return {"valid_ndcg@10": m["ndcg@10"], "valid_hr@10": m["hr@10"], **buckets}


def check_sft_settings(cfg: Config) -> None:
    """Reject SFT settings that cannot run, naming the key."""
    check_values(cfg)  # every range (config.VALUE_RANGES), as on loading
    if cfg.sft.select_on == "ndcg" and cfg.sft.select_beams < 10:
        raise SettingsError(f"sft.select_beams must be at least 10 with sft.select_on=ndcg (NDCG@10), got {cfg.sft.select_beams}")
    tc = cfg.sft.train
    check_report_to(tc.report_to, "sft.train.report_to")
    if cfg.sft.max_prompt_tokens is not None:
        raise SettingsError(f"sft.max_prompt_tokens={cfg.sft.max_prompt_tokens}: prompts are now cut by one rule in every stage; "
                            f"set data.max_prompt_tokens={cfg.sft.max_prompt_tokens} instead")


def train_sft(cfg: Config, env: dist.DistEnv) -> dict:
    tc = cfg.sft.train
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    check_sft_settings(cfg)
    if tc.prompts_per_step % env.world_size:
        raise SettingsError(f"sft.train.prompts_per_step={tc.prompts_per_step} must be divisible by the {env.world_size} ranks")
    per_rank = tc.prompts_per_step // env.world_size
    catalog = load_data_catalog(cfg.data)
    dataset = build_sft_dataset(cfg, catalog)
    valid_rows = load_split(cfg.data, "valid", catalog)
    valid = D.SftSidDataset(valid_rows, cfg.data.max_history, cfg.data.prompt_text == "compact",
                            successor_hints(cfg.data, catalog, cfg.seed)).samples
    valid = valid[: cfg.sft.valid_max_rows] if cfg.sft.valid_max_rows > 0 else valid
    model, tokenizer = init_model(cfg, catalog, env)
    fmt = format_for(tokenizer, cfg.data.prompt_format, cfg.sft.init if cfg.sft.init != "tiny" else None, key="sft.init",
                     max_prompt_tokens=cfg.data.max_prompt_tokens)
    selector = Selector(cfg, fmt, catalog, valid_rows, env)
    total_steps = tc.max_steps if tc.max_steps > 0 else tc.epochs * math.ceil(len(dataset) / tc.prompts_per_step)
    optimizer, scheduler = build_optimizer(model, tc, total_steps)
    stream = SampleStream(dataset, cfg.seed)
    state = {"step": 0, "best_valid": selector.worst, "evals_since_best": 0, "bad_steps": 0, "skipped_steps": 0,
             "run_id": new_run_id()}
    start = start_run(out, cfg, tc, env, total_steps, state, model=model, optimizer=optimizer, scheduler=scheduler, stream=stream,
                      keys=SFT_RESUME_KEYS, optimizer_steps=total_steps, key="sft.train", aside=("best",))
    state, resume = start.state, start.resume
    log = RunLog(out, total_steps, state["step"], env.is_main, tc.progress, tc.log_steps, desc="sft",
                 report_to=tuple(tc.report_to), config=dataclasses.asdict(cfg))
    for note in start.notes:
        log.message(f"[sft] {note}")
    log.message(f"[sft] {len(dataset)} samples ({dict(dataset.sizes)}), {len(valid)} valid; {total_steps} steps of "
                f"{tc.prompts_per_step}; {fmt.describe()}" + (f"; resumed from {resume}" if resume else ""))
    history, evals, first_step, stop_request, stopped = [], [], state["step"] + 1, StopRequest(), False
    eval_every = tc.eval_steps if tc.eval_steps > 0 else total_steps

    def save(step):
        return save_checkpoint(out, step, env, cfg, model, tokenizer, optimizer, scheduler,
                               {**state, "data": stream.state_dict()}, keep=tc.save_total_limit)

    try:
        for step in range(state["step"] + 1, total_steps + 1):
            t0 = time.perf_counter()
            batch = stream.take(tc.prompts_per_step)[env.rank * per_rank:(env.rank + 1) * per_rank]
            encoded = [pad_tokens(part, fmt.pad_id, env.device) for part in
                       micro_batches(tokenize(fmt, batch), tc.micro_batch_prompts, cfg.sft.length_sorted_micro_batches)]
            mean_tokens = dist.all_reduce_sum(sum(int((lab != IGNORE).sum()) for _, _, lab in encoded), env) / env.world_size
            losses = []  # on the device until the step's end: no host sync between backward and the next forward
            for ids, mask, labels in encoded:
                with dist.autocast(env, tc):
                    loss, _ = completion_loss_sum(model, ids, mask, labels)
                (loss / mean_tokens).backward()  # token-weighted: the sum equals the batch mean's gradient
                losses.append(loss.detach())
            losses = torch.stack(losses).tolist()
            loss_sum, finite = sum(losses), all(math.isfinite(x) for x in losses)
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            stepped, grad_norm = guarded_step(model, optimizer, scheduler, tc.max_grad_norm, not dist.any_rank(not finite, env))
            count_update(state, stepped, tc, f"SFT steps had a non-finite loss or gradient (last: step {step}); lower "
                                             "sft.train.lr or check the data")
            state["step"] = step
            metrics = dist.all_reduce_mean({"loss": loss_sum / mean_tokens}, env)
            metrics.update(grad_norm=grad_norm, lr=lr, epoch=stream.epoch, skipped_steps=state["skipped_steps"],
                           samples_per_s=tc.prompts_per_step / (time.perf_counter() - t0))
            history.append(metrics)
            log.step(step, metrics, keys=("loss",))
            stop = False
            if step % eval_every == 0 or step == total_steps:
                measured = {"valid_loss": valid_loss(model, fmt, valid, cfg, env), **selector.measure(model)}
                v = measured[selector.key]
                improved = selector.better(v, state["best_valid"])
                if improved:
                    state["best_valid"], state["evals_since_best"] = v, 0
                    save_model_atomically(model, tokenizer, out / "best", env, settings_of(cfg))
                else:
                    state["evals_since_best"] += 1
                evals.append({"step": step, **measured, "best": improved})
                log.event(step, {**measured, f"best_{selector.key}": state["best_valid"]})
                stop = cfg.sft.patience > 0 and state["evals_since_best"] >= cfg.sft.patience
                if stop:
                    log.message(f"[sft] early stop at step {step}: no better {selector.key} in {cfg.sft.patience} evaluations")
            end = end_of_step(step, first_step, total_steps, tc, stop_request, env, early_stop=stop)
            if end.save:
                save(step)
            if end.signalled:
                log.message(f"[sft] stopping at step {step} (checkpoint written); run again to resume")
                stopped = True
            if end.stop:
                break
    finally:
        stop_request.restore()
        log.close()
    log.message(f"[sft] best {selector.key} {state['best_valid']:.4f}; model in {out / 'best'}")
    return {"steps": state["step"], "history": history, "evals": evals, "best": out / "best", "stopped": stopped,
            f"best_{selector.key}": state["best_valid"]}


def main(argv: list[str] | None = None, prog: str = "python -m grporec.sft") -> int:
    from grporec import commandline

    return commandline.run_main(train_sft, argv, prog, description="Supervised warm start (SFT) of a generative recommender.",
                                example="python -m grporec.sft --config configs/office-tiny.yaml output_dir=runs/office-tiny/sft",
                                model_of=lambda cfg: (None if cfg.sft.init == "tiny" else cfg.sft.init, "sft.init"))


if __name__ == "__main__":
    sys.exit(main())
