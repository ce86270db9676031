//! What the payload codec costs and saves: checkpoint puts of agent states of 1 KiB,
//! 64 KiB and 1 MiB stored as they are, compressed (zstd), encrypted (AES-256-GCM)
//! and both, on the same backend in the same run, then gets of the latest checkpoint
//! (opened): ops/s, p50, p99 and the bytes stored per payload (the stored envelope's
//! JSON, read back without the codec).
//!
//! The states are made to look like an agent's: a conversation of messages drawn from a
//! small vocabulary with tool calls and ids (seeded, the same every run), so they repeat
//! the way real agent state does. Everything is written under [`TENANT`] and deleted at
//! the end.

use std::sync::Arc;

use persistence_codec::{
    Codec, CodecConfig, EncryptionPolicy, KeyId, MasterKey, SealedCheckpointer, StaticKeyring,
};
use persistence_core::{
    Capabilities, CheckpointId, CheckpointSelector, Checkpointer, Envelope, NewCheckpoint, Result,
    TenantId, ThreadKey,
};
use serde_json::{Value, json};

use crate::measure::{Stats, measure_alternating};

/// The tenant the codec check writes under.
pub const TENANT: &str = "persistence-bench-codec";

/// The payload sizes measured, with the puts made of each (per codec).
pub const SIZES: [(&str, usize, usize); 3] = [
    ("1 KiB", 1 << 10, 2000),
    ("64 KiB", 64 << 10, 200),
    ("1 MiB", 1 << 20, 20),
];

/// What a backend stores for `envelope`: its data as JSON and its bytes, raw (the codec
/// puts bytes there only on a backend that declares `binary_payloads`).
fn stored_size(envelope: &Envelope) -> usize {
    envelope.data.to_string().len() + envelope.bytes.as_ref().map_or(0, Vec::len)
}

/// One measured (size, codec) pair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CodecRow {
    /// Payload size label.
    pub size: &'static str,
    /// `none`, `zstd`, `aead` or `zstd+aead`.
    pub codec: &'static str,
    /// The JSON of the state put, in bytes.
    pub payload_bytes: usize,
    /// What the backend stored for it (the envelope's data as JSON, and its bytes as
    /// they are on a backend with `binary_payloads`), in bytes.
    pub stored_bytes: usize,
    /// Throughput and latency of the puts.
    pub put: Stats,
    /// Throughput and latency of reading the latest checkpoint back (opened).
    pub get: Stats,
}

