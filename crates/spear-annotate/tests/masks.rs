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
        {"id": 8, "label": "tray", "segmentation": [[1.0, 2.0, 5.0, 2.0, 5.0, 6.0]]},
    ]);
    let path = std::env::temp_dir().join(format!("spear-annotate-masks-{}.json", std::process::id()));
    std::fs::write(&path, list.to_string()).unwrap();
    let instances = read_instances(&path, None).unwrap();
    assert_eq!((instances[0].id.as_str(), instances[0].label.as_deref()), ("board", Some("cutting board")));
    check(instances[0].mask.as_ref().unwrap(), want, "ego-exo4d via read_instances");
    assert_eq!((instances[1].id.as_str(), instances[1].label.as_deref()), ("7", None));
    check(instances[1].mask.as_ref().unwrap(), case, "coco via read_instances");
    // A polygon is not rasterised: that instance has no mask, the others are read.
    assert_eq!((instances[2].id.as_str(), instances[2].mask.is_none()), ("8", true));
    // A mask of the wrong size is refused before it is decoded (a huge size costs nothing).
    std::fs::write(
        &path,
        r#"[{"segmentation": {"size": [1000000, 1000000], "counts": [0, 1000000000000]}}]"#,
    )
    .unwrap();
    let error = read_instances(&path, Some([24, 32])).unwrap_err().to_string();
    assert!(error.contains("[1000000, 1000000]") && error.contains("[24, 32]"), "{error}");
    std::fs::write(&path, r#"[{"segmentation": {"size": [2, 2], "counts": "2"}}]"#).unwrap();
    let error = read_instances(&path, None).unwrap_err().to_string();
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

#[test]
fn mask_pngs_of_any_depth_and_colour_type_are_read() {
    let dir = std::env::temp_dir().join(format!("spear-annotate-mask-pngs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 16-bit grey 0/1, RGB with only blue set, grey + alpha with alpha everywhere.
    image::ImageBuffer::<image::Luma<u16>, _>::from_fn(4, 3, |x, _| image::Luma([u16::from(x == 1)]))
        .save(dir.join("a.png"))
        .unwrap();
    image::RgbImage::from_fn(4, 3, |x, _| image::Rgb([0, 0, u8::from(x == 2)]))
        .save(dir.join("b.png"))
        .unwrap();
    image::GrayAlphaImage::from_fn(4, 3, |x, _| image::LumaA([u8::from(x == 3) * 255, 255]))
        .save(dir.join("c.png"))
        .unwrap();
    let instances = read_instances(&dir, Some([3, 4])).unwrap();
    for (k, instance) in instances.iter().enumerate() {
        let mask = instance.mask.as_ref().unwrap();
        let set: Vec<usize> = (0..12).filter(|&i| mask.pixels[i]).map(|i| i % 4).collect();
        assert_eq!(set, vec![k + 1; 3], "{}", instance.id);
    }
    let error = read_instances(&dir, Some([4, 4])).unwrap_err().to_string();
    assert!(error.contains("a.png"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
