//! The exchange between nodes: a ring of TCP connections, one per node, each sending to the
//! next node and receiving from the previous one, and a ring all-reduce over it (reduce-scatter,
//! then all-gather: each node sends and receives `2 (n − 1) / n` of the buffer, whatever `n`).
//!
//! Why not burn-collective's global mode: in 0.21.0 it completes one all-reduce per
//! registration. Every strategy ends in `SyncService::sync`, which clears a copy of its list of
//! synced peers instead of the list (`src/global/node/sync.rs`), so the second all-reduce of a run
//! waits forever. Within a process, burn-collective's local mode still sums the devices.
//!
//! Every read and write has the run's timeout, and every message says which exchange it belongs
//! to and how long it is, so a peer that stops, hangs or sends something else is an error that
//! names it, never a wait without end.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::Nodes;

/// The first bytes of every connection: the protocol and its version.
const MAGIC: &[u8; 12] = b"SPEAR-RING/1";

/// Bytes received before they are added (the adding overlaps the rest of the transfer).
const PIECE: usize = 1 << 20;

/// This node's place in the ring: a connection to the next node and one from the previous.
#[derive(Debug)]
pub struct Ring {
    rank: usize,
    count: usize,
    next: TcpStream,
    prev: TcpStream,
    /// Where a piece from the previous node lands before it is added.
    scratch: Vec<f32>,
    /// Exchanges so far (each message carries its number).
    sequence: u64,
}

/// Why the ring failed.
pub type RingError = String;

impl Ring {
    /// Connects node `nodes.rank` into the ring of `nodes.count`: node 0 listens on the master
    /// port and tells every node where the others listen; each node then connects to the next.
    /// Waits at most `timeout` for the others.
    pub fn connect(nodes: &Nodes, timeout: Duration) -> Result<Self, RingError> {
        let deadline = Instant::now() + timeout;
        let data = TcpListener::bind(("0.0.0.0", nodes.data_port))
            .map_err(|e| format!("listening on the data port {}: {e} (pass --data-port)", nodes.data_port))?;
        let master = match nodes.rank {
            0 => Some(TcpListener::bind(("0.0.0.0", nodes.master_port)).map_err(|e| {
                format!("listening on the master port {}: {e} (pass --master-port)", nodes.master_port)
            })?),
            _ => None,
        };
        // Everyone, node 0 included, says where it listens; node 0 answers with the table.
        let hello = Hello {
            rank: nodes.rank,
            count: nodes.count,
            addr: nodes.node_addr.clone(),
            port: nodes.data_port,
        };
        let to_master = std::thread::scope(|scope| {
            let host = master
                .as_ref()
                .map(|listener| scope.spawn(|| host_rendezvous(listener, nodes.count, deadline)));
            let table = ask_rendezvous(&nodes.master_addr, nodes.master_port, &hello, deadline);
            if let Some(host) = host {
                host.join().map_err(|_| "the rendezvous host panicked".to_string())??;
            }
            table
        })?;
        let next_rank = (nodes.rank + 1) % nodes.count;
        let (addr, port) = &to_master[next_rank];
        // Connect to the next node while accepting the previous one (either may come first).
        let (next, prev) = std::thread::scope(|scope| {
            let accepting = scope.spawn(|| accept(&data, deadline));
            let next = connect_until(addr, *port, deadline)
                .map_err(|e| format!("node {next_rank} ({addr}:{port}): {e}"));
            let prev = accepting.join().map_err(|_| "accepting the previous node panicked".to_string())?;
            Ok::<_, RingError>((next?, prev?))
        })?;
        for stream in [&next, &prev] {
            stream.set_nodelay(true).ok();
            stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
            stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        }
        let mut ring = Self {
            rank: nodes.rank,
            count: nodes.count,
            next,
            prev,
            scratch: vec![0.0; PIECE / 4],
            sequence: 0,
        };
        // Each side says who it is, so that a stray connection is refused.
        ring.send_header(nodes.rank as u64)?;
        ring.next.flush().map_err(|e| ring.lost_next(e))?;
        let prev_rank = (nodes.rank + nodes.count - 1) % nodes.count;
        let said = ring.read_header()?;
        if said != prev_rank as u64 {
            return Err(format!("the previous node in the ring says it is node {said}, not {prev_rank}"));
        }
        Ok(ring)
    }

