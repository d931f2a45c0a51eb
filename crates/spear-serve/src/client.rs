//! A client of openpi's policy protocol, for Rust robot stacks and for `spear serve --probe`: it
//! connects (with an optional API key), reads the metadata frame, sends observations and reads
//! action chunks; [`ChunkStepper`] hands out one action at a time as openpi's `ActionChunkBroker`.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wire::{self, Array, Item};

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection or the upgrade failed (a 401 for a wrong key among them).
    #[error("{url}: {source}")]
    Connect {
        /// The server's URL.
        url: String,
        /// What failed.
        source: Box<tungstenite::Error>,
    },
    /// The connection failed after the upgrade.
    #[error("connection: {0}")]
    Socket(Box<tungstenite::Error>),
    /// The server answered with an error message (a text frame).
    #[error("the server refused the request: {0}")]
    Server(String),
    /// The server's answer is not the protocol's.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// A connection to a policy server.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    metadata: Item,
}

impl Client {
    /// Connects to `url` (`ws://host:port`, or `host:port`) and reads the metadata frame.
    pub async fn connect(url: &str, api_key: Option<&str>) -> Result<Self, ClientError> {
        let url = if url.starts_with("ws://") || url.starts_with("wss://") {
            url.to_string()
        } else {
            format!("ws://{url}")
        };
        let connect =
            |source: tungstenite::Error| ClientError::Connect { url: url.clone(), source: Box::new(source) };
        let mut request = url.as_str().into_client_request().map_err(connect)?;
        if let Some(key) = api_key {
            let value = format!("Api-Key {key}")
                .parse()
                .map_err(|_| ClientError::Protocol("the API key is not a valid header value".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        // No limit on what the server sends, as openpi's client (`max_size=None`).
        let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
            .await
            .map_err(connect)?;
        let mut client = Self { socket, metadata: Item::Nil };
        client.metadata = client.receive().await?;
        Ok(client)
    }

    /// The server's metadata frame.
    pub fn metadata(&self) -> &Item {
        &self.metadata
    }

    /// Sends one observation and returns the server's response (`actions` and timings).
    pub async fn infer(&mut self, observation: &Item) -> Result<Item, ClientError> {
        self.send_raw(wire::encode(observation)).await?;
        self.receive().await
    }

    /// Sends `bytes` as one binary frame, as they are (for tests of what a server does with them).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.socket.send(Message::Binary(bytes.into())).await.map_err(|e| ClientError::Socket(Box::new(e)))
    }

    /// The next message: a binary frame decoded, a text frame as [`ClientError::Server`].
    pub async fn receive(&mut self) -> Result<Item, ClientError> {
        loop {
            let message = self
                .socket
                .next()
                .await
                .ok_or_else(|| ClientError::Protocol("the server closed the connection".into()))?
                .map_err(|e| ClientError::Socket(Box::new(e)))?;
            return match message {
                Message::Binary(bytes) => wire::decode(&bytes).map_err(ClientError::Protocol),
                Message::Text(text) => Err(ClientError::Server(text.to_string())),
                Message::Close(frame) => Err(ClientError::Protocol(match frame {
                    Some(f) => {
                        format!("the server closed the connection ({}: {})", u16::from(f.code), f.reason)
                    }
                    None => "the server closed the connection".into(),
                })),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.socket.close(None).await.map_err(|e| ClientError::Socket(Box::new(e)))
    }
}

/// The `actions` array of a response, checked to be `[horizon, dim]`.
pub fn actions(response: &Item) -> Result<&Array, ClientError> {
    match response.get("actions") {
        Some(Item::Array(a)) if a.shape.len() == 2 => Ok(a),
        Some(other) => {
            Err(ClientError::Protocol(format!("`actions` is {}, not a [horizon, dim] array", other.kind())))
        }
        None => Err(ClientError::Protocol("the response has no `actions`".into())),
    }
}

/// One action at a time from chunks, as openpi's `ActionChunkBroker`: a new chunk is asked for
/// when the last one's first `horizon` actions are used up.
pub struct ChunkStepper {
    horizon: usize,
    chunk: Vec<Vec<f64>>,
    step: usize,
}

impl ChunkStepper {
    /// Steps through the first `horizon` actions of each chunk.
    pub fn new(horizon: usize) -> Self {
        Self { horizon: horizon.max(1), chunk: Vec::new(), step: 0 }
    }

    /// The next action: from the current chunk, or from a new one `infer` returns.
    pub async fn next<F, Fut>(&mut self, infer: F) -> Result<Vec<f64>, ClientError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Item, ClientError>>,
    {
        if self.chunk.is_empty() || self.step >= self.horizon.min(self.chunk.len()) {
            let response = infer().await?;
            let actions = actions(&response)?;
            let dim = actions.shape[1];
            self.chunk = actions.to_f64().chunks(dim.max(1)).map(<[f64]>::to_vec).collect();
            if self.chunk.is_empty() {
                return Err(ClientError::Protocol("an empty chunk".into()));
            }
            self.step = 0;
        }
        let action = self.chunk[self.step].clone();
        self.step += 1;
        Ok(action)
    }

    /// Forgets the current chunk (a new episode).
    pub fn reset(&mut self) {
        self.chunk.clear();
        self.step = 0;
    }
}
