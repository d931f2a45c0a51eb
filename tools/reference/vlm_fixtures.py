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
* paligemma-tiny-head/, paligemma_head_expected.{safetensors,json}   the tiny PaliGemma saved with
                             vision_use_head=True (SigLIP's pooling head stored; transformers ignores its output) and
                             its prefill logits.
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
import shutil
import types

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors.torch import load_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    Dinov2Config,
    Dinov2Model,
    GemmaConfig,
    GemmaForCausalLM,
    GemmaTokenizerFast,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings, Dinov2LayerScale
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
from transformers.models.siglip.modeling_siglip import SiglipMultiheadAttentionPoolingHead

import fixture_io
from fixture_io import OUT, ROOT, check_sizes, save_tensors, write_json
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
    PaliGemma's loc/seg pieces; normalizer Replace(" ", "▁"), no pre-tokenizer, byte-fallback decoder (the layout
    of the real Gemma/PaliGemma tokenizer.json; transformers 4.57's GemmaConverter writes the same normalizer and
    decoder and a Split(" ") pre-tokenizer that is a no-op after the normalizer).

    The loc/seg pieces sit in the BPE vocabulary before <image>, as in PaliGemma (256000..257151, <image> 257152):
    PaliGemmaProcessor calls tokenizer.add_tokens(<loc0000>..<seg127>) on whatever tokenizer it wraps, so without
    them they would land after <image>, beyond the model's vocabulary."""
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
            "tokenizer.json alone reproduces every case: encode('<bos>' + prompt + '\\n') == prefix_ids == "
            "[bos] + encode(prompt) + [newline]; encode(suffix) + [eos] == suffix_ids (the post-processor adds "
            "nothing: add_bos_token is false); decode(prefix_ids, skip_special_tokens=True) == decoded.",
            "Byte-fallback pieces are <0xNN>; 'é' is a learned piece, '日本' and emoji fall back to bytes, and so "
            "do capital letters missing from the training corpus (e.g. 'I', 'C', 'K').",
            "Vocabulary: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4..259 <0x00>..<0xFF>, 260.. learned pieces up to "
            "base_vocab_size, then <loc0000>..<loc1023>, <seg000>..<seg127> (BPE pieces and also added tokens, as in "
            "PaliGemma), then <image> = image_token_id (added special token, the last id). The model's vocab_size "
            "is image_token_id + 1 rounded up to a multiple of 64.",
        ],
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def dinov2_embeddings(p_name, p):
    assert p_name in ("cls_token", "mask_token", "position_embeddings"), p_name
    p.copy_(torch.randn_like(p) * 0.5)


def layer_scale(p_name, p):
    p.copy_(torch.empty_like(p).uniform_(0.2, 1.0))


def randomize(model, seed):
    """fixture_io.randomize plus DINOv2's cls/mask tokens and position table N(0, 0.5) and layer-scale lambdas
    U(0.2, 1.0)."""
    return fixture_io.randomize(
        model, seed, GemmaRMSNorm, [(Dinov2Embeddings, dinov2_embeddings), (Dinov2LayerScale, layer_scale)]
    )


# ---------------------------------------------------------------------------------------------------------------
# A. tiny PaliGemma


def paligemma_config(image_token_id, vision_use_head=False):
    V = (image_token_id + 1 + 63) // 64 * 64  # as HF's conversion: image token row + padding to a multiple of 64
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, patch_size=14,
        image_size=IMAGE_SIZE, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh", vision_use_head=vision_use_head,
    )
    text = GemmaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=512,
        hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )
    config = PaliGemmaConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=image_token_id, vocab_size=V,
        projection_dim=64, hidden_size=64, bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )
    model = PaliGemmaForConditionalGeneration._from_config(config, attn_implementation="eager", torch_dtype=torch.float32)
    return model, V