    /// `values` summed over the nodes, in place: every node gets the same sums. For two nodes
    /// each sum is `a + b`, exact and the same as one device adding them.
    pub fn all_reduce(&mut self, values: &mut [f32]) -> Result<(), RingError> {
        let n = self.count;
        self.sequence += 1;
        let (len, size) = (values.len(), values.len().div_ceil(n));
        let range = |c: usize| (c * size).min(len)..((c + 1) * size).min(len);
        // Reduce-scatter: after n − 1 steps node r holds the sum of chunk r + 1.
        for step in 0..n - 1 {
            let send = (self.rank + n - step) % n;
            let recv = (self.rank + n - step - 1) % n;
            let (s, r) = (range(send), range(recv));
            self.exchange(values, s, r, true)?;
        }
        // All-gather: pass the finished chunks round.
        for step in 0..n - 1 {
            let send = (self.rank + 1 + n - step) % n;
            let recv = (self.rank + n - step) % n;
            let (s, r) = (range(send), range(recv));
            self.exchange(values, s, r, false)?;
        }
        Ok(())
    }

    /// Sends `values[send]` to the next node while receiving the previous node's chunk for
    /// `values[recv]` (another chunk), added to it or replacing it, piece by piece as it comes.
    fn exchange(
        &mut self,
        values: &mut [f32],
        send: std::ops::Range<usize>,
        recv: std::ops::Range<usize>,
        add: bool,
    ) -> Result<(), RingError> {
        // The two chunks as disjoint slices.
        let (outgoing, incoming) = if send.start < recv.start {
            let (low, high) = values.split_at_mut(recv.start);
            (&low[send], &mut high[..recv.len()])
        } else {
            let (low, high) = values.split_at_mut(send.start);
            (&high[..send.len()], &mut low[recv])
        };
        let sequence = self.sequence;
        let Self { next, prev, rank, count, scratch, .. } = self;
        let (rank, count) = (*rank, *count);
        let (sent, received) = std::thread::scope(|scope| {
            let sending = scope.spawn(move || -> Result<(), std::io::Error> {
                let mut header = sequence.to_le_bytes().to_vec();
                header.extend((outgoing.len() as u64).to_le_bytes());
                next.write_all(&header)?;
                // Native byte order: every node of a run is the same kind of machine.
                next.write_all(bytemuck::cast_slice(outgoing))?;
                next.flush()
            });
            let received = (|| -> Result<(), RingError> {
                let lost = |e: std::io::Error| lost(rank, count, false, e);
                let mut header = [0u8; 16];
                prev.read_exact(&mut header).map_err(lost)?;
                let theirs = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
                let len = u64::from_le_bytes(header[8..].try_into().expect("8 bytes")) as usize;
                let from = (rank + count - 1) % count;
                if theirs != sequence || len != incoming.len() {
                    return Err(format!(
                        "node {from} sent exchange {theirs} of {len} values where this node is at exchange \
                         {sequence} of {}: the nodes train different things (config, code or parameters)",
                        incoming.len()
                    ));
                }
                if !add {
                    return prev.read_exact(bytemuck::cast_slice_mut(incoming)).map_err(lost);
                }
                for chunk in incoming.chunks_mut(PIECE / 4) {
                    let piece = &mut scratch[..chunk.len()];
                    prev.read_exact(bytemuck::cast_slice_mut(piece)).map_err(lost)?;
                    chunk.iter_mut().zip(piece.iter()).for_each(|(v, t)| *v += *t);
                }
                Ok(())
            })();
            (sending.join().expect("the sending thread does not panic"), received)
        });
        received?;
        sent.map_err(|e| lost(rank, count, true, e))
    }

