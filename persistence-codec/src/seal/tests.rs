//! Unit tests of sealing and opening: round trips, the salt and format, compressed frames.

use super::*;
use crate::SealedStore;
use persistence_core::{ItemKey, MemoryBackend, Namespace, PutItemOptions, Store};

/// Whatever a put accepts, a get returns: a plain value shaped like a sealed one is
/// escaped (never taken for sealed), a large one compressed, a small one kept as is.
#[tokio::test]
async fn every_value_round_trips_and_lookalikes_are_escaped() {
    let backend = MemoryBackend::new();
    let inner: Arc<dyn Store> = Arc::new(backend.clone());
    let codec = Codec::new(CodecConfig::default().with_compression(512));
    let sealed = SealedStore::new(inner.clone(), codec);
    let t = TenantId::new("t").unwrap();
    let ns = Namespace::new(["n"]).unwrap();
    let cases = [
        (
            "lookalike",
            json!({"$sealed": {"v": 1, "c": "AAAA", "z": 1}}),
        ),
        ("small", json!({"a": 1})),
        ("large", json!({"text": "agent ".repeat(200)})),
        ("scalar", json!("$sealed")),
        ("two-keys", json!({"$sealed": 1, "other": 2})),
    ];
    for (key, value) in cases {
        let key = ItemKey::new(key).unwrap();
        let envelope = Envelope::new(2, value.clone());
        sealed
            .put(&t, &ns, &key, envelope.clone(), PutItemOptions::default())
            .await
            .unwrap();
        let got = sealed.get(&t, &ns, &key).await.unwrap().unwrap();
        assert_eq!(got.value, envelope, "{key}");
        let raw = inner.get(&t, &ns, &key).await.unwrap().unwrap().value.data;
        match key.as_str() {
            "lookalike" => assert_eq!(raw["$sealed"]["p"], value, "escaped"),
            "large" => assert_eq!(raw["$sealed"]["z"], 1, "compressed"),
            _ => assert_eq!(raw, value, "kept as is"),
        }
    }
}

/// Both halves of a sealing's salt are bound: the first names the write key, the
/// second is the nonce; changing a byte of either fails `Corrupt`. Another format
/// number is refused, never opened with another cipher. Each tampered row is put
/// back untouched afterwards and opens again: the failures come from the tampering.
#[tokio::test]
async fn the_salt_is_bound_and_other_formats_are_refused() {
    use crate::{EncryptionPolicy, KeyId, MasterKey, SealedCheckpointer, StaticKeyring};
    use persistence_core::{
        CheckpointId, CheckpointPayload, CheckpointSelector, Checkpointer, ErrorKind,
        NewCheckpoint, ThreadKey,
    };

    let inner: Arc<dyn Checkpointer> = Arc::new(MemoryBackend::new());
    let keys =
        StaticKeyring::new([(KeyId::new("k").unwrap(), MasterKey::from_bytes([1; 32]))]).unwrap();
    let config = CodecConfig::default().with_encryption(Arc::new(keys), EncryptionPolicy::Required);
    let sealed = SealedCheckpointer::new(inner.clone(), Codec::new(config));
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let state = Envelope::new(1, json!({"note": "the user likes tea"}));
    let id = CheckpointId::new();
    let new = NewCheckpoint::new(id, 0, state.clone());
    sealed.put(&t, &th, new, Default::default()).await.unwrap();
    let stored = inner
        .get(&t, &th, CheckpointSelector::Latest)
        .await
        .unwrap()
        .unwrap()
        .checkpoint
        .state;
    assert_eq!(stored.data["$sealed"]["v"], json!(FORMAT));
    let salt = BASE64
        .decode(stored.data["$sealed"]["n"].as_str().unwrap())
        .unwrap();
    assert_eq!(salt.len(), 24);
    let payload = CheckpointPayload::State(id);
    for (what, flip) in [
        ("key half", Some(3)),
        ("nonce half", Some(17)),
        ("format 1", None),
    ] {
        let mut tampered = stored.clone();
        match flip {
            Some(at) => {
                let mut changed = salt.clone();
                changed[at] ^= 1;
                tampered.data["$sealed"]["n"] = json!(BASE64.encode(changed));
            }
            None => tampered.data["$sealed"]["v"] = json!(1),
        }
        for (from, to) in [(&stored, &tampered), (&tampered, &stored)] {
            let swapped = inner.replace_payload(&t, &th, &payload, from, to.clone());
            assert!(swapped.await.unwrap(), "{what}");
            let read = sealed.get(&t, &th, CheckpointSelector::Latest).await;
            match read {
                Ok(got) if to == &stored => {
                    assert_eq!(got.unwrap().checkpoint.state, state, "{what}");
                }
                Err(e) if to == &tampered => {
                    assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}");
                }
                other => panic!("{what}: {:?}", other.map(|_| ())),
            }
        }
    }
}

