"""The stages the GRPO loop (`grporec/loop.py`) calls, one module a stage, so that the loop reads
as the algorithm and its imports as its table of contents:

- `setup`: the prompt dataset, the policy and reference (with their pre-flight checks), the rewards;
- `rollout`: G completions per prompt in decode batches (`DecodeBatch`), and their metrics;
- `batches`: the rows cut into `MicroBatch` records, with the reference's and old policy's
  log-probs filled in;
- `update`: the loss of a micro-batch (`micro_loss`, the extension point of loss variants), the
  accumulated backward, the global reward std, the reference sync.
"""
