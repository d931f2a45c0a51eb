//! The websocket server: openpi's protocol on hyper and axum.
//!
//! `GET /healthz` answers `200 OK\n`; any other path upgrades to a websocket (checking
//! `Authorization: Api-Key …` first when a key is set: 401 otherwise) and a plain request gets 426.
//! On a connection the server sends the metadata frame, then answers each binary observation with
//! one binary response, or with a short text frame saying what was wrong (openpi's client raises
//! it as a `RuntimeError`) while the connection stays open for the next request. Connections are
//! independent tasks; the model runs on its own thread ([`crate::worker`]), so pings and other
//! clients are answered while it works.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use burn::prelude::*;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use spear_policy::{Frame, Pixels, Policy, RawObservation};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::openpi::NormStats;
use crate::preset::{PolicyFacts, Preset};
use crate::wire::{self, Item};
use crate::worker::{Answer, Worker};

/// How the server treats its clients.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The key clients must send as `Authorization: Api-Key <key>` (none: no check).
    pub api_key: Option<String>,
    /// Observations sampled together at most.
    pub max_batch: usize,
    /// Largest message accepted, bytes; a larger one closes the connection with 1009.
    pub max_message_bytes: usize,
    /// Time a client has to send its HTTP request after connecting.
    pub handshake_timeout: Duration,
    /// Time a connection may wait for its next message; then it is closed (1001).
    pub read_timeout: Duration,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// The instruction for observations without a `prompt` (openpi's `--default_prompt`; ALOHA's
    /// clients send none).
    pub default_prompt: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            max_batch: 8,
            // Unresized camera frames run to megabytes each (openpi sets no limit at all).
            max_message_bytes: 128 << 20,
            handshake_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(30),
            default_prompt: None,
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The checkpoint cannot be served to this preset's clients.
    #[error("cannot serve this checkpoint as `{preset}`: {reason}")]
    Incompatible {
        /// The preset.
        preset: &'static str,
        /// Why.
        reason: String,
    },
    /// The warm-up inference failed.
    #[error("warm-up inference failed: {0}")]
    WarmUp(String),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

struct Shared {
    worker: Worker,
    preset: Preset,
    facts: PolicyFacts,
    metadata: Bytes,
    config: ServeConfig,
    shutdown: watch::Receiver<bool>,
    active: AtomicUsize,
    idle: Notify,
}

/// Counts a connection as active while it lives.
struct Active<'a>(&'a Shared);

impl<'a> Active<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.active.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A server with its model loaded and warmed up, listening.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// What a checkpoint loaded as a [`Policy`] (with openpi's statistics for a π0 one) tells a preset;
/// no default prompt.
pub fn facts<B: Backend>(policy: &Policy<B>, model: &str, norm_stats: Option<NormStats>) -> PolicyFacts {
    let config = policy.model().config();
    PolicyFacts {
        model: model.to_string(),
        cameras: policy.spec().cameras.iter().map(|c| c.name.clone()).collect(),
        state_dim: config.expert.state_dim,
        horizon: policy.model().horizon(),
        action_dim: policy.model().action_dim(),
        rate_hz: policy.spec().rate_hz,
        in_robot_units: policy.in_robot_units(),
        pi0: policy.is_pi0(),
        norm_stats,
        default_prompt: None,
    }
}

impl Server {
    /// Checks `policy` (with openpi's `norm_stats` for a π0 checkpoint) against `preset`, moves it
    /// to the model thread, runs one warm-up inference and only then binds `address` (port 0: any
    /// free port).
    pub async fn bind<B: Backend>(
        address: &str,
        policy: Policy<B>,
        model: &str,
        preset: Preset,
        norm_stats: Option<NormStats>,
        config: ServeConfig,
    ) -> Result<Self, ServeError>
    where
        Policy<B>: Send + 'static,
    {
        let facts = PolicyFacts {
            default_prompt: config.default_prompt.clone(),
            ..facts(&policy, model, norm_stats)
        };
        preset.check(&facts).map_err(|reason| ServeError::Incompatible { preset: preset.name(), reason })?;
        let worker = Worker::spawn(policy, config.max_batch);
        worker.act(warm_up(&facts)).await.map_err(ServeError::WarmUp)?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServeError::Bind { address: address.to_string(), source })?;
        let metadata = Bytes::from(wire::encode(&preset.metadata(&facts)));
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            worker,
            preset,
            facts,
            metadata,
            config,
            shutdown,
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        Ok(Self { listener, shared, stop })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests finish
    /// (at most `drain_timeout`) and closes every connection with 1001.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let app = Router::new()
            .route("/healthz", get(|| async { "OK\n" }))
            .fallback(upgrade)
            .with_state(self.shared.clone());
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let service = TowerToHyperService::new(app.clone());
            let handshake_timeout = self.shared.config.handshake_timeout;
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(handshake_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                let _ = connection.await;
            });
        }
        let _ = self.stop.send(true);
        let drained = async {
            while self.shared.active.load(Ordering::SeqCst) > 0 {
                let notified = self.shared.idle.notified();
                if self.shared.active.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(self.shared.config.drain_timeout, drained).await;
    }
}