/// Compressed payloads open through this thread's context whatever their frame:
/// one declaring its size (as `compress` writes), one streamed without it; a frame
/// claiming more than `MAX_DECOMPRESSED`, a truncated one and one that is no zstd at
/// all fail `Corrupt` (and the first allocates nothing near what it claims).
#[tokio::test]
async fn compressed_frames_open_or_fail_corrupt() {
    use crate::SealedCheckpointer;
    use persistence_core::{
        CheckpointId, CheckpointPayload, CheckpointSelector, Checkpointer, ErrorKind,
        NewCheckpoint, ThreadKey,
    };

    let inner: Arc<dyn Checkpointer> = Arc::new(MemoryBackend::new());
    let codec = Codec::new(CodecConfig::default().with_compression(64));
    let sealed = SealedCheckpointer::new(inner.clone(), codec);
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let state = Envelope::new(1, json!({"text": "agent ".repeat(100)}));
    let id = CheckpointId::new();
    let new = NewCheckpoint::new(id, 0, state.clone());
    sealed.put(&t, &th, new, Default::default()).await.unwrap();
    let latest = CheckpointSelector::Latest;
    let stored = inner.get(&t, &th, latest).await.unwrap().unwrap();
    let stored = stored.checkpoint.state;
    let frame = BASE64
        .decode(stored.data["$sealed"]["c"].as_str().unwrap())
        .unwrap();
    let plain = serde_json::to_vec(&state.data).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&frame).ok(),
        Some(Some(plain.len() as u64)),
        "compress declares the size"
    );
    let streamed = zstd::stream::encode_all(plain.as_slice(), 3).unwrap();
    let size = zstd::zstd_safe::get_frame_content_size(&streamed).ok();
    assert_eq!(size, Some(None), "streamed without a size");
    // Magic number, a single-segment header with an 8-byte content size of 2 GiB,
    // then one empty last raw block.
    let mut claims_2_gib = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
    claims_2_gib.extend_from_slice(&(2u64 << 30).to_le_bytes());
    claims_2_gib.extend_from_slice(&[1, 0, 0]);
    let cases = [
        ("streamed", streamed, true),
        ("claims 2 GiB", claims_2_gib, false),
        ("truncated", frame[..frame.len() - 4].to_vec(), false),
        ("not zstd", b"not a zstd frame".to_vec(), false),
        ("declared", frame, true),
    ];
    let payload = CheckpointPayload::State(id);
    let mut current = stored.clone();
    for (what, bytes, opens) in cases {
        let mut next = stored.clone();
        next.data["$sealed"]["c"] = json!(BASE64.encode(bytes));
        let swapped = inner.replace_payload(&t, &th, &payload, &current, next.clone());
        assert!(swapped.await.unwrap(), "{what}");
        current = next;
        match sealed.get(&t, &th, latest).await {
            Ok(got) if opens => assert_eq!(got.unwrap().checkpoint.state, state, "{what}"),
            Err(e) if !opens => assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}"),
            other => panic!("{what}: {:?}", other.map(|_| ())),
        }
    }
}

