//! The wire format against `openpi_client.msgpack_numpy` (fixtures from
//! `tools/reference/serve_fixtures.py`): every case decodes to what Python packed, and re-encodes to
//! the very same bytes; malformed messages are refused with a message naming the key.

use std::path::PathBuf;

use serde_json::Value;
use spear_serve::wire::{Array, Dtype, Item, decode, encode};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire")
}

/// Asserts that `item` is what `want` (cases.json's description) describes; `path` names it.
fn check(item: &Item, want: &Value, path: &str) {
    let (kind, expected) = want.as_object().unwrap().iter().next().unwrap();
    match (kind.as_str(), item) {
        ("nil", Item::Nil) => {}
        ("bool", Item::Bool(b)) => assert_eq!(Some(*b), expected.as_bool(), "{path}"),
        ("int", Item::Int(i)) => assert_eq!(Some(*i), expected.as_i64(), "{path}"),
        ("float", Item::Float(f)) => assert_eq!(Some(*f), expected.as_f64(), "{path}"),
        ("str", Item::Str(s)) => assert_eq!(Some(s.as_str()), expected.as_str(), "{path}"),
        ("bytes", Item::Bytes(b)) => {
            let want: Vec<u8> =
                expected.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
            assert_eq!(*b, want, "{path}");
        }
        ("list", Item::List(items)) => {
            let want = expected.as_array().unwrap();
            assert_eq!(items.len(), want.len(), "{path}");
            for (i, (item, want)) in items.iter().zip(want).enumerate() {
                check(item, want, &format!("{path}[{i}]"));
            }
        }
        ("map", Item::Map(entries)) => {
            let want = expected.as_array().unwrap();
            assert_eq!(entries.len(), want.len(), "{path}");
            for ((key, item), want) in entries.iter().zip(want) {
                assert_eq!(Some(key.as_str()), want[0].as_str(), "{path}: keys in order");
                check(item, &want[1], &format!("{path}.{key}"));
            }
        }
        ("array", Item::Array(array)) => {
            assert_eq!(array.dtype.numpy(), expected["dtype"].as_str().unwrap(), "{path}");
            let shape: Vec<usize> =
                expected["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(array.shape, shape, "{path}");
            let values: Vec<f64> = expected["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().or_else(|| v.as_bool().map(|b| f64::from(u8::from(b)))).unwrap())
                .collect();
            assert_eq!(array.to_f64(), values, "{path}");
        }
        _ => panic!("{path}: expected {kind}, decoded {}", item.kind()),
    }
}

#[test]
fn every_case_decodes_as_python_packed_it_and_reencodes_byte_for_byte() {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    let cases = manifest["cases"].as_object().unwrap();
    assert!(cases.len() >= 12);
    for (name, case) in cases {
        let bytes = std::fs::read(fixtures().join(format!("{name}.msgpack"))).unwrap();
        let item = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&item, &case["value"], name);
        if case["roundtrip"].as_bool().unwrap() {
            assert!(encode(&item) == bytes, "{name}: re-encoded bytes differ from msgpack_numpy.packb's");
        }
    }
}

#[test]
fn the_response_of_the_serving_notes_is_77_bytes_as_openpi_packs_it() {
    let values: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let response = Item::Map(vec![("actions".into(), Item::Array(Array::f32(vec![2, 3], &values)))]);
    let want = std::fs::read(fixtures().join("actions_example.msgpack")).unwrap();
    assert_eq!(encode(&response), want);
}

fn array_message(dtype: &str, shape: &[u64], data: &[u8]) -> Vec<u8> {
    use rmpv::Value as V;
    let bin = |s: &str| V::Binary(s.as_bytes().to_vec());
    let array = V::Map(vec![
        (bin("__ndarray__"), V::Boolean(true)),
        (bin("data"), V::Binary(data.to_vec())),
        (bin("dtype"), V::from(dtype)),
        (bin("shape"), V::Array(shape.iter().map(|&d| V::from(d)).collect())),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &V::Map(vec![(V::from("state"), array)])).unwrap();
    out
}

#[test]
fn malformed_messages_are_refused_naming_the_key() {
    let refused = |bytes: &[u8], needles: &[&str]| {
        let err = decode(bytes).expect_err("refused");
        assert!(needles.iter().all(|n| err.contains(n)), "{err:?} should name {needles:?}");
        assert!(![".rs", "src/", "/home", "/work"].iter().any(|p| err.contains(p)), "no paths: {err}");
    };
    // Lengths that promise more than the message holds (nothing is allocated for them).
    refused(&[0xdd, 0xff, 0xff, 0xff, 0xff], &["ends early"]);
    refused(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00], &["ends early"]);
    refused(&[0x81, 0xa1], &["ends early"]);
    refused(&[0xa2, 0xff, 0xfe], &["not UTF-8"]);
    refused(&[0x80, 0x80], &["after the end"]);
    refused(&array_message("<f4", &[2], &[0; 7]), &["`state`", "7 bytes", "[2]", "8 expected"]);
    refused(&array_message(">f4", &[2], &[0; 8]), &["`state`", "big-endian"]);
    refused(&array_message("|O", &[1], &[0; 8]), &["`state`", "not a number type"]);
    refused(&array_message("<c8", &[1], &[0; 8]), &["not a number type"]);
    refused(&array_message("<x3", &[1], &[0; 3]), &["unknown dtype"]);
    refused(&array_message("<f8", &[u64::MAX, 2], &[]), &["too large"]);
    // Nesting beyond any observation's depth.
    let deep: Vec<u8> = std::iter::repeat_n(0x91, 100).chain([0xc0]).collect();
    refused(&deep, &["deeper than 32"]);
    // Keys that are not strings, repeated keys.
    refused(&[0x81, 0x01, 0x02], &["dict key"]);
    refused(&[0x82, 0xa1, b'a', 0x01, 0xa1, b'a', 0x02], &["key \"a\" twice"]);
}

#[test]
fn dtypes_parse_as_numpy_spells_them() {
    for (s, d) in [
        ("<f4", Dtype::F32),
        ("=f4", Dtype::F32),
        ("|u1", Dtype::U8),
        ("|b1", Dtype::Bool),
        (">u1", Dtype::U8),
    ] {
        assert_eq!(Dtype::parse(s), Ok(d), "{s}");
    }
    for s in ["", "<", "f4", ">i8", "|V8", "<U3", "<M8", "<f3"] {
        assert!(Dtype::parse(s).is_err(), "{s}");
    }
}