def paligemma(processor, image_token_id):
    model, V = paligemma_config(image_token_id)
    assert model.config.text_config._attn_implementation == "eager"
    assert model.config.vision_config._attn_implementation == "eager"
    assert model.config.text_config.num_image_tokens == NUM_IMAGE_TOKENS
    randomize(model, 1001).eval()
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    model.save_pretrained(SNAP, max_shard_size="200KB", safe_serialization=True)

    index = json.loads((SNAP / "model.safetensors.index.json").read_text())
    keys = sorted(index["weight_map"])
    shards = sorted(set(index["weight_map"].values()))
    print(f"paligemma-tiny: {len(keys)} tensors in {len(shards)} shards: {shards}")
    for k in keys:
        print("   ", k)
    assert all(k.startswith(("vision_tower.vision_model.", "multi_modal_projector.linear.", "language_model.model."))
               for k in keys), "expected the legacy on-disk layout"
    assert not any("lm_head" in k for k in keys)
    on_disk = {}
    for sh in shards:
        on_disk.update(load_file(str(SNAP / sh)))
    reloaded = PaliGemmaForConditionalGeneration.from_pretrained(SNAP, attn_implementation="eager",
                                                                 torch_dtype=torch.float32).eval()
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1

    prompt = "where is the red cup?"
    img = Image.open(SNAP / "image.png")
    inputs = processor(text=prompt, images=img, return_tensors="pt")
    png = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)[None]
    pixel_values = (png.float() / 255.0 - 0.5) / 0.5  # float32 throughout
    pixel_values_f64 = ((png.double() / 255.0 - 0.5) / 0.5).float()
    proc_diff = (inputs["pixel_values"] - pixel_values).abs().max().item()
    proc_diff_f64 = (inputs["pixel_values"] - pixel_values_f64).abs().max().item()
    print(f"processor pixel_values vs (png/255-0.5)/0.5: max |diff| {proc_diff:.3g} (float32 formula), "
          f"{proc_diff_f64:.3g} (float64 formula cast to float32)")
    assert torch.equal(inputs["pixel_values"], pixel_values)
    input_ids = inputs["input_ids"]
    attention_mask = inputs["attention_mask"]
    S = input_ids.shape[1]
    assert input_ids[0, :NUM_IMAGE_TOKENS].eq(image_token_id).all()

    with torch.no_grad():
        vision_last = model.model.vision_tower(pixel_values).last_hidden_state
        image_features = model.model.multi_modal_projector(vision_last)
        hf_features = model.model.get_image_features(pixel_values)
        assert torch.allclose(hf_features * math.sqrt(64), image_features, rtol=1e-6, atol=1e-6)
        prefill = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
        prefill_logits = prefill.logits

        gen = model.generate(
            input_ids, pixel_values=pixel_values, attention_mask=attention_mask, max_new_tokens=6, do_sample=False,
            output_scores=True, output_logits=True, return_dict_in_generate=True,
        )
        generated = gen.sequences[:, S:]
        decode_logits = torch.cat(gen.logits, 0)
        scores = torch.cat(gen.scores, 0)
        assert torch.equal(decode_logits, scores), "greedy decoding should not alter the logits"
        assert generated.shape[1] == 6 and not generated.eq(1).any(), "generation stopped at <eos>; change the seed"
        assert torch.equal(decode_logits.argmax(-1), generated[0])
        step0_vs_prefill = (decode_logits[0] - prefill_logits[0, -1]).abs().max().item()
        assert step0_vs_prefill < 1e-4

        train = processor(text=prompt, images=img, suffix="on the table", return_tensors="pt")
        assert torch.equal(train["pixel_values"], inputs["pixel_values"])
        tout = model(input_ids=train["input_ids"], pixel_values=pixel_values, attention_mask=train["attention_mask"],
                     token_type_ids=train["token_type_ids"], labels=train["labels"])
        # Loss as HF's ForCausalLM loss computes it: shift by one, mean cross-entropy over labels != -100.
        shift_logits = tout.logits[0, :-1]
        shift_labels = train["labels"][0, 1:]
        loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
        assert torch.allclose(loss, tout.loss, rtol=1e-6, atol=1e-6)
        # Prefix-LM mask check: the prefix positions are causal-free, so they equal the inference prefill logits.
        pre_vs_train = (tout.logits[0, :S] - prefill_logits[0]).abs().max().item()
        assert pre_vs_train < 1e-4, pre_vs_train
        # ... and the suffix positions equal a KV-cached decode fed the suffix tokens one at a time after the prefill.
        step = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, use_cache=True)
        cache = step.past_key_values
        suffix_ids = train["input_ids"][0, S:]
        cached = []
        for j, tid in enumerate(suffix_ids):
            step = model(input_ids=tid.view(1, 1), attention_mask=torch.ones(1, S + j + 1, dtype=torch.long),
                         past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            cached.append(step.logits[0, -1])
        suffix_vs_cached = (torch.stack(cached[:-1]) - tout.logits[0, S:-1]).abs().max().item()
        assert suffix_vs_cached < 1e-4, suffix_vs_cached

    tensors = {
        "pixel_values": pixel_values,
        "input_ids": input_ids.long(),
        "vision_last_hidden_state": vision_last,
        "image_features": image_features,
        "prefill_logits": prefill_logits,
        "generated_ids": generated.long(),
        "decode_logits": decode_logits,
        "train_input_ids": train["input_ids"].long(),
        "train_token_type_ids": train["token_type_ids"].long(),
        "train_labels": train["labels"].long(),
        "train_logits": tout.logits,
        "train_loss": tout.loss.reshape(1),
    }
    manifest = save_tensors(OUT / "paligemma_expected.safetensors", tensors)
    write_json(OUT / "paligemma_expected.json", {
        "snapshot": "paligemma-tiny",
        "prompt": prompt,
        "suffix": "on the table",
        "image": "paligemma-tiny/image.png",
        "vocab_size": V,
        "image_token_id": image_token_id,
        "num_image_tokens": NUM_IMAGE_TOKENS,
        "bos_id": 2, "eos_id": 1, "pad_id": 0,
        "generated_text": processor.tokenizer.decode(generated[0]),
        "decode_top1_minus_top2": (lambda t: (t[:, 0] - t[:, 1]).tolist())(decode_logits.topk(2, -1).values),
        "decode_max_abs_step_change": (decode_logits[1:] - decode_logits[:-1]).abs().amax(-1).tolist(),
        "shards": shards,
        "weight_keys": keys,
        "tensors": manifest,
        "config": model.config.to_dict(),
        "max_abs_diffs": {
            "processor_pixel_values_vs_formula_f32": proc_diff,
            "processor_pixel_values_vs_formula_f64_then_f32": proc_diff_f64,
            "decode_logits[0]_vs_prefill_logits[-1]": step0_vs_prefill,
            "train_logits[:S]_vs_prefill_logits": pre_vs_train,
            "train_logits[S:-1]_vs_cached_decode_of_suffix": suffix_vs_cached,
        },
        "notes": [
            "All computed in float32 on CPU with attn_implementation='eager', model in eval mode.",
            "pixel_values = (png/255 - 0.5)/0.5 from image.png (uint8 HWC -> [1,3,56,56]), every step in float32; "
            "it is bit-identical to the PaliGemmaProcessor output (SiglipImageProcessor with do_resize to the same "
            "56x56, which PIL leaves untouched; rescale is x*(1/255) in float64 cast to float32, then normalise in "
            "float32). Doing the formula in float64 and casting once differs by 1 ulp in places (max |diff| listed).",
            "input_ids = 16 <image> tokens + <bos> + prompt + '\\n' exactly as the processor produced them.",
            "vision_last_hidden_state: SigLIP tower output after post_layernorm (no interpolation: 4x4 grid = table).",
            "image_features: multi_modal_projector output WITHOUT the 1/sqrt(text hidden_size) = 1/8 scaling that "
            "transformers 4.57 get_image_features applies (HF then multiplies all inputs_embeds by sqrt(64) = 8, so "
            "these enter layer 0 unscaled; text token embeddings are multiplied by 8).",
            "prefill_logits: model(input_ids, pixel_values, attention_mask) without labels; HF makes the whole "
            "prefill bidirectional (image + prefix tokens all see each other). Positions are 1-indexed in HF "
            "(position_ids = cache_position + 1); RoPE only depends on offsets so 0-indexing gives the same result.",
            "generated_ids / decode_logits: model.generate(..., max_new_tokens=6, do_sample=False) with the KV cache; "
            "decode_logits[k] are the raw logits that produced generated_ids[k] (output_logits; equal to "
            "output_scores since greedy applies no processors). decode_logits[0] is the prefill's last row. "
            "Decode steps attend causally to the cache; note that re-running prefill over prompt + generated tokens "
            "without a cache would NOT reproduce them (HF would make those tokens bidirectional too). Generation did "
            "not hit <eos> (eos_token_id left at 1). With random tied embeddings the model repeats its last "
            "input token ('\\n'), by a wide top-1/top-2 logit margin (decode_top1_minus_top2), so the ids are a weak "
            "check; decode_logits rows differ from step to step (decode_max_abs_step_change: cache length and "
            "position), which is what tests the cache, as do train_logits (below).",
            "train_*: processor(text=prompt, images=image, suffix='on the table') -> input_ids + token_type_ids "
            "(0 image/prefix, 1 suffix incl. <eos>) + labels (-100 on the prefix); forward with token_type_ids and "
            "labels selects HF's training mask: image+prefix bidirectional, suffix causal and seeing the whole "
            "prefix. train_logits[:, :S] therefore equal prefill_logits, and train_logits[:, S+j] equal the logits of a "
            "KV-cached decode (after the prefill) fed the suffix tokens one at a time (teacher forcing), so they "
            "also serve as a cache test with varied tokens. train_loss = mean cross-entropy of "
            "logits[:, t] against labels[:, t+1] over labels != -100.",
            "Weights: sharded safetensors in paligemma-tiny/ with the legacy on-disk names (vision_tower.vision_model.*,"
            " multi_modal_projector.linear.*, language_model.model.*); lm_head is tied to embed_tokens and not saved.",
            "Gemma RMSNorm weights are stored zero-centred (applied as 1 + w).",
        ],
    })
    return pixel_values, input_ids, attention_mask


def paligemma_with_head(image_token_id, pixel_values, input_ids, attention_mask):
    """The tiny PaliGemma saved with vision_use_head=True, as some snapshots are: SigLIP's attention-pooling head
    (probe, attention, layernorm, mlp) is stored under vision_tower.vision_model.head.*; transformers builds and
    loads it, runs it and discards its pooled output (PaliGemma projects every patch token)."""
    snap = OUT / "paligemma-tiny-head"
    model, _ = paligemma_config(image_token_id, vision_use_head=True)

    def head_probe(p_name, p):
        p.copy_(torch.randn_like(p))

    def head_attention(p_name, p):  # nn.MultiheadAttention's packed q/k/v projection
        p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]) if p_name == "in_proj_weight" else torch.randn_like(p) * 0.1)

    fixture_io.randomize(model, 1002, GemmaRMSNorm, [
        (SiglipMultiheadAttentionPoolingHead, head_probe), (torch.nn.MultiheadAttention, head_attention),
    ]).eval()
    model.save_pretrained(snap, safe_serialization=True)
    keys = sorted(load_file(str(snap / "model.safetensors")))
    head = [k for k in keys if k.startswith("vision_tower.vision_model.head.")]
    print(f"paligemma-tiny-head: {len(keys)} tensors, {len(head)} of SigLIP's head: {head}")
    assert head, "vision_use_head=True should save the pooling head"
    with torch.no_grad():
        vision = model.model.vision_tower(pixel_values)
        assert vision.pooler_output is not None, "the head runs in transformers' forward"
        prefill = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
    tensors = {"vision_last_hidden_state": vision.last_hidden_state, "prefill_logits": prefill.logits}
    manifest = save_tensors(OUT / "paligemma_head_expected.safetensors", tensors)
    write_json(OUT / "paligemma_head_expected.json", {
        "snapshot": "paligemma-tiny-head",
        "inputs": "pixel_values and input_ids of paligemma_expected.safetensors (attention mask all ones)",
        "head_keys": head,
        "tensors": manifest,
        "notes": [
            "paligemma-tiny-head/: config.json (vision_config.vision_use_head = true) and one model.safetensors, the "
            "tiny PaliGemma's shapes with other random weights (seed 1002) plus SigLIP's pooling head.",
            "prefill_logits: model(input_ids, pixel_values, attention_mask); the head's pooled output does not reach "
            "them, so a loader that ignores the head must reproduce them exactly.",
        ],
    })


