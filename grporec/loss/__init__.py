"""The math of GRPO: group advantages and the clipped, KL-penalised policy loss."""
from grporec.loss.advantage import STD_EPS, group_advantages, sibling_advantages
from grporec.loss.grpo import LOG_RATIO_CLAMP, grpo_loss, k3_kl

__all__ = ["group_advantages", "sibling_advantages", "grpo_loss", "k3_kl", "STD_EPS", "LOG_RATIO_CLAMP"]
