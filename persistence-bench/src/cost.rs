//! What an operation costs the storage below it, read from the storage's own counters:
//! the disk's flush requests, Postgres WAL syncs, Redis server CPU. Printed beside
//! ops/s so a row says what bounds it.

use std::path::{Path, PathBuf};

/// One row's cost per operation from a storage counter.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cost {
    /// The counter's delta over the row, divided by the row's operations.
    pub per_op: f64,
    /// What is counted, e.g. `device flushes`, `WAL syncs`, `server CPU µs`.
    pub unit: String,
    /// Where the figure comes from and any breakdown (per-command calls and
    /// `usec_per_call`, say); empty when there is nothing more to say.
    pub detail: String,
}

impl Cost {
    /// A cost of `delta` counted over `ops` operations.
    pub fn per_op(delta: f64, ops: usize, unit: &str, detail: String) -> Cost {
        Cost {
            per_op: delta / ops.max(1) as f64,
            unit: unit.to_string(),
            detail,
        }
    }

    /// The short form printed in the table's cost column: `1.02 device flushes`.
    pub fn short(&self) -> String {
        format!("{:.2} {}", self.per_op, self.unit)
    }
}

/// Flush requests completed by the disk holding a directory: field 16 of
/// `/sys/dev/block/MAJOR:MINOR/stat` (Linux 5.5+). A flush is what an `fsync` or
/// `fdatasync` costs the device; ext4 may commit several syncs in one.
#[derive(Debug, Clone)]
pub struct DeviceFlushes {
    stat: Option<PathBuf>,
}

impl DeviceFlushes {
    /// The counter of the disk holding `dir`; it counts nothing where the directory is
    /// on no block device (tmpfs, overlay, another OS).
    pub fn of(dir: &Path) -> Self {
        #[cfg(unix)]
        let stat = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(dir).ok().map(|m| {
                let dev = m.dev();
                // The kernel's device number encoding (glibc `gnu_dev_major`/`minor`).
                let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
                let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
                PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"))
            })
        };
        #[cfg(not(unix))]
        let stat = {
            let _ = dir;
            None
        };
        DeviceFlushes { stat }
    }

    /// Flushes completed so far, `None` where the disk has no such counter.
    pub fn count(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.stat.as_ref()?).ok()?;
        text.split_whitespace().nth(15)?.parse().ok()
    }

    /// The flushes between `before` (a [`Self::count`]) and now, per operation.
    pub fn since(&self, before: Option<u64>, ops: usize) -> Option<Cost> {
        let (before, after) = (before?, self.count()?);
        let detail = self
            .stat
            .as_ref()
            .map_or(String::new(), |p| format!("field 16 of {}", p.display()));
        Some(Cost::per_op(
            after.saturating_sub(before) as f64,
            ops,
            "device flushes",
            detail,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Real fdatasyncs of a file show in the counter (where the directory is on a block
    /// device with the counter; tmpfs has none, and the test says so).
    #[test]
    fn syncs_show_in_the_device_counter() {
        let dir = tempfile::tempdir().unwrap();
        let flushes = DeviceFlushes::of(dir.path());
        let Some(before) = flushes.count() else {
            eprintln!(
                "skipped: {} is on no block device with a flush counter",
                dir.path().display()
            );
            return;
        };
        let mut file = std::fs::File::create(dir.path().join("f")).unwrap();
        for _ in 0..5 {
            std::io::Write::write_all(&mut file, b"x").unwrap();
            file.sync_data().unwrap();
        }
        let cost = flushes.since(Some(before), 5).unwrap();
        assert!(cost.per_op > 0.0, "{cost:?}");
        assert_eq!(cost.unit, "device flushes");
    }
}
