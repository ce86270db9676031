//! Records holding a payload: their JSON, then the envelope's bytes raw
//! ([`Capabilities::binary_payloads`](persistence_core::Capabilities::binary_payloads)).
//! A record without bytes is its JSON alone, as before bytes existed; a library from
//! before reads a record with bytes as damaged (`Corrupt`), never as something else.

use persistence_core::backend::{append_bytes, attach_bytes, split_bytes};
use persistence_core::{Envelope, Error, PendingWrite, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A stored record with one payload.
pub(crate) trait PayloadRecord: Serialize + DeserializeOwned {
    /// The record's payload.
    fn payload_mut(&mut self) -> &mut Envelope;
}

impl PayloadRecord for PendingWrite {
    fn payload_mut(&mut self) -> &mut Envelope {
        &mut self.value
    }
}

/// `record` as stored: its JSON without the payload's bytes, then the bytes.
///
/// # Errors
/// `InvalidInput` if the record does not serialize.
pub(crate) fn encode<R: PayloadRecord>(record: &mut R) -> Result<Vec<u8>> {
    let bytes = record.payload_mut().bytes.take();
    let json = serde_json::to_vec(record);
    record.payload_mut().bytes = bytes;
    let mut stored =
        json.map_err(|e| Error::invalid_input(format!("record does not serialize: {e}")))?;
    append_bytes(&mut stored, record.payload_mut().bytes.as_deref());
    Ok(stored)
}

/// A record [`encode`] stored (or one of plain JSON, from before bytes).
///
/// # Errors
/// What is wrong with it, for a `Corrupt` error naming the file.
pub(crate) fn decode<R: PayloadRecord>(stored: &[u8]) -> std::result::Result<R, String> {
    let (json, bytes) = split_bytes(stored);
    let mut record: R = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    attach_bytes(record.payload_mut(), bytes)?;
    Ok(record)
}
