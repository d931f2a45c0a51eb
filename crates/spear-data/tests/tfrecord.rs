//! The TFRecord and tf.train.Example readers against a file TensorFlow wrote and what TensorFlow
//! read back from it (`tools/reference/tfrecord_fixtures.py`), and damaged copies of that file.

use std::path::PathBuf;

use serde_json::Value;
use spear_data::example::{Feature, parse_example};
use spear_data::tfrecord::{OnCorrupt, TfRecordError, TfRecordReader};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("examples_expected.json")).unwrap()).unwrap()
}

/// The fixture's description of a feature, as ours would print it.
fn describe(feature: &Feature) -> Value {
    let values: Vec<Value> = match feature {
        Feature::Bytes(v) => {
            v.iter().map(|b| Value::from(b.iter().map(|x| format!("{x:02x}")).collect::<String>())).collect()
        }
        Feature::Float(v) => v.iter().map(|f| Value::from(f.to_bits())).collect(),
        Feature::Int64(v) => v.iter().map(|i| Value::from(i.to_string())).collect(),
        Feature::Empty => vec![],
    };
    serde_json::json!({ "kind": feature.kind(), "values": values })
}

#[test]
fn every_record_and_feature_matches_tensorflow() {
    let want = expected();
    let records: Vec<Vec<u8>> = TfRecordReader::open(fixture("examples.tfrecord"), OnCorrupt::Fail)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let lengths: Vec<u64> =
        want["record_lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(records.iter().map(|r| r.len() as u64).collect::<Vec<_>>(), lengths);
    let want = want["records"].as_array().unwrap();
    assert_eq!(records.len(), want.len());
    for (i, (record, want)) in records.iter().zip(want).enumerate() {
        let example = parse_example(record).unwrap();
        let got: serde_json::Map<String, Value> =
            example.iter().map(|(name, feature)| (name.clone(), describe(feature))).collect();
        assert_eq!(&Value::Object(got), want, "record {i}");
    }
}

fn damaged(tag: &str, edit: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(fixture("examples.tfrecord")).unwrap();
    edit(&mut bytes);
    let path = std::env::temp_dir().join(format!("spear-tfrecord-{tag}-{}.tfrecord", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn corrupt_parts(error: &TfRecordError) -> (u64, u64, String) {
    match error {
        TfRecordError::Corrupt { record, offset, problem, .. } => (*record, *offset, problem.clone()),
        other => panic!("expected a corrupt-record error, got {other}"),
    }
}

#[test]
fn a_damaged_record_fails_or_is_skipped_and_counted() {
    let lengths: Vec<u64> =
        expected()["record_lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    // Flip one byte inside record 1's data.
    let second = 16 + lengths[0];
    let path = damaged("data", |b| b[(second + 12 + 5) as usize] ^= 0x40);
    let error = TfRecordReader::open(&path, OnCorrupt::Fail).unwrap().find_map(Result::err).unwrap();
    assert_eq!(corrupt_parts(&error), (1, second, format!("data checksum mismatch ({} bytes)", lengths[1])));
    assert!(
        error.to_string().starts_with(&format!("{}: record 1 at byte {second}: ", path.display())),
        "{error}"
    );

    let mut reader = TfRecordReader::open(&path, OnCorrupt::Skip).unwrap();
    let kept: Vec<Vec<u8>> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(kept.iter().map(|r| r.len() as u64).collect::<Vec<_>>(), [lengths[0], lengths[2], lengths[3]]);
    assert_eq!(reader.skipped().len(), 1);
    assert_eq!(corrupt_parts(&reader.skipped()[0]).0, 1);
}

#[test]
fn framing_errors_end_the_file_with_its_offset() {
    let lengths: Vec<u64> =
        expected()["record_lengths"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let total: u64 = lengths.iter().map(|l| l + 16).sum();
    // Truncated inside the last record's data.
    let last = total - 16 - lengths[3];
    let path = damaged("truncated", |b| b.truncate((last + 12 + 1000) as usize));
    for mode in [OnCorrupt::Fail, OnCorrupt::Skip] {
        let results: Vec<_> = TfRecordReader::open(&path, mode).unwrap().collect();
        assert_eq!(results.len(), 4, "three records, then the error");
        let (record, offset, problem) = corrupt_parts(results[3].as_ref().unwrap_err());
        assert_eq!((record, offset), (3, last));
        assert_eq!(problem, format!("file ends inside the record data (1000 of {} bytes)", lengths[3]));
    }
    // A damaged length.
    let path = damaged("length", |b| b[0] ^= 1);
    let results: Vec<_> = TfRecordReader::open(&path, OnCorrupt::Skip).unwrap().collect();
    assert_eq!(results.len(), 1);
    let (record, offset, problem) = corrupt_parts(results[0].as_ref().unwrap_err());
    assert_eq!((record, offset), (0, 0));
    assert!(problem.contains("length checksum mismatch"), "{problem}");
    // Not a TFRecord file at all, and a missing one.
    let path = damaged("text", |b| *b = b"hello, this is not a tfrecord".to_vec());
    assert!(TfRecordReader::open(&path, OnCorrupt::Fail).unwrap().next().unwrap().is_err());
    let missing = TfRecordReader::open(fixture("no-such.tfrecord"), OnCorrupt::Fail).err().unwrap();
    assert!(matches!(missing, TfRecordError::Io { .. }) && missing.to_string().contains("no-such.tfrecord"));
}

/// Also checked once with TensorFlow 2.21 (`tools/reference/requirements-data.txt`): it reads the
/// written file, every feature equals the original's, and 3 of the 4 records are byte-identical to
/// TensorFlow's own serialisation.
#[test]
fn written_records_and_examples_read_back_the_same() {
    use spear_data::example::encode_example;
    use spear_data::tfrecord::TfRecordWriter;
    let records: Vec<Vec<u8>> = TfRecordReader::open(fixture("examples.tfrecord"), OnCorrupt::Fail)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let path = std::env::temp_dir().join(format!("spear-data-written-{}.tfrecord", std::process::id()));
    let mut writer = TfRecordWriter::create(&path).unwrap();
    let examples: Vec<_> = records.iter().map(|r| parse_example(r).unwrap()).collect();
    for example in &examples {
        writer.write_record(&encode_example(example)).unwrap();
    }
    assert_eq!(writer.records(), records.len() as u64);
    writer.finish().unwrap();
    // Framing and checksums are read back (the reader checks both CRCs), and every feature.
    let again: Vec<Vec<u8>> =
        TfRecordReader::open(&path, OnCorrupt::Fail).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(again.len(), records.len());
    // Compared through `describe` (floats as bits: the fixture holds NaN).
    let bits = |e: &spear_data::example::Example| -> Vec<(String, Value)> {
        e.iter().map(|(k, f)| (k.clone(), describe(f))).collect()
    };
    for (i, (record, example)) in again.iter().zip(&examples).enumerate() {
        assert!(bits(&parse_example(record).unwrap()) == bits(example), "record {i}");
    }
    let _ = std::fs::remove_file(&path);
}
