"""openpi's data transforms around π0, written out in numpy from openpi's code (commit 15a9616; line references in
docs/reference/openpi-serving.md). Shared by serve_fixtures.py (transforms alone) and pi0_fixtures.py (the transforms
around the tiny π0). Pure numpy: works in both pinned environments."""
import numpy as np


def parse_image(image):
    """openpi's _parse_image (droid_policy.py, libero_policy.py): float -> uint8 by truncation of 255·x, CHW -> HWC."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.floating):
        image = (255 * image).astype(np.uint8)
    if image.shape[0] == 3:
        image = np.transpose(image, (1, 2, 0))
    return image


def normalize_and_pad(state, stats):
    """openpi's Normalize (z-score, eps 1e-6 on std, stats cut to the state) then PadStatesAndActions (32)."""
    mean, std = (np.asarray(stats[k]) for k in ("mean", "std"))
    state = (state - mean[: state.shape[-1]]) / (std[: state.shape[-1]] + 1e-6)
    return np.pad(state, (0, 32 - state.shape[-1]))


def unnormalize(x, stats):
    """openpi's Unnormalize of 32-wide vectors: statistics padded with mean 0 and std 1."""
    mean = np.pad(np.asarray(stats["mean"]), (0, 32 - len(stats["mean"])), constant_values=0.0)
    std = np.pad(np.asarray(stats["std"]), (0, 32 - len(stats["std"])), constant_values=1.0)
    return x * (std + 1e-6) + mean


def pi0_prompt_ids(tokenizer, prompt, bos_id, max_len=48):
    """openpi's PaligemmaTokenizer.tokenize for π0 (models/tokenizer.py): [BOS] + encode(clean(prompt)) +
    encode("\\n") — the newline encoded on its own — cut to max_len; clean = strip, '_' and '\\n' to ' '.
    `tokenizer` is a `tokenizers.Tokenizer` standing in for openpi's sentencepiece model."""
    cleaned = prompt.strip().replace("_", " ").replace("\n", " ")
    ids = [bos_id] + tokenizer.encode(cleaned, add_special_tokens=False).ids
    ids += tokenizer.encode("\n", add_special_tokens=False).ids
    return ids[:max_len]


# ALOHA (policies/aloha_policy.py at the pinned commit).
def joint_flip_mask():
    return np.array([1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1])


def _normalize(x, min_val, max_val):
    return (x - min_val) / (max_val - min_val)


def _unnormalize(x, min_val, max_val):
    return x * (max_val - min_val) + min_val


def gripper_to_angular(value):
    value = _unnormalize(value, min_val=0.01844, max_val=0.05800)
    horn_radius, arm_length = 0.022, 0.036
    value = np.arcsin(np.clip((horn_radius**2 + value**2 - arm_length**2) / (2 * horn_radius * value), -1.0, 1.0))
    return _normalize(value, min_val=0.5476, max_val=1.6296)


def gripper_from_angular(value):
    value = value + 0.5476
    return _normalize(value, min_val=-0.6213, max_val=1.4910)


def aloha_decode_state(state):
    """_decode_state(adapt_to_pi=True): joint signs flipped, grippers to π0's angles."""
    state = joint_flip_mask() * state
    state[[6, 13]] = gripper_to_angular(state[[6, 13]])
    return state


def aloha_encode_actions(actions):
    """AlohaOutputs(adapt_to_pi=True): [:, :14], signs flipped back, grippers to ALOHA's joint."""
    actions = joint_flip_mask() * np.asarray(actions[:, :14])
    actions[:, [6, 13]] = gripper_from_angular(actions[:, [6, 13]])
    return actions


def make_bool_mask(*dims):
    """transforms.make_bool_mask."""
    result = []
    for dim in dims:
        result.extend([True] * dim if dim > 0 else [False] * -dim)
    return tuple(result)
