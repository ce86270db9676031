//! Envelope bytes in a backend's own byte records: a record's JSON without them, then a
//! NUL byte and the bytes raw (JSON text never holds a raw NUL), so they cost their own
//! length instead of base64's four thirds.

use std::borrow::Borrow;

use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::checkpointer::PendingWrite;
use crate::envelope::Envelope;
use crate::error::{Error, Result};

/// A record a backend stores with one payload in it, for [`encode_record`] and
/// [`decode_record`].
pub trait PayloadRecord: Serialize + DeserializeOwned {
    /// The record's payload.
    fn payload_mut(&mut self) -> &mut Envelope;
}

impl PayloadRecord for PendingWrite {
    fn payload_mut(&mut self) -> &mut Envelope {
        &mut self.value
    }
}

impl PayloadRecord for Envelope {
    fn payload_mut(&mut self) -> &mut Envelope {
        self
    }
}

/// `record` as stored: its JSON without the payload's bytes, then (after a NUL byte)
/// the bytes raw. A record without bytes is its JSON alone.
///
/// # Errors
/// `InvalidInput` if the record does not serialize.
pub fn encode_record<R: PayloadRecord>(record: &mut R) -> Result<Vec<u8>> {
    let bytes = record.payload_mut().bytes.take();
    let json = serde_json::to_vec(record);
    record.payload_mut().bytes = bytes;
    let mut stored =
        json.map_err(|e| Error::invalid_input(format!("record does not serialize: {e}")))?;
    append_bytes(&mut stored, record.payload_mut().bytes.as_deref());
    Ok(stored)
}

/// An envelope as stored on its own: [`encode_record`] of an envelope, by reference.
///
/// # Errors
/// `InvalidInput` if it does not serialize.
pub fn encode_envelope(envelope: &Envelope) -> Result<Vec<u8>> {
    let mut stored = Vec::new();
    envelope_without_bytes(envelope, &mut serde_json::Serializer::new(&mut stored))
        .map_err(|e| Error::invalid_input(format!("payload does not serialize: {e}")))?;
    append_bytes(&mut stored, envelope.bytes.as_deref());
    Ok(stored)
}

/// A record [`encode_record`] stored, or one of plain JSON (bytes, if any, in base64).
///
/// # Errors
/// What is wrong with it, for the backend's `Corrupt` error naming the record.
pub fn decode_record<R: PayloadRecord>(stored: &[u8]) -> std::result::Result<R, String> {
    let (json, bytes) = split_bytes(stored);
    let mut record: R = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    attach_bytes(record.payload_mut(), bytes)?;
    Ok(record)
}

/// Serializes an envelope without its [`bytes`](Envelope::bytes), for
/// `#[serde(serialize_with = "...")]` on a record's envelope field: the bytes go after
/// the record's JSON with [`append_bytes`].
///
/// # Errors
/// Whatever `serializer` fails with.
pub fn envelope_without_bytes<S: Serializer, E: Borrow<Envelope>>(
    envelope: &E,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let envelope = envelope.borrow();
    let mut out = serializer.serialize_struct("Envelope", 2)?;
    out.serialize_field("schema_version", &envelope.schema_version)?;
    out.serialize_field("data", &envelope.data)?;
    out.end()
}

/// Appends `bytes` raw to a record's `json`, after a NUL byte; nothing for `None`.
pub fn append_bytes(json: &mut Vec<u8>, bytes: Option<&[u8]>) {
    if let Some(bytes) = bytes {
        json.reserve(1 + bytes.len());
        json.push(0);
        json.extend_from_slice(bytes);
    }
}

/// A stored record's JSON, and the bytes [`append_bytes`] put after it, if any.
pub fn split_bytes(stored: &[u8]) -> (&[u8], Option<&[u8]>) {
    match stored.iter().position(|&b| b == 0) {
        Some(at) => (&stored[..at], Some(&stored[at + 1..])),
        None => (stored, None),
    }
}

/// Puts the bytes found after a record's JSON back into its envelope.
///
/// # Errors
/// A message for a `Corrupt` error when the envelope has bytes in its JSON too (base64,
/// as a record written before could): a record holds them once.
pub fn attach_bytes(envelope: &mut Envelope, bytes: Option<&[u8]>) -> Result<(), String> {
    if let Some(bytes) = bytes {
        if envelope.bytes.is_some() {
            return Err("the record has bytes both in its JSON and after it".into());
        }
        envelope.bytes = Some(bytes.to_vec());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Record {
        n: u32,
        #[serde(serialize_with = "envelope_without_bytes")]
        value: Envelope,
    }

    #[test]
    fn records_keep_bytes_raw_and_plain_records_are_their_json() {
        let value = Envelope::new(2, json!({"a": "\u{0}"})).with_bytes(vec![0, 1, 0, 255]);
        let record = Record { n: 7, value };
        let mut stored = serde_json::to_vec(&record).unwrap();
        assert!(!stored.contains(&0), "escaped in JSON");
        append_bytes(&mut stored, record.value.bytes.as_deref());
        let (json, bytes) = split_bytes(&stored);
        let mut read: Record = serde_json::from_slice(json).unwrap();
        attach_bytes(&mut read.value, bytes).unwrap();
        assert_eq!((read.n, &read.value), (7, &record.value));

        let plain = Record {
            n: 1,
            value: Envelope::new(1, json!(1)),
        };
        let mut stored = serde_json::to_vec(&plain).unwrap();
        append_bytes(&mut stored, None);
        assert_eq!(split_bytes(&stored), (stored.as_slice(), None));

        let mut twice = Envelope::new(1, json!(1)).with_bytes(vec![1]);
        assert!(attach_bytes(&mut twice, Some(&[2])).is_err());
    }

    #[test]
    fn encoded_records_decode_and_keep_their_bytes() {
        let mut envelope = Envelope::new(1, json!({"k": 1})).with_bytes(vec![0, 255, 0]);
        let stored = encode_record(&mut envelope).unwrap();
        assert_eq!(
            envelope.bytes.as_deref(),
            Some(&[0, 255, 0][..]),
            "restored"
        );
        assert!(stored.ends_with(&[0, 0, 255, 0]));
        assert_eq!(decode_record::<Envelope>(&stored).unwrap(), envelope);
        assert_eq!(encode_envelope(&envelope).unwrap(), stored);
        let mut plain = Envelope::new(1, json!(1));
        let stored = encode_record(&mut plain).unwrap();
        assert_eq!(stored, serde_json::to_vec(&plain).unwrap());
        let base64 = serde_json::to_vec(&envelope).unwrap();
        assert_eq!(decode_record::<Envelope>(&base64).unwrap(), envelope);
        assert!(decode_record::<Envelope>(b"{\"schema_version\":1}\0x").is_err());
    }

    #[test]
    fn json_only_backends_refuse_bytes_naming_the_payload() {
        let plain = Envelope::new(1, json!(1));
        assert!(crate::backend::refuse_bytes("event", [&plain]).is_ok());
        let binary = plain.clone().with_bytes(vec![1]);
        let e = crate::backend::refuse_bytes("event", [&plain, &binary]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.message().starts_with("event:"), "{e}");
    }
}
