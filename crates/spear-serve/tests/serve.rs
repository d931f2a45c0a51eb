//! `spear serve`'s server and client in process: a tiny SPEAR-1 served on 127.0.0.1 with the native
//! `spear` preset; the health check, the metadata, chunks, the API key, concurrent clients, the
//! shutdown, and every kind of bad input answered without taking the server down.

use std::path::PathBuf;
use std::time::Duration;

use burn::backend::Flex;
use spear_data::loader::Normalization;
use spear_data::tokenizer::PaliGemmaTokenizer;
use spear_models::SpearPolicyConfig;
use spear_policy::{Policy, PolicySpec};
use spear_serve::client::{ChunkStepper, Client, ClientError, actions};
use spear_serve::preset::Preset;
use spear_serve::server::{ServeConfig, ServeError, Server};
use spear_serve::wire::{Array, Dtype, Item, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

fn tokenizer() -> PaliGemmaTokenizer {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spear-models/tests/fixtures/paligemma-tiny/tokenizer.json");
    PaliGemmaTokenizer::from_file(path).unwrap()
}

fn tiny_policy(normalised: bool) -> Policy<Flex> {
    let device = Default::default();
    let model = SpearPolicyConfig::tiny().init::<Flex>(&device).unwrap();
    let normalization = normalised.then(Normalization::default);
    Policy::new(model, tokenizer(), normalization, PolicySpec::spear(2), &device).unwrap()
}

/// A server on a free port, stopped when the returned sender is dropped or fired.
async fn start(config: ServeConfig) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let server =
        Server::bind("127.0.0.1:0", tiny_policy(true), "tiny", Preset::Spear, None, config).await.unwrap();
    let address = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (address, stop, task)
}

fn image(height: usize, width: usize, chw: bool) -> Item {
    let shape = if chw { vec![3, height, width] } else { vec![height, width, 3] };
    let data = (0..height * width * 3).map(|i| (i * 7 % 256) as u8).collect();
    Item::Array(Array { dtype: Dtype::U8, shape, data })
}

fn state() -> Item {
    Item::Array(Array::f32(vec![8], &[0.5, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0, 0.0]))
}

fn observation() -> Item {
    Item::Map(vec![
        (
            "images".into(),
            Item::Map(vec![("main".into(), image(48, 64, false)), ("wrist".into(), image(32, 32, true))]),
        ),
        ("state".into(), state()),
        ("prompt".into(), Item::Str("reach the red block".into())),
    ])
}

/// `observation()` with `key` (a top-level key, or `images.NAME`) replaced by `value` (removed when
/// `None`).
fn with(key: &str, value: Option<Item>) -> Item {
    let Item::Map(mut entries) = observation() else { unreachable!() };
    let (map, name) = match key.split_once('.') {
        Some((outer, inner)) => {
            let Some((_, Item::Map(inner_entries))) = entries.iter_mut().find(|(k, _)| k == outer) else {
                unreachable!()
            };
            (inner_entries, inner.to_string())
        }
        None => (&mut entries, key.to_string()),
    };
    map.retain(|(k, _)| *k != name);
    if let Some(v) = value {
        map.push((name, v));
    }
    Item::Map(entries)
}

async fn http(address: &str, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out)).await;
    out
}