# ---------------------------------------------------------------------------------------------------------------
# B. SigLIP at non-224 sizes


def siglip():
    config = SiglipVisionConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, patch_size=14,
        image_size=224, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh", vision_use_head=False,
    )
    model = SiglipVisionModel._from_config(config, attn_implementation="eager", torch_dtype=torch.float32)
    randomize(model, 2002).eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    print("siglip.safetensors keys:")
    for k, v in sd.items():
        print(f"    {k} {list(v.shape)}")
    weights_manifest = save_tensors(OUT / "siglip.safetensors", sd)

    gen = torch.Generator().manual_seed(2003)
    main_pixels = torch.rand(1, 3, 210, 280, generator=gen) * 2 - 1
    wrist_pixels = torch.rand(2, 3, 112, 112, generator=gen) * 2 - 1
    emb = model.vision_model.embeddings
    table = emb.position_embedding.weight.detach()
    with torch.no_grad():
        main_out = model(pixel_values=main_pixels, interpolate_pos_encoding=True).last_hidden_state
        wrist_out = model(pixel_values=wrist_pixels, interpolate_pos_encoding=True).last_hidden_state
        pos = {}
        for (h, w) in [(15, 20), (8, 8)]:
            hf = emb.interpolate_pos_encoding(torch.zeros(1, h * w, 32), h * 14, w * 14)[0]
            mine = F.interpolate(table.reshape(1, 16, 16, 32).permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                                 align_corners=False).permute(0, 2, 3, 1).reshape(h * w, 32)
            assert torch.equal(hf, mine)
            pos[f"pos_{h}x{w}"] = hf
    assert main_out.shape == (1, 300, 32) and wrist_out.shape == (2, 64, 32)
    manifest = save_tensors(OUT / "siglip_expected.safetensors", {
        "main_pixels": main_pixels, "wrist_pixels": wrist_pixels, "main_out": main_out, "wrist_out": wrist_out,
        **pos,
    })
    write_json(OUT / "siglip.json", {
        "weights": "siglip.safetensors",
        "weights_tensors": weights_manifest,
        "tensors": manifest,
        "config": model.config.to_dict(),
        "notes": [
            "SiglipVisionModel (vision_use_head=False, as in PaliGemma), float32, eager attention, eval mode.",
            "Weights saved with save_file(model.state_dict()): keys are vision_model.* (no 'vision_tower.' prefix).",
            "main_pixels U(-1,1) [1,3,210,280] (H=210, W=280 -> 15 rows x 20 cols of 14-px patches), wrist_pixels "
            "U(-1,1) [2,3,112,112] (8x8). Outputs are last_hidden_state (after post_layernorm) with "
            "interpolate_pos_encoding=True; tokens are row-major (index = row*cols + col).",
            "pos_15x20 / pos_8x8: the 16x16 position table resized by SiglipVisionEmbeddings.interpolate_pos_encoding "
            "= F.interpolate([1,32,16,16], size=(rows, cols), mode='bicubic', align_corners=False) (no antialias, "
            "size-based coordinate mapping src = (dst + 0.5) * 16/out - 0.5, A = -0.75, clamped taps), row-major.",
        ],
    })


