//! The conformance suite every backend of the `persistence` workspace runs.
//!
//! - [`checks`]: plain `async fn(&Fixture) -> anyhow::Result<()>` functions grouped by
//!   trait. Each asserts one line of the contract (`DESIGN.md`) and only ever branches on
//!   [`ErrorKind`](persistence_core::ErrorKind), never on message text.
//! - [`conformance_suite!`]: emits one `#[tokio::test]` per check for a backend; the
//!   checks whose [`Requirement`] the backend declares it lacks (`lacks [Search]`) are
//!   emitted `#[ignore]`d, and the declaration is checked against the backend's
//!   [`Capabilities`](persistence_core::Capabilities).
//! - [`model`]: a model-based test comparing a backend with
//!   [`MemoryBackend`](persistence_core::MemoryBackend) on random operation sequences.
//! - [`harness`]: where tests find servers (env URL, throwaway local process), and
//!   `PERSISTENCE_TEST_REQUIRE`, which turns a missing server into a failure.
//!
//! A third-party backend depends on this crate and writes:
//!
//! ```
//! use persistence_conformance::{Fixture, TimeControl, conformance_suite};
//! use persistence_core::MemoryBackend;
//!
//! // Put your backend here: anything implementing the four data traits, `Maintenance`
//! // and Clone.
//! conformance_suite!(my_backend, async {
//!     let backend = MemoryBackend::new();
//!     let capabilities = backend.capabilities();
//!     Some(Fixture::new("mine", backend, capabilities, TimeControl::Real))
//! });
//! ```
#![deny(missing_docs)]

pub mod checks;
mod codec_below;
mod fixture;
pub mod harness;
pub mod model;
mod suite;

pub use codec_below::{
    SEALED_FIXTURE_KEY_PREFIXES, every_payload_sealed_below, sealed_fixture_codec,
};
pub use fixture::{Fixture, TimeControl};
pub use suite::{CheckEntry, CheckFuture, Requirement, SuiteReport, run_suite, skip_reason};

/// The benchmark helpers, re-exported for the backends' `examples/*_bench.rs`.
pub use persistence_bench as bench;
#[doc(hidden)]
pub use tokio as __tokio;