/// An agent-like state of about `bytes` bytes of JSON: messages from a small
/// vocabulary, tool calls with ids, seeded so every run stores the same.
pub fn agent_state(bytes: usize) -> Value {
    const WORDS: [&str; 24] = [
        "the", "user", "asked", "for", "weather", "in", "Lisbon", "tomorrow", "I", "will", "call",
        "the", "forecast", "tool", "with", "city", "and", "date", "result", "is", "sunny", "22",
        "degrees", "answer",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut messages = Vec::new();
    let mut size = 0;
    while size < bytes {
        let words: Vec<&str> = (0..rng.usize(8..40))
            .map(|_| WORDS[rng.usize(..WORDS.len())])
            .collect();
        let role = ["user", "assistant", "tool"][messages.len() % 3];
        let message = json!({
            "role": role,
            "content": words.join(" "),
            "tool_call_id": format!("call_{:016x}", rng.u64(..)),
            "tokens": rng.u32(10..500),
        });
        size += message.to_string().len() + 1;
        messages.push(message);
    }
    json!({"messages": messages, "step": messages.len(), "next": ["agent"]})
}

/// One codec measured: its name and the codec (`None`: payloads as they are).
struct Measured {
    name: &'static str,
    codec: Option<Arc<Codec>>,
}

/// The four codecs measured: none, zstd, AEAD, both (a fixed bench key), storing sealed
/// bytes raw where `capabilities` allow.
fn codecs(capabilities: &Capabilities) -> Result<Vec<Measured>> {
    let keys = StaticKeyring::new([(KeyId::new("bench")?, MasterKey::from_bytes([42; 32]))])?;
    let keys: Arc<dyn persistence_codec::KeyProvider> = Arc::new(keys);
    let aead = CodecConfig::default().with_encryption(keys.clone(), EncryptionPolicy::Required);
    let measured = |name, config: Option<CodecConfig>| Measured {
        name,
        codec: config.map(|config| Codec::for_backend(config, capabilities)),
    };
    Ok(vec![
        measured("none", None),
        measured("zstd", Some(CodecConfig::default().with_compression(256))),
        measured("aead", Some(aead.clone())),
        measured("zstd+aead", Some(aead.with_compression(256))),
    ])
}

/// Measures every size with every codec on `checkpointer` (a backend with
/// `capabilities`): puts, then gets of the latest checkpoint, by `tasks` concurrent
/// tasks (a failed put or get is printed to stderr and measured like the others).
///
/// # Errors
/// Whatever a put, the read back or the cleanup fails with.
pub async fn run(
    checkpointer: Arc<dyn Checkpointer>,
    capabilities: &Capabilities,
    tasks: usize,
) -> Result<Vec<CodecRow>> {
    let tenant = TenantId::new(TENANT)?;
    let mut rows = Vec::new();
    for (size, bytes, ops) in SIZES {
        let state = Envelope::new(1, agent_state(bytes));
        let payload_bytes = state.data.to_string().len();
        let measured = codecs(capabilities)?;
        let mut threads = Vec::with_capacity(measured.len());
        for Measured { name, .. } in &measured {
            let thread = ThreadKey::new(format!("codec-{name}-{bytes}"))?;
            checkpointer.delete_thread(&tenant, &thread).await?;
            threads.push(thread);
        }
        // The codecs take turns put by put, so drift of the machine or the server over
        // the run (noisy neighbours, a growing hash, a checkpoint of the database) lands
        // on all of them alike.
        let targets: Vec<Arc<dyn Checkpointer>> = measured
            .iter()
            .map(|Measured { codec, .. }| match codec {
                Some(codec) => {
                    Arc::new(SealedCheckpointer::new(checkpointer.clone(), codec.clone())) as _
                }
                None => checkpointer.clone(),
            })
            .collect();
        let names: Vec<String> = measured
            .iter()
            .map(|m| format!("put {size} {}", m.name))
            .collect();
        let (t, th, all) = (tenant.clone(), threads.clone(), targets.clone());
        let puts = measure_alternating(&names, ops, tasks, move |which, i| {
            let (target, t, th) = (all[which].clone(), t.clone(), th[which].clone());
            let st = state.clone();
            async move {
                let new = NewCheckpoint::new(CheckpointId::new(), i as i64, st);
                if let Err(e) = target.put(&t, &th, new, Default::default()).await {
                    eprintln!("codec bench put failed: {e}");
                }
            }
        })
        .await;
        let names: Vec<String> = measured
            .iter()
            .map(|m| format!("get {size} {}", m.name))
            .collect();
        let (t, th) = (tenant.clone(), threads.clone());
        let gets = measure_alternating(&names, ops, tasks, move |which, _| {
            let (target, t, th) = (targets[which].clone(), t.clone(), th[which].clone());
            async move {
                if let Err(e) = target.get(&t, &th, CheckpointSelector::Latest).await {
                    eprintln!("codec bench get failed: {e}");
                }
            }
        })
        .await;
        let measured = measured
            .iter()
            .zip(&threads)
            .zip(puts.into_iter().zip(gets));
        for ((Measured { name, .. }, thread), (put, get)) in measured {
            let stored = checkpointer
                .get(&tenant, thread, CheckpointSelector::Latest)
                .await?
                .map_or(0, |t| stored_size(&t.checkpoint.state));
            checkpointer.delete_thread(&tenant, thread).await?;
            rows.push(CodecRow {
                size,
                codec: name,
                payload_bytes,
                stored_bytes: stored,
                put,
                get,
            });
        }
    }
    Ok(rows)
}

/// Prints the rows, each with its put and get ops/s relative to `none` of its size and
/// how much smaller it is stored.
pub fn print(rows: &[CodecRow]) {
    println!();
    println!("payload codec (checkpoint put and get of an agent-like state):");
    println!(
        "{:<8} {:<10} {:>5} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>10} {:>7}",
        "size",
        "codec",
        "tasks",
        "put op/s",
        "p50 µs",
        "p99 µs",
        "vs none",
        "get op/s",
        "p50 µs",
        "vs none",
        "stored B",
        "shrink"
    );
    for row in rows {
        let none = rows
            .iter()
            .find(|r| r.size == row.size && r.codec == "none");
        let ratio = |of: fn(&CodecRow) -> &Stats| {
            let base = none.map_or(of(row).ops_per_sec, |n| of(n).ops_per_sec);
            of(row).ops_per_sec / base
        };
        let micros = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<8} {:<10} {:>5} {:>9.0} {:>9.1} {:>9.1} {:>7.2}x {:>9.0} {:>9.1} {:>7.2}x {:>10} {:>6.1}x",
            row.size,
            row.codec,
            row.put.tasks,
            row.put.ops_per_sec,
            micros(row.put.p50),
            micros(row.put.p99),
            ratio(|r| &r.put),
            row.get.ops_per_sec,
            micros(row.get.p50),
            ratio(|r| &r.get),
            row.stored_bytes,
            row.payload_bytes as f64 / row.stored_bytes.max(1) as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn states_repeat_like_agent_state_and_rows_cover_every_codec() {
        let state = agent_state(64 << 10);
        let text = state.to_string();
        assert!(
            text.len() >= 64 << 10 && text.len() < 70 << 10,
            "{}",
            text.len()
        );
        assert_eq!(agent_state(1024), agent_state(1024), "seeded");

        let backend = persistence_core::MemoryBackend::new();
        let capabilities = backend.capabilities();
        let rows = run(Arc::new(backend), &capabilities, 1).await.unwrap();
        assert_eq!(rows.len(), 12);
        for row in &rows {
            assert!(
                row.put.ops_per_sec > 0.0 && row.get.ops_per_sec > 0.0,
                "{row:?}"
            );
            assert_eq!(row.get.name, format!("get {} {}", row.size, row.codec));
        }
        let at = |rows: &[CodecRow], size: &str, codec: &str| {
            rows.iter()
                .find(|r| r.size == size && r.codec == codec)
                .unwrap()
                .stored_bytes
        };
        // zstd makes this state 4.4x smaller: at least 4x stored raw (the memory backend
        // declares `binary_payloads`), 3.3x as base64 in the JSON (a third bigger).
        assert!(
            at(&rows, "64 KiB", "none") >= 4 * at(&rows, "64 KiB", "zstd+aead"),
            "{rows:?}"
        );
        assert!(
            at(&rows, "1 KiB", "aead") > at(&rows, "1 KiB", "none"),
            "AEAD adds salt and tag"
        );

        // Where bytes are base64 in the JSON.
        let backend = persistence_core::MemoryBackend::new();
        let codec = codecs(&Capabilities::none()).unwrap().pop().unwrap();
        let sealed = SealedCheckpointer::new(Arc::new(backend.clone()), codec.codec.unwrap());
        let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
        let new = NewCheckpoint::new(CheckpointId::new(), 0, Envelope::new(1, state));
        sealed.put(&t, &th, new, Default::default()).await.unwrap();
        let stored = backend.get(&t, &th, CheckpointSelector::Latest).await;
        let stored = stored.unwrap().unwrap().checkpoint.state;
        assert!(stored.bytes.is_none());
        let (plain, sealed) = (text.len(), stored_size(&stored));
        assert!(
            plain >= 3 * sealed && plain < 4 * sealed,
            "{plain} {sealed}"
        );
    }
}