# ---------------------------------------------------------------------------------------------------------------
# C. DINOv2 as MoGe ships it


DINO_MEAN = (0.485, 0.456, 0.406)
DINO_STD = (0.229, 0.224, 0.225)
INTERPOLATE_OFFSET = 0.1


def moge_interpolate_pos_encoding(self, embeddings, height, width):
    """MoGe's (and upstream DINOv2's) interpolation with interpolate_offset=0.1, interpolate_antialias=False:
    bicubic with a scale factor ((rows + 0.1)/M, (cols + 0.1)/M), so the sampling positions follow that scale rather
    than the output size. Skipped only when the token count and a square image match the table."""
    pos_embed = self.position_embeddings
    previous_dtype = embeddings.dtype
    npatch = embeddings.shape[1] - 1
    n = pos_embed.shape[1] - 1
    if npatch == n and width == height:
        return pos_embed
    pos_embed = pos_embed.float()
    class_pos_embed = pos_embed[:, :1]
    patch_pos_embed = pos_embed[:, 1:]
    dim = embeddings.shape[-1]
    rows, cols = height // self.patch_size, width // self.patch_size
    m = int(math.sqrt(n))
    assert m * m == n
    sy, sx = float(rows + INTERPOLATE_OFFSET) / m, float(cols + INTERPOLATE_OFFSET) / m
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, m, m, dim).permute(0, 3, 1, 2), scale_factor=(sy, sx), mode="bicubic",
        antialias=False,
    )
    assert tuple(patch_pos_embed.shape[-2:]) == (rows, cols)
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((class_pos_embed, patch_pos_embed), dim=1).to(previous_dtype)


