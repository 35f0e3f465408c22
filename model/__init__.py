"""The Punchline transformer: a GPT-style decoder-only language model in Flax NNX.

Read in this order: config.py (every size), positional.py (where is each token?), linear.py
(the layer every projection uses), attention.py (which earlier tokens matter?),
feed_forward.py (per-token thinking), normalization.py (LayerNorm and RMSNorm), gpt.py (the
whole stack), loss.py (what training minimises), sampling.py and generate.py (writing
jokes), checkpoint.py (the model folder on disk) and weight_files.py (its weights, in one
file or in shards). The explainer's analyses: trace.py (the forward pass with its insides
kept), lens.py (the logit lens), knockout.py and ablation.py (heads switched off, the
importance map), branching.py (what changed in a branch), roles.py (what kind of pattern
each head computes), flow.py (how information reached a token), attribution.py (gradient x
input, integrated gradients) and snapshots.py (weights saved along a training run).
"""

from model.config import PRESETS, ConfigError, GPTConfig
from model.gpt import GPT, count_parameters

__all__ = ["GPT", "PRESETS", "ConfigError", "GPTConfig", "count_parameters"]
