//! Envelope bytes are stored raw (`Capabilities::binary_payloads`): a checkpoint state,
//! a pending write, a store value and a session event with 48 KiB of bytes each are
//! values of about that size on the server, not base64's four thirds, and read back
//! whole.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use persistence_conformance::checks::binary::write_one_of_each_kind;

const LEN: usize = 48 << 10;

/// The length of every value on the server: strings, hash values, sorted-set members.
async fn value_sizes(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, usize)> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis::cmd("HVALS")
                .arg(&key)
                .query_async(conn)
                .await
                .unwrap(),
            "zset" => {
                let cmd = redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone();
                cmd.query_async(conn).await.unwrap()
            }
            "string" => vec![redis::cmd("GET").arg(&key).query_async(conn).await.unwrap()],
            _ => Vec::new(),
        };
        out.extend(values.into_iter().map(|v| (key.clone(), v.len())));
    }
    out
}

#[tokio::test]
async fn bytes_are_stored_raw_and_read_back() {
    let Some((_server, backend, mut conn)) = support::dedicated().await else {
        return;
    };
    write_one_of_each_kind(&backend, LEN).await.unwrap();
    let sizes = value_sizes(&mut conn).await;
    let holding: Vec<_> = sizes.iter().filter(|(_, len)| *len >= LEN).collect();
    assert_eq!(holding.len(), 4, "{sizes:?}");
    for (key, len) in holding {
        assert!(*len < LEN + 1024, "{key}: {len} bytes for {LEN}");
    }
    assert!(backend.capabilities().binary_payloads);
}