def dinov2_model():
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=6, num_attention_heads=4, mlp_ratio=4, patch_size=14, image_size=518,
        layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True, layerscale_value=1.0, use_swiglu_ffn=False,
    )
    model = Dinov2Model._from_config(config, attn_implementation="eager", torch_dtype=torch.float32)
    model.embeddings.interpolate_pos_encoding = types.MethodType(moge_interpolate_pos_encoding, model.embeddings)
    return model.eval()


def dinov2_intermediate(model, image):
    """MoGe's get_intermediate_layers: every block output through the final norm; returns (patch tokens per block
    [6, B, N, D], CLS of the last block [B, D])."""
    mean = torch.tensor(DINO_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DINO_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(pixel_values=(image - mean) / std, output_hidden_states=True)
        normed = torch.stack([model.layernorm(h) for h in out.hidden_states[1:]])
        assert torch.equal(normed[-1], out.last_hidden_state)
    return normed[:, :, 1:], normed[-1][:, 0]


def hf_to_moge(sd, prefix):
    """HF Dinov2Model state dict -> MoGe/DINOv2 hub names under `prefix` (q, k, v fused into qkv in that order)."""
    out = {
        f"{prefix}cls_token": sd["embeddings.cls_token"],
        f"{prefix}pos_embed": sd["embeddings.position_embeddings"],
        f"{prefix}mask_token": sd["embeddings.mask_token"],
        f"{prefix}patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        f"{prefix}patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
    }
    i = 0
    while f"encoder.layer.{i}.norm1.weight" in sd:
        h, m = f"encoder.layer.{i}.", f"{prefix}blocks.{i}."
        for t in ("weight", "bias"):
            out[m + f"norm1.{t}"] = sd[h + f"norm1.{t}"]
            out[m + f"attn.qkv.{t}"] = torch.cat([sd[h + f"attention.attention.{x}.{t}"] for x in ("query", "key", "value")])
            out[m + f"attn.proj.{t}"] = sd[h + f"attention.output.dense.{t}"]
            out[m + f"norm2.{t}"] = sd[h + f"norm2.{t}"]
            out[m + f"mlp.fc1.{t}"] = sd[h + f"mlp.fc1.{t}"]
            out[m + f"mlp.fc2.{t}"] = sd[h + f"mlp.fc2.{t}"]
        out[m + "ls1.gamma"] = sd[h + "layer_scale1.lambda1"]
        out[m + "ls2.gamma"] = sd[h + "layer_scale2.lambda1"]
        i += 1
    out[f"{prefix}norm.weight"] = sd["layernorm.weight"]
    out[f"{prefix}norm.bias"] = sd["layernorm.bias"]
    return {k: v.clone().contiguous() for k, v in out.items()}


def moge_to_hf(sd, prefix):
    """The inverse of hf_to_moge, as a loader would do it: keys outside `prefix` + backbone are skipped."""
    out = {}
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        k = k[len(prefix):]
        if k == "cls_token":
            out["embeddings.cls_token"] = v
        elif k == "pos_embed":
            out["embeddings.position_embeddings"] = v
        elif k == "mask_token":
            out["embeddings.mask_token"] = v
        elif k.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings.projection." + k.split(".")[-1]] = v
        elif k.startswith("norm."):
            out["layernorm." + k.split(".")[-1]] = v
        else:
            _, i, *rest = k.split(".")
            rest = ".".join(rest)
            h = f"encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                q, kk, vv = v.chunk(3, 0)
                t = rest.split(".")[-1]
                out[h + f"attention.attention.query.{t}"] = q
                out[h + f"attention.attention.key.{t}"] = kk
                out[h + f"attention.attention.value.{t}"] = vv
            elif rest.startswith("attn.proj."):
                out[h + "attention.output.dense." + rest.split(".")[-1]] = v
            elif rest == "ls1.gamma":
                out[h + "layer_scale1.lambda1"] = v
            elif rest == "ls2.gamma":
                out[h + "layer_scale2.lambda1"] = v
            else:
                out[h + rest] = v  # norm1, norm2, mlp.fc1, mlp.fc2 keep their names
    return out


def small_random(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(*s, generator=g) * 0.1).contiguous() for k, s in shapes.items()}


