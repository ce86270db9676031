//! Records holding a payload: their JSON, then the envelope's bytes raw
//! ([`Capabilities::binary_payloads`](persistence_core::Capabilities::binary_payloads)),
//! through `persistence_core::backend::{encode_record, decode_record}`. A record without
//! bytes is its JSON alone, as before bytes existed; a library from before reads a
//! record with bytes as damaged (`Corrupt`), never as something else.

pub(crate) use persistence_core::backend::{
    PayloadRecord, decode_record as decode, encode_record as encode,
};