/// An observation of the policy's shape (black frames, a zero state) for the warm-up.
fn warm_up(facts: &PolicyFacts) -> RawObservation {
    let frame = Frame {
        height: 64,
        width: 64,
        channels: 3,
        order: Default::default(),
        pixels: Pixels::U8(vec![0; 64 * 64 * 3]),
    };
    RawObservation {
        cameras: vec![Some(frame); facts.cameras.len()],
        state: vec![0.0; facts.state_dim],
        prompt: "warm up".into(),
    }
}

/// Every path but `/healthz`: the websocket upgrade, after the key check.
async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "a websocket server (openpi's policy protocol); GET /healthz\n",
        )
            .into_response();
    };
    if let Some(key) = &shared.config.api_key {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Api-Key "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return (StatusCode::UNAUTHORIZED, "missing or wrong `Authorization: Api-Key …`\n")
                .into_response();
        }
    }
    let limit = shared.config.max_message_bytes;
    ws.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| connection(socket, shared))
}

/// Compares without stopping at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// One client: the metadata, then request after request until it leaves, idles too long or the
/// server shuts down.
async fn connection(mut socket: WebSocket, shared: Arc<Shared>) {
    let _active = Active::new(&shared);
    if socket.send(Message::Binary(shared.metadata.clone())).await.is_err() {
        return;
    }
    let mut shutdown = shared.shutdown.clone();
    let mut prev_total_ms: Option<f64> = None;
    // A request that arrived while the previous one was being answered.
    let mut pending: Option<Bytes> = None;
    loop {
        let message = match pending.take() {
            Some(bytes) => Message::Binary(bytes),
            None => tokio::select! {
                () = stopping(&mut shutdown) => {
                    return close(socket, 1001, "the server is shutting down").await;
                }
                received = tokio::time::timeout(shared.config.read_timeout, socket.recv()) => match received {
                    Err(_) => return close(socket, 1001, "no request within the read timeout").await,
                    Ok(None) => return,
                    Ok(Some(Err(e))) => return receive_failed(socket, &e, shared.config.max_message_bytes).await,
                    Ok(Some(Ok(message))) => message,
                },
            },
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Text(_) => {
                let text = "send observations as binary msgpack frames (openpi_client.msgpack_numpy)";
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                continue;
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let started = Instant::now();
        let observation =
            wire::decode(&bytes).and_then(|item| shared.preset.observation(&item, &shared.facts));
        // The state the model sees: openpi's output path reads it back (`AbsoluteActions`).
        let mut state = Vec::new();
        let answer = match observation {
            Ok(observation) => {
                state.clone_from(&observation.state);
                let act = shared.worker.act(observation);
                tokio::pin!(act);
                // Keep reading while the model works: pings are answered, a vanished client is
                // noticed (its observation is then dropped from the queue), an early next
                // request waits its turn.
                loop {
                    tokio::select! {
                        answer = &mut act => break answer,
                        received = socket.recv(), if pending.is_none() => match received {
                            Some(Ok(Message::Binary(next))) => pending = Some(next),
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                            Some(Ok(_)) => {}
                        },
                    }
                }
            }
            Err(problem) => Err(problem),
        };
        let reply = match answer {
            Ok(answer) => Message::Binary(Bytes::from(wire::encode(&response(
                &shared,
                &answer,
                &state,
                started.elapsed().as_secs_f64() * 1e3,
                prev_total_ms,
            )))),
            Err(problem) => Message::Text(problem.into()),
        };
        if socket.send(reply).await.is_err() {
            return;
        }
        prev_total_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    }
}

/// Completes once the server is shutting down.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A read that failed: an oversized message is closed with 1009 and says the limit.
async fn receive_failed(socket: WebSocket, error: &axum::Error, limit: usize) {
    let message = error.to_string();
    // tungstenite's capacity error (axum does not expose its type).
    if message.contains("Space limit exceeded") {
        close(socket, 1009, &format!("message over the server's limit of {limit} bytes")).await;
    }
}

/// openpi's response: the actions, and the model's and the server's time.
fn response(
    shared: &Shared,
    answer: &Answer,
    state: &[f32],
    infer_ms: f64,
    prev_total_ms: Option<f64>,
) -> Item {
    let mut server_timing = vec![("infer_ms".to_string(), Item::Float(infer_ms))];
    if let Some(prev) = prev_total_ms {
        server_timing.push(("prev_total_ms".to_string(), Item::Float(prev)));
    }
    Item::Map(vec![
        ("actions".into(), Item::Array(shared.preset.actions(&answer.chunk, &shared.facts, state))),
        ("policy_timing".into(), Item::Map(vec![("infer_ms".into(), Item::Float(answer.infer_ms))])),
        ("server_timing".into(), Item::Map(server_timing)),
    ])
}