/// On a backend with `binary_payloads` the salt and ciphertext are stored raw in the
/// envelope's bytes; either form opens with either codec, and a flipped, truncated,
/// missing or doubled byte string fails `Corrupt`. Bytes given to the codec are refused.
#[tokio::test]
async fn raw_bytes_open_and_tampering_fails_corrupt() {
    use crate::{EncryptionPolicy, KeyId, MasterKey, StaticKeyring};
    use persistence_core::{CheckpointId, ErrorKind, ThreadKey};

    let keys =
        StaticKeyring::new([(KeyId::new("k").unwrap(), MasterKey::from_bytes([2; 32]))]).unwrap();
    let config = CodecConfig::default()
        .with_compression(64)
        .with_encryption(Arc::new(keys), EncryptionPolicy::Required);
    let binary = Capabilities::none().with_binary_payloads(true);
    let raw_codec = Codec::for_backend(config.clone(), &binary);
    let base64_codec = Codec::for_backend(config, &Capabilities::none());
    let (t, th, id) = (
        TenantId::new("t").unwrap(),
        ThreadKey::new("th").unwrap(),
        CheckpointId::new(),
    );
    let row = || Row::Checkpoint { thread: &th, id };
    let state = Envelope::new(1, json!({"text": "agent ".repeat(100)}));

    let raw = raw_codec.seal(&t, row(), &state).await.unwrap();
    let header = &raw.data[MARKER];
    assert!(
        header.get("c").is_none() && header.get("n").is_none(),
        "{raw:?}"
    );
    assert_eq!(
        (header["k"].as_str(), header["z"].as_u64()),
        (Some("k"), Some(1))
    );
    let base64 = base64_codec.seal(&t, row(), &state).await.unwrap();
    assert!(base64.bytes.is_none() && base64.data[MARKER]["c"].is_string());
    for codec in [&raw_codec, &base64_codec] {
        for stored in [&raw, &base64] {
            let opened = codec.open(&t, row(), stored.clone()).await.unwrap();
            assert_eq!(opened, state);
        }
    }

    let bytes = raw.bytes.clone().unwrap();
    let with = |bytes: Option<Vec<u8>>| {
        let mut envelope = Envelope::new(raw.schema_version, raw.data.clone());
        envelope.bytes = bytes;
        envelope
    };
    let flip = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 1;
        with(Some(b))
    };
    let mut doubled = with(Some(bytes.clone()));
    doubled.data[MARKER]["c"] = base64.data[MARKER]["c"].clone();
    let cases = [
        ("a salt byte flipped", flip(0)),
        ("a nonce byte flipped", flip(23)),
        ("a ciphertext byte flipped", flip(bytes.len() - 1)),
        (
            "truncated inside the salt",
            with(Some(bytes[..10].to_vec())),
        ),
        (
            "truncated ciphertext",
            with(Some(bytes[..bytes.len() - 1].to_vec())),
        ),
        ("bytes missing", with(None)),
        ("raw and base64 both", doubled),
    ];
    for (what, stored) in cases {
        let err = raw_codec.open(&t, row(), stored).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
    }

    let given = state.clone().with_bytes(vec![1, 2, 3]);
    let err = raw_codec.seal(&t, row(), &given).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// Compressed, not encrypted, on a backend with `binary_payloads`: the zstd frame is
/// the envelope's bytes.
#[tokio::test]
async fn compressed_only_payloads_are_stored_raw() {
    use persistence_core::{CheckpointId, ThreadKey};

    let binary = Capabilities::none().with_binary_payloads(true);
    let codec = Codec::for_backend(CodecConfig::default().with_compression(64), &binary);
    let (t, th, id) = (
        TenantId::new("t").unwrap(),
        ThreadKey::new("th").unwrap(),
        CheckpointId::new(),
    );
    let state = Envelope::new(1, json!({"text": "agent ".repeat(100)}));
    let row = || Row::Checkpoint { thread: &th, id };
    let stored = codec.seal(&t, row(), &state).await.unwrap();
    let frame = stored.bytes.clone().unwrap();
    assert_eq!(&frame[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
    assert!(stored.data[MARKER].get("k").is_none());
    assert_eq!(codec.open(&t, row(), stored).await.unwrap(), state);
}
