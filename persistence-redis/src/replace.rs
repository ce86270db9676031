//! Replacing a stored payload in place, compared with what was read
//! (`Checkpointer::replace_payload`, `SessionLog::replace_event`): what re-encrypting
//! stored rows needs next to writers.
//!
//! The stored value is read and compared here (as JSON values: a stored text need not
//! be byte for byte what this code would write), then a script swaps it only while it
//! is still the text read (`hash_replace.lua`, `event_replace.lua`): a payload changed
//! or removed in between is not written. Two round trips; an operator's path.

use persistence_core::backend::{
    append_bytes, attach_bytes, decode_record, encode_record, split_bytes,
};
use persistence_core::{
    CheckpointPayload, Envelope, PendingWrite, Result, SessionKey, TenantId, ThreadKey,
};

use crate::error::{Effect, corrupt, map};
use crate::keys::encode;
use crate::session_log::split_event_member;
use crate::{RedisBackend, invocation, parse_u64, scripts};

/// A checkpoint's stored content: only its state is replaced; the rest is kept as
/// stored, field for field.
type Content = serde_json::Map<String, serde_json::Value>;

/// A checkpoint's stored content (its JSON, then its state's bytes) with the state
/// replaced by `new` if it is `expected`; `None` if it is not.
fn replaced_state(
    stored: &[u8],
    expected: &Envelope,
    new: Envelope,
) -> Result<Option<Vec<u8>>, String> {
    let (json, bytes) = split_bytes(stored);
    let mut content: Content = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let mut state: Envelope = content
        .get("state")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| e.to_string())?
        .ok_or("checkpoint without a state")?;
    attach_bytes(&mut state, bytes)?;
    if state != *expected {
        return Ok(None);
    }
    let mut new = new;
    let new_bytes = new.bytes.take();
    let new = serde_json::to_value(&new).map_err(|e| e.to_string())?;
    content.insert("state".into(), new);
    let mut out = serde_json::to_vec(&content).map_err(|e| e.to_string())?;
    append_bytes(&mut out, new_bytes.as_deref());
    Ok(Some(out))
}

impl RedisBackend {
    pub(crate) async fn replace_checkpoint_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        const OP: &str = "checkpoint.replace_payload";
        let key = format!("{tenant}/{thread}");
        let k = self.keys.thread(tenant, thread);
        let (hash, field) = match payload {
            CheckpointPayload::State(id) => (k.content(), id.to_string()),
            CheckpointPayload::Write {
                checkpoint,
                task,
                index,
            } => (
                format!("{}{checkpoint}", k.writes_prefix()),
                format!("{}|{index}", encode(task.as_str())),
            ),
            _ => return Ok(false),
        };
        let stored: Option<Vec<u8>> = self
            .read(OP, &key, || {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(&hash).arg(&field);
                self.query(cmd)
            })
            .await?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let replacement = match payload {
            CheckpointPayload::State(_) => {
                match replaced_state(&stored, expected, new).map_err(|e| corrupt(e, OP, &key))? {
                    Some(replacement) => replacement,
                    None => return Ok(false),
                }
            }
            _ => {
                let mut write: PendingWrite =
                    decode_record(&stored).map_err(|e| corrupt(e, OP, &key))?;
                if write.value != *expected {
                    return Ok(false);
                }
                write.value = new;
                encode_record(&mut write)?
            }
        };
        let replaced: u64 = self
            .invoke(invocation!(
                scripts::HASH_REPLACE,
                [hash],
                [field, stored, replacement]
            ))
            .await
            .map_err(|e| map(e, Effect::Write, OP, &key))?;
        if replaced == 1 {
            self.confirm_write(OP, &key).await?;
        }
        Ok(replaced == 1)
    }

    pub(crate) async fn replace_session_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        const OP: &str = "session.replace_event";
        let key = format!("{tenant}/{session}");
        let events_key = self.keys.session(tenant, session).events();
        let members: Vec<Vec<u8>> = self
            .read(OP, &key, || {
                let mut cmd = redis::cmd("ZRANGEBYSCORE");
                cmd.arg(&events_key).arg(seq).arg(seq);
                self.query(cmd)
            })
            .await?;
        let Some(stored) = members.into_iter().next() else {
            return Ok(false);
        };
        let Some((ordinal, at, record)) = split_event_member(&stored) else {
            return Err(corrupt("event member without ordinal", OP, &key));
        };
        if parse_u64(ordinal, OP, &key)? != seq {
            return Ok(false);
        }
        let event: Envelope = decode_record(record).map_err(|e| corrupt(e, OP, &key))?;
        if event != *expected {
            return Ok(false);
        }
        let mut new = new;
        let mut replacement = format!("{ordinal}|{at}|").into_bytes();
        replacement.extend_from_slice(&encode_record(&mut new)?);
        let replaced: u64 = self
            .invoke(invocation!(
                scripts::EVENT_REPLACE,
                [events_key],
                [seq.to_string(), stored, replacement]
            ))
            .await
            .map_err(|e| map(e, Effect::Write, OP, &key))?;
        if replaced == 1 {
            self.confirm_write(OP, &key).await?;
        }
        Ok(replaced == 1)
    }
}