MOGE_V1_CONFIG = {
    "encoder": "dinov2_vitl14", "intermediate_layers": 4, "dim_proj": 512, "dim_upsample": [256, 128, 64],
    "dim_times_res_block_hidden": 2, "num_res_blocks": 2, "remap_output": "exp", "res_block_norm": "layer_norm",
    "num_tokens_range": [1200, 2500], "last_res_blocks": 0, "last_conv_channels": 32, "last_conv_size": 1,
    "mask_threshold": 0.5,
}
MOGE_V2_CONFIG = {
    "encoder": {"backbone": "dinov2_vitl14", "intermediate_layers": [5, 11, 17, 23], "dim_out": 1024},
    "neck": {"dim_in": [1026, 2, 2, 2, 2], "dim_out": None, "dim_res_blocks": [1024, 256, 128, 64, 32],
             "num_res_blocks": [0, 2, 2, 2, 0], "res_block_in_norm": "none", "res_block_hidden_norm": "none",
             "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"]},
    "points_head": {"dim_in": [1024, 256, 128, 64, 32], "dim_out": [None, None, None, None, 3],
                    "dim_res_blocks": [1024, 256, 128, 64, 32], "num_res_blocks": [0, 1, 1, 1, 0],
                    "res_block_in_norm": "none", "res_block_hidden_norm": "none",
                    "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"]},
    "mask_head": {"dim_in": [1024, 256, 128, 64, 32], "dim_out": [None, None, None, None, 1],
                  "dim_res_blocks": [1024, 256, 128, 64, 32], "num_res_blocks": [0, 1, 1, 1, 0],
                  "res_block_in_norm": "none", "res_block_hidden_norm": "none",
                  "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"]},
    "scale_head": {"dims": [1024, 1024, 1024, 1]},
    "remap_output": "exp",
    "num_tokens_range": [1200, 3600],
}
TINY_V1_LAYERS = 4  # "last 4" of 6 blocks: 2, 3, 4, 5
TINY_V2_LAYERS = [1, 3, 5]