    fn send_header(&mut self, value: u64) -> Result<(), RingError> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(value.to_le_bytes());
        self.next.write_all(&bytes).map_err(|e| self.lost_next(e))
    }

    fn read_header(&mut self) -> Result<u64, RingError> {
        let mut bytes = [0u8; 20];
        self.prev.read_exact(&mut bytes).map_err(|e| lost(self.rank, self.count, false, e))?;
        if &bytes[..12] != MAGIC {
            return Err(
                "the previous node does not speak spear's ring protocol (another program on the port?)"
                    .into(),
            );
        }
        Ok(u64::from_le_bytes(bytes[12..].try_into().expect("8 bytes")))
    }

    fn lost_next(&self, e: std::io::Error) -> RingError {
        lost(self.rank, self.count, true, e)
    }

    /// Closes both connections (the neighbours' reads end at once instead of at their timeout).
    pub fn close(&mut self) {
        let _ = self.next.flush();
        let _ = self.next.shutdown(Shutdown::Both);
        let _ = self.prev.shutdown(Shutdown::Both);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a failed read or write from a neighbour means.
fn lost(rank: usize, count: usize, next: bool, e: std::io::Error) -> RingError {
    let node = if next { (rank + 1) % count } else { (rank + count - 1) % count };
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("node {node} did not answer within the timeout (it hangs, or is far behind)")
        }
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => format!("node {node} closed its connection (it stopped or died)"),
        _ => format!("node {node}: {e}"),
    }
}

/// A node's answer to the rendezvous: where it listens.
struct Hello {
    rank: usize,
    count: usize,
    addr: String,
    port: u16,
}

impl Hello {
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend((self.rank as u32).to_le_bytes());
        bytes.extend((self.count as u32).to_le_bytes());
        bytes.extend(self.port.to_le_bytes());
        bytes.extend((self.addr.len() as u16).to_le_bytes());
        bytes.extend(self.addr.as_bytes());
        bytes
    }

    fn read(stream: &mut impl Read) -> Result<Self, RingError> {
        let mut head = [0u8; 24];
        stream.read_exact(&mut head).map_err(|e| format!("reading a node's hello: {e}"))?;
        if &head[..12] != MAGIC {
            return Err("something that is not a spear node connected to the master port".into());
        }
        let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes")) as usize;
        let port = u16::from_le_bytes([head[20], head[21]]);
        let len = u16::from_le_bytes([head[22], head[23]]) as usize;
        let mut addr = vec![0u8; len];
        stream.read_exact(&mut addr).map_err(|e| format!("reading a node's hello: {e}"))?;
        let addr = String::from_utf8(addr).map_err(|_| "a node's address is not UTF-8".to_string())?;
        Ok(Self { rank: word(12), count: word(16), addr, port })
    }
}

/// Node 0: collects every node's hello, checks them, and sends each the table of addresses.
fn host_rendezvous(listener: &TcpListener, count: usize, deadline: Instant) -> Result<(), RingError> {
    let mut streams: Vec<(TcpStream, Hello)> = Vec::new();
    while streams.len() < count {
        let mut stream = accept(listener, deadline)
            .map_err(|e| format!("{e}: {} of {count} nodes joined", streams.len()))?;
        let hello = Hello::read(&mut stream)?;
        if hello.count != count {
            return Err(format!(
                "node {} says the run has {} nodes, node 0 says {count}",
                hello.rank, hello.count
            ));
        }
        if hello.rank >= count || streams.iter().any(|(_, h)| h.rank == hello.rank) {
            return Err(format!("two nodes say they are node {} (check --node-rank)", hello.rank));
        }
        streams.push((stream, hello));
    }
    streams.sort_by_key(|(_, h)| h.rank);
    let mut table = Vec::new();
    for (_, h) in &streams {
        table.extend(h.port.to_le_bytes());
        table.extend((h.addr.len() as u16).to_le_bytes());
        table.extend(h.addr.as_bytes());
    }
    for (stream, _) in &mut streams {
        stream.write_all(&table).map_err(|e| format!("answering a node: {e}"))?;
    }
    Ok(())
}

