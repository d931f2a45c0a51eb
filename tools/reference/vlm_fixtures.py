#!/usr/bin/env python3
"""Golden fixtures for the spear-models VLM code, from HF transformers 4.57.6 (PyTorch, float32, eager attention).

Run by a developer, never by CI, with the pinned reference environment (requirements-vlm.txt) in a virtualenv
outside the repository:

    python3 -m venv /path/to/venv && /path/to/venv/bin/pip install -r tools/reference/requirements-vlm.txt
    /path/to/venv/bin/python tools/reference/vlm_fixtures.py

Everything is deterministic (fixed seeds, CPU, float32). Writes, under crates/spear-models/tests/fixtures/:

* paligemma-tiny/            a real HF snapshot folder of a tiny, randomised PaliGemma: a Gemma-style tokenizer.json
                             (BPE with byte fallback, trained here on an inline corpus) and its configs as
                             GemmaTokenizerFast/PaliGemmaProcessor save them, config.json + sharded safetensors
                             (model-0000X-of-0000N.safetensors + model.safetensors.index.json, legacy on-disk key
                             names) and image.png (56x56 RGB).
* tokenizer_cases.json       special ids and prompts with the ids PaliGemmaProcessor produces for them.
* paligemma_expected.{safetensors,json}   vision tower, projector, prefill logits, greedy KV-cache decode and a
                             training-mode (prefix-LM) forward of the tiny PaliGemma.
* siglip.safetensors, siglip_expected.safetensors, siglip.json   a tiny SigLIP vision tower at non-224 sizes
                             (bicubic position-table interpolation).
* dinov2_expected.safetensors, dinov2.json, moge_v1/model.pt, moge_v2/model.pt   a tiny DINOv2 with MoGe's
                             position-table interpolation (scale factor with the +0.1 offset, no antialias) and
                             intermediate-layer outputs, and the same weights in MoGe-1 / MoGe-2 checkpoint layouts.
* mean_resize_expected.{safetensors,json}   resize_token_embeddings(mean_resizing=True) of a tiny Gemma: old rows,
                             new rows and the mean / covariance HF samples them from.

Every tensor is float32 (ids int64) and contiguous. The .json files say what each tensor is.
"""
import json
import math
import pathlib
import shutil

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GemmaTokenizerFast,
    PaliGemmaProcessor,
    SiglipImageProcessor,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/spear-models/tests/fixtures"
SNAP = OUT / "paligemma-tiny"

# The tokenizer is trained on this text: spaces become "▁" and pieces never cross a "▁" boundary, as in Gemma's
# SentencePiece model; digits stay single pieces (Gemma splits digits). Non-ASCII other than "é" is absent, so
# "日本" and emoji go through byte fallback.
CORPUS = """pick up the red cup
pick up the red cup and put it on the table
where is the red cup?
where is the blue block?
where is the green bowl on the table?
put the red cup in the green bowl.
move the arm 12 cm to the left, then 3 cm up.
rotate the gripper by 90 degrees.
open the gripper; close the gripper!
the robot picks up the cup from the table
place the block next to the cup
push the drawer closed, then open the cabinet.
what is the robot holding?
what color is the cup on the left?
the cup is on the table near the bowl.
grasp the handle and pull it 25 cm toward the robot.
stack the red block on top of the blue block
is there a cup on the table? yes, there is.
how many blocks are on the table? there are 4 blocks.
wipe the table with the sponge, then put the sponge in the sink.
turn on the light and open the door (slowly).
the camera sees a red cup, a blue plate and 2 spoons.
pour the water from the cup into the bowl.
lift the lid off the pot and set it down on the counter.
slide the box 0.5 m to the right.
the gripper is open: 100 percent.
the arm moves to position 7, 8, 9.
"Pick up the cup", said the user.
a café table with a red cup
fold the towel and put it in the basket
"""
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # ids 0, 1, 2, 3 as in Gemma
# PaliGemma's 1024 location and 128 segmentation tokens; PaliGemmaProcessor adds them to any tokenizer it wraps.
EXTRA_TOKENS = [f"<loc{i:0>4}>" for i in range(1024)] + [f"<seg{i:0>3}>" for i in range(128)]
IMAGE_TOKEN = "<image>"
LEARNED_VOCAB = 236  # BpeTrainer vocab_size (4 specials + alphabet + merges): 492 base pieces with the 256 bytes
IMAGE_SIZE = 56
NUM_IMAGE_TOKENS = (IMAGE_SIZE // 14) ** 2

TOKENIZER_CASES = [
    ("where is the red cup?", "on the table"),
    ("pick up the red cup", "done"),
    ("  two leading spaces", "ok"),
    ("trailing spaces   ", "yes"),
    ("multiple   spaces  inside", "no"),
    ("line one\nline two", "two lines"),
    ("move 12.5 cm, then rotate 90 degrees!", "moved 12.5 cm"),
    ("PICK UP the Red Cup; (now) \"quoted\"", "picked"),
    ("café 日本 🤖 robot", "é 🤖"),
    ("", "a red cup"),
]


def build_tokenizer():
    """A Gemma-structured tokenizer.json: vocab <pad> <eos> <bos> <unk>, 256 byte pieces, learned BPE pieces,
    PaliGemma's loc/seg pieces; normalizer Replace(" ", "▁"), no pre-tokenizer, byte-fallback decoder."""
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    # Training only: pieces start at "▁" and never span it, newlines, digits or punctuation.
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("▁", "merged_with_next"),
        pre_tokenizers.Split("\n", "isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split(Regex(r"[^\w▁]"), "isolated"),
    ])
    trainer = trainers.BpeTrainer(vocab_size=LEARNED_VOCAB, special_tokens=SPECIALS, initial_alphabet=["\n"],
                                   show_progress=False)
    trainer_tok.train_from_iterator(CORPUS.splitlines(), trainer)
    trained = json.loads(trainer_tok.to_str())["model"]

    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    assert "\n" in vocab, "the newline must be a piece of its own (Gemma's id 108)"
    learned_end = len(vocab)
    for t in EXTRA_TOKENS:
        vocab[t] = len(vocab)
    merges = [tuple(m) for m in trained["merges"]]

    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in SPECIALS])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in EXTRA_TOKENS])
    tok.add_special_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)])
    assert tok.token_to_id(IMAGE_TOKEN) == len(vocab)
    print(f"tokenizer: {learned_end} base pieces ({len(merges)} merges), {len(EXTRA_TOKENS)} loc/seg pieces, "
          f"<image> = {len(vocab)}")

    fast = GemmaTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        add_bos_token=False, add_eos_token=False,
    )
    return fast, learned_end