def dinov2():
    model = dinov2_model()
    randomize(model, 3003)
    hf_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    print("dinov2 (HF) keys:")
    for k, v in hf_sd.items():
        print(f"    {k} {list(v.shape)}")

    gen = torch.Generator().manual_seed(3004)
    image = torch.rand(1, 3, 210, 280, generator=gen)
    wrist_image = torch.rand(2, 3, 112, 112, generator=gen)
    main_all, cls_main = dinov2_intermediate(model, image)
    wrist_all, _ = dinov2_intermediate(model, wrist_image)
    last4 = list(range(6 - TINY_V1_LAYERS, 6))
    pos = {}
    with torch.no_grad():
        for (h, w) in [(15, 20), (8, 8)]:
            table = model.embeddings.interpolate_pos_encoding(torch.zeros(1, 1 + h * w, 32), h * 14, w * 14)[0]
            assert torch.equal(table[0], hf_sd["embeddings.position_embeddings"][0, 0])
            pos[f"pos_{h}x{w}"] = table[1:]
        # The +0.1 offset matters: the size-based resize (HF's own Dinov2 code) gives a different table.
        grid = hf_sd["embeddings.position_embeddings"][0, 1:].reshape(1, 37, 37, 32).permute(0, 3, 1, 2)
        sized = F.interpolate(grid, size=(15, 20), mode="bicubic", align_corners=False)
        offset_effect = (sized.permute(0, 2, 3, 1).reshape(300, 32) - pos["pos_15x20"]).abs().max().item()
    assert offset_effect > 1e-3
    tensors = {
        "image": image, "wrist_image": wrist_image,
        "main_last4": main_all[last4], "main_sel": main_all[TINY_V2_LAYERS], "wrist_last4": wrist_all[last4],
        **pos, "cls_main": cls_main,
    }
    manifest = save_tensors(OUT / "dinov2_expected.safetensors", tensors)

    v1_heads = small_random({
        **{f"head.projects.{i}.weight": (16, 32, 1, 1) for i in range(4)},
        **{f"head.projects.{i}.bias": (16,) for i in range(4)},
        "head.upsample_blocks.0.0.0.weight": (18, 8, 2, 2), "head.upsample_blocks.0.0.0.bias": (8,),
        "head.upsample_blocks.0.0.1.weight": (8, 8, 3, 3), "head.upsample_blocks.0.0.1.bias": (8,),
        "head.upsample_blocks.0.1.layers.0.weight": (8,), "head.upsample_blocks.0.1.layers.0.bias": (8,),
        "head.upsample_blocks.0.1.layers.2.weight": (16, 8, 3, 3), "head.upsample_blocks.0.1.layers.2.bias": (16,),
        "head.output_block.0.0.weight": (4, 10, 3, 3), "head.output_block.0.0.bias": (4,),
        "head.output_block.0.2.weight": (3, 4, 1, 1), "head.output_block.0.2.bias": (3,),
        "head.output_block.1.0.weight": (4, 10, 3, 3), "head.output_block.1.0.bias": (4,),
        "head.output_block.1.2.weight": (1, 4, 1, 1), "head.output_block.1.2.bias": (1,),
    }, 3005)
    mean = torch.tensor(DINO_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DINO_STD).view(1, 3, 1, 1)
    v1 = {**hf_to_moge(hf_sd, "backbone."), **v1_heads, "image_mean": mean.clone(), "image_std": std.clone()}
    v2_heads = small_random({
        **{f"encoder.output_projections.{i}.weight": (16, 32, 1, 1) for i in range(4)},
        **{f"encoder.output_projections.{i}.bias": (16,) for i in range(4)},
        "neck.input_blocks.0.weight": (16, 18, 1, 1), "neck.input_blocks.0.bias": (16,),
        "neck.resamplers.0.0.weight": (16, 8, 2, 2), "neck.resamplers.0.0.bias": (8,),
        "neck.resamplers.0.1.weight": (8, 8, 3, 3), "neck.resamplers.0.1.bias": (8,),
        "neck.res_blocks.1.0.layers.2.weight": (8, 8, 3, 3), "neck.res_blocks.1.0.layers.2.bias": (8,),
        "points_head.input_blocks.0.weight": (16, 16, 1, 1), "points_head.input_blocks.0.bias": (16,),
        "points_head.output_blocks.4.weight": (3, 4, 1, 1), "points_head.output_blocks.4.bias": (3,),
        "mask_head.input_blocks.0.weight": (16, 16, 1, 1), "mask_head.input_blocks.0.bias": (16,),
        "mask_head.output_blocks.4.weight": (1, 4, 1, 1), "mask_head.output_blocks.4.bias": (1,),
        "scale_head.0.weight": (16, 32), "scale_head.0.bias": (16,),
        "scale_head.2.weight": (16, 16), "scale_head.2.bias": (16,),
        "scale_head.4.weight": (1, 16), "scale_head.4.bias": (1,),
    }, 3006)
    v2 = {**hf_to_moge(hf_sd, "encoder.backbone."), **v2_heads,
          "encoder.image_mean": mean.clone(), "encoder.image_std": std.clone()}

    pts = {}
    for name, sd, cfg, prefix in [("moge_v1", v1, MOGE_V1_CONFIG, "backbone."),
                                  ("moge_v2", v2, MOGE_V2_CONFIG, "encoder.backbone.")]:
        d = OUT / name
        d.mkdir(exist_ok=True)
        torch.save({"model_config": cfg, "model": sd}, d / "model.pt")
        print(f"wrote {(d / 'model.pt').relative_to(ROOT)} ({(d / 'model.pt').stat().st_size} bytes)")
        # Reload, map back into a fresh HF model, and reproduce the stored outputs exactly.
        ckpt = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        assert ckpt["model_config"] == cfg
        fresh = dinov2_model()
        fresh.load_state_dict(moge_to_hf(ckpt["model"], prefix), strict=True)
        m_all, m_cls = dinov2_intermediate(fresh, image)
        w_all, _ = dinov2_intermediate(fresh, wrist_image)
        assert torch.equal(m_all, main_all) and torch.equal(w_all, wrist_all) and torch.equal(m_cls, cls_main)
        pts[f"{name}/model.pt"] = {k: list(v.shape) for k, v in ckpt["model"].items()}

    write_json(OUT / "dinov2.json", {
        "tensors": manifest,
        "config": model.config.to_dict(),
        "interpolate_offset": INTERPOLATE_OFFSET,
        "interpolate_antialias": False,
        "image_mean": list(DINO_MEAN),
        "image_std": list(DINO_STD),
        "tiny_v1_intermediate_layers": TINY_V1_LAYERS,
        "tiny_v1_blocks": last4,
        "tiny_v2_intermediate_layers": TINY_V2_LAYERS,
        "real_v2_intermediate_layers": MOGE_V2_CONFIG["encoder"]["intermediate_layers"],
        "max_abs_diff_size_based_vs_offset_pos_15x20": offset_effect,
        "checkpoints": pts,
        "notes": [
            "HF Dinov2Model (no registers, LayerScale, exact-erf GELU, LayerNorm eps 1e-6, qkv bias) in float32 with "
            "eager attention, its embeddings.interpolate_pos_encoding replaced by MoGe's: bicubic, antialias=False, "
            "scale_factor=((rows+0.1)/37, (cols+0.1)/37) so PyTorch samples at src = (dst+0.5)/scale - 0.5, output "
            "size floor(37*scale) = (rows, cols); CLS position concatenated back unchanged. It runs whenever the "
            "token count differs from 1369 or the image is not square (8x8 is interpolated too).",
            "image / wrist_image: RGB in [0,1]; the model input is (image - image_mean) / image_std (ImageNet).",
            "main_last4 [4,1,300,32]: blocks 2,3,4,5 (MoGe-1 intermediate_layers=4 = the last 4 of 6), each block "
            "output through the final norm, CLS dropped; main_sel [3,1,300,32]: blocks 1,3,5 (MoGe-2-style list; "
            "real MoGe-2 uses [5, 11, 17, 23] of 24); wrist_last4 [4,2,64,32]; tokens row-major.",
            "pos_15x20 / pos_8x8: the interpolated patch position tables without CLS, row-major; "
            "cls_main [1,32]: CLS output of the last block after the final norm.",
            "moge_v1/model.pt and moge_v2/model.pt: torch.save({'model_config', 'model'}) with the same backbone "
            "weights in MoGe's names (attn.qkv = cat(query, key, value) along dim 0; ls1/ls2.gamma = HF layer_scale "
            "lambda1) plus small random head/neck tensors with MoGe names that a backbone loader must skip. "
            "model_config holds the real (ViT-L) MoGe config values, not the tiny ones.",
        ],
    })


# ---------------------------------------------------------------------------------------------------------------
# D. Mean resizing of token embeddings


