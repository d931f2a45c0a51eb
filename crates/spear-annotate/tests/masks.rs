//! COCO RLE and Ego-Exo4D's LZString-wrapped masks against pycocotools 2.0.11 and lz-string
//! (`tools/reference/annotate_fixtures.py`).

use serde_json::Value;
use spear_annotate::instances::read_instances;
use spear_annotate::masks::{Mask, MaskError, Rle, lzstring_decompress_uri};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rle.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check(mask: &Mask, want: &Value, what: &str) {
    let rows: Vec<String> = mask
        .pixels
        .chunks(mask.width)
        .map(|r| r.iter().map(|&p| if p { '1' } else { '0' }).collect())
        .collect();
    let want_rows: Vec<&str> =
        want["mask_rows"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(rows, want_rows, "{what}");
    assert_eq!(mask.area(), want["area"].as_u64().unwrap(), "{what}");
    let bbox: Vec<f64> = want["bbox_xywh"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(mask.bbox().to_vec(), bbox, "{what}");
}

#[test]
fn compressed_and_uncompressed_counts_decode_as_pycocotools_does() {
    let fixture = fixture();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let [h, w] = [0, 1].map(|i| case["size"][i].as_u64().unwrap() as usize);
        let rle = Rle::from_compressed(h, w, case["counts"].as_str().unwrap()).unwrap();
        let counts: Vec<u64> =
            case["uncompressed_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(rle.counts, counts, "{name}");
        check(&rle.decode(), case, name);
        assert_eq!(Rle::from_counts(h, w, counts).unwrap(), rle);
    }
}

#[test]
fn ego_exo4d_masks_unwrap_lzstring_then_decode() {
    let fixture = fixture();
    let ego = &fixture["ego_exo4d"];
    let want = &ego["expected"];
    let annotation = &ego["relations"]["annotations"][want["take_uid"].as_str().unwrap()]["object_masks"]
        [want["object"].as_str().unwrap()][want["camera"].as_str().unwrap()]["annotation"]
        [want["frame"].as_str().unwrap()];
    let counts = lzstring_decompress_uri(annotation["encodedMask"].as_str().unwrap()).unwrap();
    assert_eq!(counts, want["counts"].as_str().unwrap());
    let (h, w) =
        (annotation["height"].as_u64().unwrap() as usize, annotation["width"].as_u64().unwrap() as usize);
    check(&Rle::from_compressed(h, w, &counts).unwrap().decode(), want, "ego-exo4d");

    // The same annotation as a per-image masks file, beside a COCO-compressed one.
    let case = &fixture["cases"][0];
    let list = serde_json::json!([
        {"id": "board", "label": "cutting board", "segmentation": annotation},
        {"id": 7, "segmentation": {"size": case["size"], "counts": case["counts"]}},
    ]);
    let path = std::env::temp_dir().join(format!("spear-annotate-masks-{}.json", std::process::id()));
    std::fs::write(&path, list.to_string()).unwrap();
    let instances = read_instances(&path).unwrap();
    assert_eq!((instances[0].id.as_str(), instances[0].label.as_deref()), ("board", Some("cutting board")));
    check(&instances[0].mask, want, "ego-exo4d via read_instances");
    assert_eq!((instances[1].id.as_str(), instances[1].label.as_deref()), ("7", None));
    check(&instances[1].mask, case, "coco via read_instances");
    std::fs::write(&path, r#"[{"segmentation": {"size": [2, 2], "counts": "2"}}]"#).unwrap();
    let error = read_instances(&path).unwrap_err().to_string();
    assert!(
        error.contains(".json") && error.contains("instance 0") && error.contains("cover 2 pixels"),
        "{error}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn malformed_masks_are_errors() {
    assert!(matches!(
        Rle::from_compressed(2, 2, "2"),
        Err(MaskError::Coverage { covered: 2, pixels: 4, .. })
    ));
    assert!(matches!(Rle::from_compressed(2, 2, "\u{7f}"), Err(MaskError::Counts(_))));
    assert!(matches!(Rle::from_compressed(2, 2, "g"), Err(MaskError::Counts(_))), "a count that never ends");
    assert!(matches!(lzstring_decompress_uri("a*b"), Err(MaskError::LzString(_))));
    assert!(matches!(lzstring_decompress_uri("FoDQ"), Err(MaskError::LzString(_))), "truncated");
}
