//! [`rekey`]: re-encrypting a tenant's stored payloads under the writer's key, next to
//! live writers, so an old key can be retired.

use async_trait::async_trait;
use persistence_core::{
    CheckpointPayload, Error, ErrorKind, PutItemOptions, Result, TenantId, Timestamp,
};

use crate::walk::{Found, Place, Stored, Visitor, walk};
use crate::{Codec, KeyId, sealed_key};

/// How many times a store item a writer changed meanwhile is read and tried again.
const ITEM_ATTEMPTS: u32 = 8;

/// Options of [`rekey`].
///
/// ```
/// use persistence_codec::RekeyOptions;
///
/// let options = RekeyOptions::default().with_batch(500).with_limit(10_000);
/// assert_eq!((options.batch, options.limit), (500, Some(10_000)));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RekeyOptions {
    /// Payloads listed, and rewritten, per batch (and per progress report). Default 100.
    pub batch: usize,
    /// Stop once this many payloads were rewritten (a bounded run; run again to go on).
    /// Default: no limit.
    pub limit: Option<u64>,
}

impl Default for RekeyOptions {
    fn default() -> Self {
        RekeyOptions {
            batch: 100,
            limit: None,
        }
    }
}

impl RekeyOptions {
    /// Same, `batch` payloads at a time (1 to 10 000).
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    /// Same, stopping after `limit` rewrites.
    #[must_use]
    pub fn with_limit(mut self, limit: impl Into<Option<u64>>) -> Self {
        self.limit = limit.into();
        self
    }
}

/// What a [`rekey`] did, so far (as its progress reports) or in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RekeyReport {
    /// The key payloads are now written under.
    pub key: String,
    /// Payloads read.
    pub examined: u64,
    /// Payloads rewritten under `key`.
    pub rewritten: u64,
    /// Payloads left as they were because a writer changed or removed them between the
    /// read and the rewrite: what replaced them was written by the writer (under
    /// `key`, through the codec), and what was removed needs nothing.
    pub changed_meanwhile: u64,
    /// Whether the walk reached the end (`false`: it stopped at [`RekeyOptions::limit`]).
    pub complete: bool,
}

/// Re-encrypts every payload of `tenant` that is not under the writer's key (sealed
/// under an older key, or not encrypted at all) with the writer's key, reading and
/// writing `stored`, the backend's own traits below the codec.
///
/// - **Bounded batches.** Payloads are listed and rewritten [`RekeyOptions::batch`] at a
///   time; `progress` is called after each batch with the counts so far.
/// - **Resumable.** A payload already under the writer's key is skipped, so a run that
///   stopped (killed, failed, or at [`RekeyOptions::limit`]) is finished by running it
///   again; nothing records where it stopped.
/// - **Safe next to writers.** Checkpoint states, pending writes and events are
///   replaced only while they are still the payload read
///   ([`Checkpointer::replace_payload`](persistence_core::Checkpointer::replace_payload),
///   [`SessionLog::replace_event`](persistence_core::SessionLog::replace_event)); a store
///   item is put with `if_version` of the version read, sealed for the next version
///   (its version goes up by one and its `updated_at` moves; its expiry stays, and the
///   TTL a later refresh restarts becomes the time that was left). A concurrent write
///   is never overwritten: the rekey reads the item again and retries, or counts it in
///   [`RekeyReport::changed_meanwhile`].
///
/// Payloads written meanwhile through the codec are under the writer's key already.
/// When the walk is complete and no key was added meanwhile,
/// [`key_usage`](crate::key_usage) counts nothing under other keys (except payloads
/// written meanwhile by a process that still had the old writer key), and the old key
/// can leave the keyring.
///
/// # Errors
/// `InvalidInput` when `codec` does not encrypt or for a batch outside 1..=10 000;
/// `Unsupported` on a backend without
/// [`Capabilities::replace`](persistence_core::Capabilities::replace); `Corrupt` for a
/// payload that does not open (it is left as it is, and the run stops there); whatever
/// a listing, read or write fails with. What was rewritten before an error stays
/// rewritten.
pub async fn rekey(
    stored: Stored<'_>,
    codec: &Codec,
    tenant: &TenantId,
    options: RekeyOptions,
    progress: &mut (dyn FnMut(&RekeyReport) + Send),
) -> Result<RekeyReport> {
    let Some(key) = codec.writer_key().await? else {
        return Err(Error::invalid_input(
            "rekey: the codec does not encrypt (configure a key provider)",
        ));
    };
    if !(1..=10_000).contains(&options.batch) {
        return Err(Error::invalid_input(format!(
            "rekey: batch {} is outside 1..=10000",
            options.batch
        )));
    }
    let mut run = Rekey {
        report: RekeyReport {
            key: key.as_str().to_string(),
            ..RekeyReport::default()
        },
        rewriter: Rewriter {
            stored,
            codec,
            tenant,
            key,
        },
        limit: options.limit,
        progress,
    };
    let complete = walk(stored, tenant, options.batch, &mut run).await?;
    run.report.complete = complete;
    Ok(run.report)
}