/// Every node: says hello to node 0 and reads where each node listens.
fn ask_rendezvous(
    host: &str,
    port: u16,
    hello: &Hello,
    deadline: Instant,
) -> Result<Vec<(String, u16)>, RingError> {
    let mut stream =
        connect_until(host, port, deadline).map_err(|e| format!("node 0 ({host}:{port}): {e}"))?;
    stream.set_read_timeout(Some(remaining(deadline))).ok();
    stream.write_all(&hello.to_bytes()).map_err(|e| format!("node 0 ({host}:{port}): {e}"))?;
    let mut table = Vec::new();
    for _ in 0..hello.count {
        let mut head = [0u8; 4];
        stream.read_exact(&mut head).map_err(|e| format!("waiting for the other nodes to join: {e}"))?;
        let port = u16::from_le_bytes([head[0], head[1]]);
        let mut addr = vec![0u8; u16::from_le_bytes([head[2], head[3]]) as usize];
        stream.read_exact(&mut addr).map_err(|e| format!("reading the table of nodes: {e}"))?;
        table.push((String::from_utf8_lossy(&addr).into_owned(), port));
    }
    Ok(table)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

/// Connects to `host:port`, retrying until `deadline` (the other side may not listen yet).
fn connect_until(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    loop {
        let tried = (host, port).to_socket_addrs().map_err(|e| e.to_string()).and_then(|mut addrs| {
            let addr = addrs.next().ok_or_else(|| "no address".to_string())?;
            TcpStream::connect_timeout(&addr, remaining(deadline).min(Duration::from_secs(5)))
                .map_err(|e| e.to_string())
        });
        match tried {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("no connection within the timeout: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Accepts one connection on `listener` before `deadline`.
fn accept(listener: &TcpListener, deadline: Instant) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("no node connected within the timeout".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` nodes on 127.0.0.1, each running `body` on its ring in its own thread.
    fn nodes<T: Send>(count: usize, timeout: Duration, body: impl Fn(usize, Ring) -> T + Sync) -> Vec<T> {
        let port = super::super::free_ports(count + 1).unwrap();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..count)
                .map(|rank| {
                    let body = &body;
                    scope.spawn(move || {
                        let nodes = Nodes {
                            count,
                            rank,
                            master_addr: "127.0.0.1".into(),
                            master_port: port,
                            node_addr: "127.0.0.1".into(),
                            data_port: port + 1 + rank as u16,
                        };
                        body(rank, Ring::connect(&nodes, timeout).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn every_node_gets_the_sums_whatever_the_length() {
        for count in [2, 3] {
            // Lengths below, at and past the node count, split unevenly.
            let lengths = [1, 2, 3, 7, 1000];
            let sums = nodes(count, Duration::from_secs(20), |rank, mut ring| {
                lengths
                    .iter()
                    .map(|&len| {
                        let mut values: Vec<f32> = (0..len).map(|i| (i * 10 + rank) as f32).collect();
                        ring.all_reduce(&mut values).unwrap();
                        values
                    })
                    .collect::<Vec<_>>()
            });
            for (l, &len) in lengths.iter().enumerate() {
                let want: Vec<f32> =
                    (0..len).map(|i| (0..count).map(|r| (i * 10 + r) as f32).sum()).collect();
                for node in &sums {
                    assert_eq!(node[l], want, "{count} nodes, {len} values");
                }
            }
        }
    }

    #[test]
    fn a_stopped_or_silent_neighbour_and_a_different_tensor_are_named_errors() {
        // Node 1 leaves: node 0 hears it at once.
        let errors = nodes(2, Duration::from_secs(20), |rank, mut ring| match rank {
            0 => ring.all_reduce(&mut [1.0; 8]).unwrap_err(),
            _ => {
                ring.close();
                String::new()
            }
        });
        assert!(errors[0].contains("closed its connection"), "{}", errors[0]);
        // Node 1 stays but says nothing: node 0 gives up after the timeout.
        let started = Instant::now();
        let errors = nodes(2, Duration::from_millis(500), |rank, mut ring| match rank {
            0 => ring.all_reduce(&mut [1.0; 8]).unwrap_err(),
            _ => {
                std::thread::sleep(Duration::from_secs(2));
                String::new()
            }
        });
        assert!(errors[0].contains("did not answer within the timeout"), "{}", errors[0]);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Nodes summing tensors of different lengths say so instead of mixing them.
        let errors = nodes(2, Duration::from_secs(20), |rank, mut ring| {
            ring.all_reduce(&mut vec![1.0; 8 + rank * 2]).unwrap_err()
        });
        assert!(errors.iter().any(|e| e.contains("train different things")), "{errors:?}");
    }
}
