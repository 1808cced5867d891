"""The policy-gradient pieces of OPD and GRPO, as pure tensor functions.

Shapes: ``(batch, tokens)`` for per-token quantities, with a 0/1 ``mask`` that
marks response tokens. All losses are "token-mean": the sum over response
tokens of the batch divided by their number.
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[t, targets[t]]`` per position, in float32.

    ``logits[:, t]`` must predict ``targets[:, t]`` (shift before calling).
    """
    logits = logits.float()
    return torch.gather(logits.log_softmax(-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def opd_advantages(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """OPD's per-token advantage  A_t = log p_T(y_t | y_<t) - log p_S(y_t | y_<t).

    This is minus the sampled-token reverse-KL estimate ("k1"); it is a
    constant of the update (no gradient flows through it).
    """
    return (teacher_logp - student_logp).detach()


def grpo_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's group-normalised advantage per response: (r - mean_g) / (std_g + eps).

    ``rewards`` has one entry per response, groups contiguous; std is the
    unbiased standard deviation within the group (as verl). Returns one value
    per response (broadcast it over the response's tokens).
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    return ((grouped - mean) / (std + eps)).view(-1)


def full_reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """The per-position reverse KL over the whole vocabulary, token-mean:

        sum_t mask_t sum_v p_S(v | y_<t) (log p_S(v | y_<t) - log p_T(v | y_<t)) / sum_t mask_t

    with both distributions in float32 (``*_logits[:, t]`` predicts position t + 1). Its
    gradient is the exact expectation, over the next token, of the sampled-token k1
    gradient at each position: OPD without the sampling noise of credit on one token.
    """
    logp = student_logits.float().log_softmax(-1)
    teacher_logp = teacher_logits.float().log_softmax(-1)
    per_token = (logp.exp() * (logp - teacher_logp)).sum(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2
                  ) -> torch.Tensor:
    """PPO-clip, token-mean:  mean_t max(-A r_t, -A clip(r_t, 1 - e_lo, 1 + e_hi)),

    with ``r_t = exp(logp - old_logp)``. ``clip_high > clip_low`` is DAPO's
    clip-higher. On a fully on-policy single mini-batch ``r_t = 1`` and the
    gradient is ``-A grad log p`` (REINFORCE with the given advantage).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)
