"""The stages the GRPO loop (`grporec/loop.py`) calls, one module a stage, so that the loop reads
as the algorithm and its imports as its table of contents:

- `setup`: the prompt dataset, the policy and reference (with their pre-flight checks), the rewards;
- `rollout`: G completions per prompt in decode batches (`DecodeBatch`), and their metrics;
- `batches`: the rows cut into `MicroBatch` records, with the reference's and old policy's
  log-probs filled in;
- `advantages`: the advantages of a batch's rewards (group or per-token sibling; the global
  batch's std when it scales by that);
- `update`: the loss of a micro-batch (`micro_loss`, the extension point of loss variants) and
  the backward accumulated over micro-batches;
- `reference`: the reference model's soft sync to the policy.
"""