/// One run of [`rekey`]: the walk's visitor.
struct Rekey<'a> {
    rewriter: Rewriter<'a>,
    limit: Option<u64>,
    report: RekeyReport,
    progress: &'a mut (dyn FnMut(&RekeyReport) + Send),
}

/// What rewrites a payload.
struct Rewriter<'a> {
    stored: Stored<'a>,
    codec: &'a Codec,
    tenant: &'a TenantId,
    key: KeyId,
}

#[async_trait]
impl Visitor for Rekey<'_> {
    async fn visit(&mut self, batch: Vec<Found>) -> Result<bool> {
        for found in batch {
            if self.limit.is_some_and(|l| self.report.rewritten >= l) {
                (self.progress)(&self.report);
                return Ok(false);
            }
            self.report.examined += 1;
            if sealed_key(&found.payload) == Some(self.rewriter.key.as_str()) {
                continue;
            }
            if self.rewriter.rewrite(found).await? {
                self.report.rewritten += 1;
            } else {
                self.report.changed_meanwhile += 1;
            }
        }
        (self.progress)(&self.report);
        Ok(true)
    }
}

impl Rewriter<'_> {
    /// Rewrites one payload under the writer's key; `false` when a writer changed or
    /// removed it first.
    async fn rewrite(&self, found: Found) -> Result<bool> {
        let Found { place, payload } = found;
        let (codec, tenant) = (self.codec, self.tenant);
        let opened = codec
            .open_with(tenant, place.row(), payload.clone(), false)
            .await?;
        let sealed = || codec.seal(tenant, place.row(), &opened);
        match &place {
            Place::Checkpoint { thread, id } => {
                let slot = CheckpointPayload::State(*id);
                let new = sealed().await?;
                self.stored
                    .checkpointer
                    .replace_payload(tenant, thread, &slot, &payload, new)
                    .await
            }
            Place::Write {
                thread,
                checkpoint,
                task,
                index,
            } => {
                let slot = CheckpointPayload::Write {
                    checkpoint: *checkpoint,
                    task: task.clone(),
                    index: *index,
                };
                let new = sealed().await?;
                self.stored
                    .checkpointer
                    .replace_payload(tenant, thread, &slot, &payload, new)
                    .await
            }
            Place::Event { session, seq } => {
                let new = sealed().await?;
                self.stored
                    .sessions
                    .replace_event(tenant, session, *seq, &payload, new)
                    .await
            }
            Place::Item { .. } => self.rewrite_item(place, opened).await,
        }
    }

    /// Puts the item's value sealed for its next version, with `if_version` of the
    /// version read; when a writer got there first, reads it again and retries while it
    /// is not under the writer's key.
    async fn rewrite_item(&self, place: Place, opened: persistence_core::Envelope) -> Result<bool> {
        let (codec, tenant, store) = (self.codec, self.tenant, self.stored.store);
        let (mut place, mut opened) = (place, opened);
        for _ in 0..ITEM_ATTEMPTS {
            let Place::Item {
                namespace,
                key,
                version,
                expires_at,
            } = &place
            else {
                return Ok(false);
            };
            let ttl = match expires_at {
                None => None,
                Some(at) => match at.0.checked_sub(Timestamp::now().0) {
                    Some(left) if left > 0 => Some(std::time::Duration::from_millis(left)),
                    // Expired: nothing to keep.
                    _ => return Ok(false),
                },
            };
            let next = Place::Item {
                namespace: namespace.clone(),
                key: key.clone(),
                version: version + 1,
                expires_at: *expires_at,
            };
            let new = codec.seal(tenant, next.row(), &opened).await?;
            let options = PutItemOptions::default()
                .with_if_version(*version)
                .with_ttl(ttl);
            match store.put(tenant, namespace, key, new, options).await {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
            let Some(item) = store.get(tenant, namespace, key).await? else {
                return Ok(false);
            };
            if sealed_key(&item.value) == Some(self.key.as_str()) {
                return Ok(false);
            }
            place = Place::Item {
                namespace: item.namespace,
                key: item.key,
                version: item.version,
                expires_at: item.expires_at,
            };
            opened = codec
                .open_with(tenant, place.row(), item.value, false)
                .await?;
        }
        Err(Error::conflict(format!(
            "rekey: {} changed on each of {ITEM_ATTEMPTS} attempts",
            place.row()
        )))
    }
}