def mean_resize():
    config = GemmaConfig(
        vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, head_dim=8, tie_word_embeddings=True,
    )
    model = GemmaForCausalLM._from_config(config, attn_implementation="eager", torch_dtype=torch.float32)
    torch.manual_seed(4004)
    with torch.no_grad():
        mix = torch.randn(8, 8)
        old = torch.randn(64, 8) @ mix + torch.randn(8) * 2.0
        model.model.embed_tokens.weight.copy_(old)
    added = 4096
    torch.manual_seed(4005)
    model.resize_token_embeddings(64 + added, mean_resizing=True)
    new = model.model.embed_tokens.weight.detach()
    assert new.shape == (64 + added, 8) and torch.equal(new[:64], old)
    assert model.lm_head.weight is model.model.embed_tokens.weight

    # As _init_added_embeddings_weights_with_mean (modeling_utils.py, 4.57.6) computes them.
    w = old.to(torch.float32)
    mean = torch.mean(w, axis=0)
    centered = w - mean
    covariance = centered.T @ centered / 64
    epsilon = 1e-9
    mvn = bool(torch.distributions.constraints.positive_definite.check(epsilon * covariance).all())
    new_rows = new[64:]
    assert mvn and not torch.equal(new_rows, mean.expand_as(new_rows))
    # The sampled rows: mean + N(0, 1e-9 * covariance). Check their statistics.
    dev = (new_rows.double() - mean.double()) / math.sqrt(epsilon)
    emp_cov = dev.T @ dev / added
    rel = ((emp_cov - covariance.double()).abs().max() / covariance.double().abs().max()).item()
    assert rel < 0.15, rel
    # Reproduce the draw: nn.Embedding's own init consumes the generator first, then MultivariateNormal.sample.
    torch.manual_seed(4005)
    torch.nn.Embedding(64 + added, 8)
    again = torch.distributions.MultivariateNormal(mean, covariance_matrix=epsilon * covariance).sample((added,))
    reproduced = torch.equal(again, new_rows)

    manifest = save_tensors(OUT / "mean_resize_expected.safetensors", {
        "old_embeddings": old, "new_rows": new_rows, "mean": mean, "covariance": covariance,
        "scale_tril": torch.linalg.cholesky(epsilon * covariance),
    })
    write_json(OUT / "mean_resize_expected.json", {
        "tensors": manifest,
        "old_vocab": 64, "new_vocab": 64 + added, "hidden": 8,
        "epsilon": epsilon,
        "branch": "multivariate_normal" if mvn else "mean_only",
        "empirical_cov_rel_error": rel,
        "reproduced_with_torch_rng": reproduced,
        "config": config.to_dict(),
        "notes": [
            "GemmaForCausalLM (tied lm_head) with embeddings N(0,1) @ mix(8x8) + offset, then "
            "resize_token_embeddings(64 + 4096, mean_resizing=True) after torch.manual_seed(4005).",
            "mean = old.mean(0); covariance = (old - mean)^T (old - mean) / 64 (biased, float32) exactly as "
            "_init_added_embeddings_weights_with_mean computes them; epsilon = 1e-9 (4.57.6). "
            "positive_definite.check(epsilon * covariance) passed, so the rows were sampled from "
            "MultivariateNormal(mean, covariance_matrix = epsilon * covariance) (scale_tril = its Cholesky factor); "
            "the fallback would set every new row to mean.",
            "new_rows are the last 4096 rows; rows 0..63 are the old ones unchanged; the tied lm_head shares them.",
            "empirical_cov_rel_error: max |cov((new_rows - mean)/sqrt(eps)) - covariance| / max |covariance|.",
            "reproduced_with_torch_rng: whether re-seeding, building nn.Embedding(4160, 8) (its init draws first) and "
            "sampling the same MultivariateNormal gives new_rows bit-exactly (it pins the draw order, not a spec).",
        ],
    })


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    assert transformers.__version__ == "4.57.6", transformers.__version__
    transformers.logging.set_verbosity_error()  # the processor warns that the prompts carry no <image> tokens
    OUT.mkdir(parents=True, exist_ok=True)
    for d in (SNAP, OUT / "paligemma-tiny-head", OUT / "moge_v1", OUT / "moge_v2"):
        if d.exists():
            shutil.rmtree(d)
    SNAP.mkdir()

    tokenizer, base_vocab = build_tokenizer()
    image = make_image()
    Image.fromarray(image).save(SNAP / "image.png")
    processor = build_processor(tokenizer)
    processor.save_pretrained(SNAP)
    cases = tokenizer_cases(processor, Image.open(SNAP / "image.png"))
    # The saved tokenizer.json alone (the `tokenizers` core the Rust crate shares) reproduces every case.
    raw = Tokenizer.from_file(str(SNAP / "tokenizer.json"))
    for c in cases["cases"]:
        assert raw.encode(f"<bos>{c['prompt']}\n").ids == c["prefix_ids"]
        assert [cases["bos_id"]] + raw.encode(c["prompt"]).ids + [cases["newline_id"]] == c["prefix_ids"]
        assert raw.encode(c["suffix"]).ids + [cases["eos_id"]] == c["suffix_ids"]
        assert raw.decode(c["prefix_ids"], skip_special_tokens=True) == c["decoded"]
    cases["base_vocab_size"] = base_vocab
    write_json(OUT / "tokenizer_cases.json", cases)

    inputs = paligemma(processor, cases["image_token_id"])
    paligemma_with_head(cases["image_token_id"], *inputs)
    siglip()
    dinov2()
    mean_resize()
    check_sizes()


if __name__ == "__main__":
    main()
