//! Benchmark helpers shared by `persistence bench` (the CLI) and each backend's
//! `examples/*_bench.rs`: run an operation N times on T concurrent tasks and report
//! ops/s with p50/p99 latency ([`measure`]), count network round trips per operation
//! through a loopback TCP proxy ([`CountingProxy`]), and print rows beside a raw
//! baseline ([`print_row`]) with the storage's own cost counter ([`cost`]); the [`workload`] every backend is measured with, and the
//! [`scale`] checks (flat costs as data grows).
//!
//! Nothing here asserts timing: the figures are for people to read.

#![deny(missing_docs)]

pub mod codec;
pub mod cost;
pub mod live_tail;
mod measure;
mod proxy;
pub mod scale;
pub mod workload;

pub use cost::{Cost, DeviceFlushes};
pub use measure::{Stats, arg, measure, print_header, print_row};
pub use proxy::CountingProxy;