fn check_chunk(response: &Item) {
    let a = actions(response).unwrap();
    assert_eq!((a.dtype, a.shape.as_slice()), (Dtype::F32, &[5usize, 8][..]));
    assert!(a.to_f64().iter().all(|v| v.is_finite()));
    assert!(
        matches!(response.get("policy_timing").and_then(|t| t.get("infer_ms")), Some(Item::Float(ms)) if *ms > 0.0)
    );
    assert!(matches!(response.get("server_timing").and_then(|t| t.get("infer_ms")), Some(Item::Float(_))));
    let arrays = match response {
        Item::Map(entries) => entries.iter().filter(|(_, v)| matches!(v, Item::Array(_))).count(),
        _ => 0,
    };
    assert_eq!(arrays, 1, "openpi's ActionChunkBroker slices every array of the response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_chunks() {
    let (address, _stop, _task) = start(ServeConfig::default()).await;
    let health = http(&address, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("\r\n\r\nOK\n"), "{health:?}");
    let plain = http(&address, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain:?}");

    let mut client = Client::connect(&address, None).await.unwrap();
    let metadata = client.metadata().clone();
    assert_eq!(metadata.get("robot"), Some(&Item::Str("spear".into())));
    assert_eq!(metadata.get("horizon"), Some(&Item::Int(5)));
    assert_eq!(metadata.get("action_dim"), Some(&Item::Int(8)));
    assert_eq!(
        metadata.get("cameras"),
        Some(&Item::List(vec![Item::Str("main".into()), Item::Str("wrist".into())]))
    );
    let first = client.infer(&observation()).await.unwrap();
    check_chunk(&first);
    assert!(first.get("server_timing").unwrap().get("prev_total_ms").is_none());
    let second = client.infer(&observation()).await.unwrap();
    check_chunk(&second);
    assert!(
        matches!(second.get("server_timing").unwrap().get("prev_total_ms"), Some(Item::Float(ms)) if *ms > 0.0)
    );
    // A float frame in [0, 1] and a camera the robot does not have.
    let float_main = Item::Array(Array::f32(vec![20, 30, 3], &vec![0.25; 20 * 30 * 3]));
    let Item::Map(mut entries) = with("images.wrist", None) else { unreachable!() };
    entries[0].1 = Item::Map(vec![("main".into(), float_main)]);
    check_chunk(&client.infer(&Item::Map(entries)).await.unwrap());

    // One action at a time, a new chunk after the horizon.
    let mut stepper = ChunkStepper::new(5);
    let mut calls = 0;
    let step_observation = observation();
    for _ in 0..7 {
        let action = stepper
            .next(|| {
                calls += 1;
                client.infer(&step_observation)
            })
            .await
            .unwrap();
        assert_eq!(action.len(), 8);
    }
    assert_eq!(calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_is_checked_at_the_upgrade() {
    let config = ServeConfig { api_key: Some("sesame".into()), ..ServeConfig::default() };
    let (address, _stop, _task) = start(config).await;
    for key in [None, Some("wrong")] {
        match Client::connect(&address, key).await {
            Err(ClientError::Connect { source, .. }) => {
                assert!(source.to_string().contains("401"), "{source}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("key {key:?} accepted"),
        }
    }
    let mut client = Client::connect(&address, Some("sesame")).await.unwrap();
    check_chunk(&client.infer(&observation()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_answered_and_the_next_request_served() {
    let config = ServeConfig { max_message_bytes: 1 << 20, ..ServeConfig::default() };
    let (address, _stop, _task) = start(config).await;
    let nan_state = Item::Array(Array::f32(vec![8], &[0.5, f32::NAN, 0.2, 1.0, 0.0, 0.0, 0.0, 0.0]));
    let mut short_data = image(8, 8, false);
    if let Item::Array(a) = &mut short_data {
        a.data.pop();
    }
    let bad_dtype = {
        let mut bytes = encode(&observation());
        let at = bytes.windows(3).position(|w| w == b"|u1").unwrap();
        bytes[at..at + 3].copy_from_slice(b"|O8"[..3].as_ref());
        bytes
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not msgpack", vec![0xc1, 0xff, 0x00], "msgpack"),
        ("truncated", encode(&observation())[..100].to_vec(), "ends early"),
        ("object dtype", bad_dtype, "not a number type"),
        ("data length", encode(&with("images.main", Some(short_data))), "191 bytes of data"),
        ("missing key", encode(&with("prompt", None)), "no `prompt`"),
        ("extra key", encode(&with("reward", Some(Item::Int(1)))), "unknown key `reward`"),
        ("unknown camera", encode(&with("images.left", Some(image(8, 8, false)))), "unknown key `left`"),
        (
            "image shape",
            encode(&with("images.main", Some(Item::Array(Array::f32(vec![8, 8, 5], &[0.5; 320]))))),
            "[8, 8, 5]",
        ),
        (
            "float range",
            encode(&with("images.main", Some(Item::Array(Array::f32(vec![4, 4, 3], &[2.0; 48]))))),
            "images.main",
        ),
        ("NaN state", encode(&with("state", Some(nan_state))), "`state` value 1 is NaN"),
        (
            "state length",
            encode(&with("state", Some(Item::Array(Array::f32(vec![3], &[0.0; 3]))))),
            "3 values",
        ),
        ("not a dict", encode(&Item::List(vec![])), "not a dict"),
    ];
    let mut client = Client::connect(&address, None).await.unwrap();
    for (what, bytes, needle) in cases {
        client.send_raw(bytes).await.unwrap();
        match client.receive().await {
            Err(ClientError::Server(message)) => {
                assert!(message.contains(needle), "{what}: {message:?} should say {needle:?}");
                assert!(!message.contains(".rs") && !message.contains("panicked"), "{what}: {message}");
            }
            other => panic!("{what}: {other:?}"),
        }
        // The same connection and a fresh one are both served after it.
        check_chunk(&client.infer(&observation()).await.unwrap());
    }
    let mut fresh = Client::connect(&address, None).await.unwrap();
    check_chunk(&fresh.infer(&observation()).await.unwrap());

    // A message over the limit closes that connection with 1009 and a reason; others go on.
    let mut big = Client::connect(&address, None).await.unwrap();
    big.send_raw(vec![0x80; 2 << 20]).await.ok();
    match big.receive().await {
        Err(ClientError::Protocol(message)) => {
            assert!(message.contains("1009") && message.contains("limit"), "{message}")
        }
        other => panic!("oversized: {other:?}"),
    }
    // A client vanishing mid-request.
    let mut gone = Client::connect(&address, None).await.unwrap();
    gone.send_raw(encode(&observation())).await.unwrap();
    drop(gone);
    check_chunk(&fresh.infer(&observation()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_at_once() {
    let config = ServeConfig { max_batch: 4, ..ServeConfig::default() };
    let (address, _stop, _task) = start(config).await;
    let clients = (0..8).map(|_| {
        let address = address.clone();
        tokio::spawn(async move {
            let mut client = Client::connect(&address, None).await.unwrap();
            for _ in 0..3 {
                check_chunk(&client.infer(&observation()).await.unwrap());
            }
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_idle_connections_with_1001() {
    let (address, stop, task) = start(ServeConfig::default()).await;
    let mut client = Client::connect(&address, None).await.unwrap();
    check_chunk(&client.infer(&observation()).await.unwrap());
    stop.send(()).unwrap();
    match client.receive().await {
        Err(ClientError::Protocol(message)) => assert!(message.contains("1001"), "{message}"),
        other => panic!("{other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_without_normalisers_is_refused_before_listening() {
    let refused =
        Server::bind("127.0.0.1:0", tiny_policy(false), "raw", Preset::Spear, None, ServeConfig::default())
            .await;
    match refused {
        Err(ServeError::Incompatible { reason, .. }) => {
            assert!(reason.contains("normalization.json"), "{reason}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("served a policy whose actions are normalised values"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_while_the_model_works() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (address, _stop, _task) = start(ServeConfig::default()).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}")).await.unwrap();
    let metadata = socket.next().await.unwrap().unwrap();
    assert!(metadata.is_binary());
    socket.send(Message::Binary(encode(&observation()).into())).await.unwrap();
    socket.send(Message::Ping(b"still there?".to_vec().into())).await.unwrap();
    let sent = std::time::Instant::now();
    // The pong comes back before the chunk: the connection reads while its request is sampled.
    match socket.next().await.unwrap().unwrap() {
        Message::Pong(payload) => assert_eq!(&payload[..], b"still there?"),
        other => panic!("expected the pong first, got {other:?}"),
    }
    let pong_ms = sent.elapsed().as_secs_f64() * 1e3;
    let response = match socket.next().await.unwrap().unwrap() {
        Message::Binary(bytes) => spear_serve::wire::decode(&bytes).unwrap(),
        other => panic!("{other:?}"),
    };
    check_chunk(&response);
    let Some(Item::Float(infer_ms)) = response.get("policy_timing").and_then(|t| t.get("infer_ms")) else {
        panic!()
    };
    eprintln!("pong after {pong_ms:.2} ms, the chunk took {infer_ms:.1} ms");
}