def make_image():
    """A smooth-ish 56x56 RGB pattern (sinusoids plus a little noise), uint8."""
    rng = np.random.default_rng(56)
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) / IMAGE_SIZE
    chans = []
    for c in range(3):
        f1, f2, ph = rng.uniform(1.0, 4.0), rng.uniform(1.0, 4.0), rng.uniform(0, 2 * np.pi)
        v = 0.5 + 0.35 * np.sin(2 * np.pi * (f1 * x + 0.3 * c) + ph) * np.cos(2 * np.pi * f2 * y)
        chans.append(v + 0.08 * rng.standard_normal(v.shape))
    return (np.clip(np.stack(chans, -1), 0, 1) * 255).round().astype(np.uint8)


def build_processor(tokenizer):
    image_processor = SiglipImageProcessor(
        do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=3,  # PIL bicubic
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        image_seq_length=NUM_IMAGE_TOKENS,
    )
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tokenizer_cases(processor, image):
    tok = processor.tokenizer
    ids = {
        "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id,
        "unk_id": tok.unk_token_id, "image_token_id": processor.image_token_id,
        "newline_id": tok.convert_tokens_to_ids("\n"),
    }
    assert (ids["bos_id"], ids["eos_id"], ids["pad_id"], ids["unk_id"]) == (2, 1, 0, 3)
    cases = []
    for prompt, suffix in TOKENIZER_CASES:
        full = processor(text=prompt, images=image)["input_ids"][0]
        assert full[:NUM_IMAGE_TOKENS] == [ids["image_token_id"]] * NUM_IMAGE_TOKENS
        prefix = full[NUM_IMAGE_TOKENS:]
        assert prefix[0] == ids["bos_id"] and prefix[-1] == ids["newline_id"]
        train = processor(text=prompt, images=image, suffix=suffix)
        tids, ttypes = train["input_ids"][0], train["token_type_ids"][0]
        assert tids[:len(full)] == full and set(ttypes[:len(full)]) == {0} and set(ttypes[len(full):]) == {1}
        suffix_ids = tids[len(full):]
        assert suffix_ids[-1] == ids["eos_id"]
        cases.append({
            "prompt": prompt, "prefix_ids": prefix, "prefix_pieces": tok.convert_ids_to_tokens(prefix),
            "suffix": suffix, "suffix_ids": suffix_ids,
            "decoded": tok.decode(prefix, skip_special_tokens=True),
        })
    return {
        **ids,
        "tokenizer_len": len(tok),
        "notes": [
            "prefix_ids: the processor's input_ids after the image tokens, i.e. <bos> + prompt + '\\n'.",
            "suffix_ids: what the processor appends with suffix= (training mode): answer tokens + <eos>; their "
            "token_type_ids are 1, the image and prefix tokens 0.",
            "decoded: tokenizer.decode(prefix_ids, skip_special_tokens=True).",
            "prefix_pieces: the vocabulary strings of prefix_ids, for reading only.",
            "Byte-fallback pieces are <0xNN>; 'é' is a learned piece, '日本' and emoji fall back to bytes.",
        ],
        "cases": cases,
    }


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def main():
    torch.use_deterministic_algorithms(True)
    assert transformers.__version__ == "4.57.6", transformers.__version__
    transformers.logging.set_verbosity_error()  # the processor warns that the prompts carry no <image> tokens
    OUT.mkdir(parents=True, exist_ok=True)
    if SNAP.exists():
        shutil.rmtree(SNAP)
    SNAP.mkdir()

    tokenizer, base_vocab = build_tokenizer()
    image = make_image()
    Image.fromarray(image).save(SNAP / "image.png")
    processor = build_processor(tokenizer)
    processor.save_pretrained(SNAP)
    cases = tokenizer_cases(processor, Image.open(SNAP / "image.png"))
    write_json(OUT / "tokenizer_cases.json", cases)


if __name__ == "__main__":
    main()
