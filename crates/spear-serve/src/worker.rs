//! The model's one thread: every connection queues its observation here, and the requests waiting
//! together are sampled as one batch (up to `max_batch`), so that the network runs once for them.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use burn::prelude::*;
use spear_policy::{Policy, RawObservation};
use tokio::sync::oneshot;

/// A chunk for one observation, or why it could not be made.
pub type Reply = Result<Answer, String>;

/// One observation's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `horizon` actions, each in the policy's output units.
    pub chunk: Vec<Vec<f32>>,
    /// Milliseconds the batch it was sampled in took.
    pub infer_ms: f64,
}

struct Job {
    observation: RawObservation,
    reply: oneshot::Sender<Reply>,
}

/// Where connections queue their observations; cloned into each connection.
#[derive(Clone)]
pub struct Worker {
    jobs: Sender<Job>,
}

impl Worker {
    /// Moves `policy` to its own thread, which samples batches of at most `max_batch` observations.
    pub fn spawn<B: Backend>(policy: Policy<B>, max_batch: usize) -> Self
    where
        Policy<B>: Send + 'static,
    {
        let (jobs, queue) = channel::<Job>();
        std::thread::Builder::new()
            .name("spear-serve-model".into())
            .spawn(move || run(policy, queue, max_batch.max(1)))
            .expect("spawn the model thread");
        Self { jobs }
    }

    /// Queues `observation` and waits for its chunk.
    pub async fn act(&self, observation: RawObservation) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { observation, reply }).map_err(|_| "the model thread has stopped".to_string())?;
        answer.await.map_err(|_| "the model thread has stopped".to_string())?
    }
}

fn run<B: Backend>(mut policy: Policy<B>, queue: Receiver<Job>, max_batch: usize) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // A client that went away while waiting needs no chunk.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let (observations, replies): (Vec<RawObservation>, Vec<_>) =
            jobs.into_iter().map(|j| (j.observation, j.reply)).unzip();
        let started = Instant::now();
        match policy.act(&observations) {
            Ok(chunks) => {
                let infer_ms = started.elapsed().as_secs_f64() * 1e3;
                for (reply, chunk) in replies.into_iter().zip(chunks) {
                    let _ = reply.send(Ok(Answer { chunk, infer_ms }));
                }
            }
            // One observation the pipeline refuses must not fail the others: each runs alone.
            Err(_) if observations.len() > 1 => {
                for (observation, reply) in observations.iter().zip(replies) {
                    let started = Instant::now();
                    let answer = policy
                        .act(std::slice::from_ref(observation))
                        .map(|mut chunks| Answer {
                            chunk: chunks.remove(0),
                            infer_ms: started.elapsed().as_secs_f64() * 1e3,
                        })
                        .map_err(|e| short(&e.to_string()));
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let _ = replies.into_iter().next().expect("one job").send(Err(short(&e.to_string())));
            }
        }
    }
}

/// The pipeline's message without the batch index it adds ("observation 0: …").
fn short(message: &str) -> String {
    message.strip_prefix("observation 0: ").unwrap_or(message).to_string()
}
