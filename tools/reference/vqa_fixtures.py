#!/usr/bin/env python3
"""Golden VQA token sequences for spear-data's `vqa::encode`, from the Hugging Face `tokenizers` library and numpy.

Run by a developer, never by CI, with the pinned environment (requirements-data.txt plus tokenizers==0.22.1):

    /path/to/venv/bin/python tools/reference/vqa_fixtures.py

Writes, under crates/spear-data/tests/fixtures/vqa/:
* examples.jsonl   three annotation lines as spear-annotate writes them: an image and 1-4 question-answer pairs whose
                   answers mix text, 3D values in metres ({"coords": [...]}) and normalised 2D locations ({"loc": [y, x]}).
* quantizer.json   64 uniform 3D-token bins over [-2, 4] m (spear's CoordQuantizer file format).
* expected.json    per example, what the layout of spear-data/src/vqa.rs must give with the tiny PaliGemma tokenizer
                   (crates/spear-models/tests/fixtures/paligemma-tiny/tokenizer.json) and base vocabulary 1700:
                   prefix = "<bos>" + question 1 + "\n" (one string); suffix = answer 1, then per further pair
                   "\n" + question + "\n" (one string) and its answer, then <eos>; text segments tokenized one by one
                   without special tokens; a 3D value v -> 1700 + the number of interior edges <= float32(v); a location
                   v -> <loc{min(floor(v * 1024), 1023):04d}>. Loss on answer tokens and the final <eos>; 3D mask on
                   3D tokens.
"""
import json
import pathlib

import numpy as np
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/spear-data/tests/fixtures/vqa"
TOKENIZER = ROOT / "crates/spear-models/tests/fixtures/paligemma-tiny/tokenizer.json"
BASE_VOCAB = 1700

EXAMPLES = [
    {"image": "kitchen.jpg", "pairs": [
        {"question": "Output the vertices of the 3D bounding box of the mug.",
         "answer": [{"text": "mug: "}, {"coords": [0.12, -0.05, 0.83, 0.2, -0.05, 0.83, 0.12, 0.04, 0.83, 0.12, -0.05,
                                                   0.91, 0.2, 0.04, 0.91, 0.12, 0.04, 0.91, 0.2, -0.05, 0.91, 0.2,
                                                   0.04, 0.83]}]},
    ]},
    {"image": "desk/img_0042.png", "pairs": [
        {"question": "What is the distance from the camera to the crème brûlée?", "answer": [{"coords": [1.37]}]},
        {"question": "What is the distance from the camera to the lamp?", "answer": [{"coords": [2.95]}]},
        {"question": "Which object is closer to the camera?", "answer": [{"text": "the crème brûlée"}]},
    ]},
    {"image": "/data/images/street.jpg", "pairs": [
        {"question": "Locate the 3D bounding box of the bike on the image.",
         "answer": [{"loc": [0.0, 0.999]}, {"loc": [0.5, 0.25]}, {"text": " and "}, {"loc": [1.0, 0.4999]}]},
        {"question": "Output the xyz components of the distance between the bike and the car.",
         "answer": [{"text": "dx "}, {"coords": [-1.75]}, {"text": " dy "}, {"coords": [0.0]}, {"text": " dz "},
                    {"coords": [9.5]}]},
        {"question": "Output the closest point of the car.", "answer": [{"coords": [-2.5, 0.25, 3.9999]}]},
        {"question": "Output the center of the bike.", "answer": [{"coords": [0.5, 0.5, 0.5]}]},
    ]},
]


def main():
    tok = Tokenizer.from_file(str(TOKENIZER))
    edges = np.linspace(-2.0, 4.0, 65)
    interior = edges[1:-1]
    text = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    expected = []
    for ex in EXAMPLES:
        ids = text("<bos>" + ex["pairs"][0]["question"] + "\n")
        prefix = len(ids)
        loss, is3d = [False] * prefix, [False] * prefix

        def push(new, l, d):
            ids.extend(new)
            loss.extend([l] * len(new))
            is3d.extend([d] * len(new))

        for p, pair in enumerate(ex["pairs"]):
            if p > 0:
                push(text("\n" + pair["question"] + "\n"), False, False)
            for seg in pair["answer"]:
                if "text" in seg:
                    push(text(seg["text"]), True, False)
                elif "coords" in seg:
                    for v in seg["coords"]:
                        k = int(np.searchsorted(interior, np.float64(np.float32(v)), side="right"))
                        push([BASE_VOCAB + k], True, True)
                else:
                    push([tok.token_to_id(f"<loc{min(int(np.floor(v * 1024)), 1023):04d}>") for v in seg["loc"]],
                         True, False)
        push([tok.token_to_id("<eos>")], True, False)
        expected.append({"ids": ids, "prefix_len": prefix, "loss": loss, "is_3d": is3d})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "examples.jsonl").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in EXAMPLES))
    (OUT / "quantizer.json").write_text(json.dumps({"edges": [float(e) for e in edges]}) + "\n")
    (OUT / "expected.json").write_text(json.dumps({"base_vocab": BASE_VOCAB, "examples": expected}) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(EXAMPLES)} examples")


if __name__ == "__main__":
    main()
