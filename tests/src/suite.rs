//! Running checks: capability gating, the check registry, and [`conformance_suite!`].

use std::future::Future;
use std::pin::Pin;

use crate::Fixture;

/// A capability a check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// `Capabilities::ttl`.
    Ttl,
    /// `Capabilities::search`.
    Search,
}

/// Why `fixture` cannot run a check needing `requires`, or `None` if it can.
pub fn skip_reason(fixture: &Fixture, requires: &[Requirement]) -> Option<String> {
    let caps = fixture.capabilities;
    requires.iter().find_map(|r| {
        let missing = match r {
            Requirement::Ttl => !caps.ttl,
            Requirement::Search => !caps.search,
        };
        missing.then(|| format!("backend {} does not declare {r:?}", fixture.name))
    })
}

/// A boxed check future.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// One check of the suite, for running the suite programmatically.
#[derive(Clone, Copy)]
pub struct CheckEntry {
    /// Function name, unique across the suite.
    pub name: &'static str,
    /// Capabilities it needs.
    pub requires: &'static [Requirement],
    /// Runs it.
    pub run: for<'a> fn(&'a Fixture) -> CheckFuture<'a>,
}

/// Outcome of [`run_suite`].
#[derive(Debug, Default)]
pub struct SuiteReport {
    /// Checks that passed.
    pub passed: Vec<&'static str>,
    /// Checks that failed, with the reason.
    pub failed: Vec<(&'static str, String)>,
    /// Checks skipped for a missing capability.
    pub skipped: Vec<&'static str>,
}

/// Runs every check, each on a fresh fixture from `setup`, and reports. Used to show the
/// suite fails broken backends; backends themselves use [`conformance_suite!`](crate::conformance_suite).
pub async fn run_suite<F, Fut>(setup: F) -> SuiteReport
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture>,
{
    let mut report = SuiteReport::default();
    for check in crate::checks::all() {
        let fixture = setup().await;
        if skip_reason(&fixture, check.requires).is_some() {
            report.skipped.push(check.name);
            continue;
        }
        let limit = std::time::Duration::from_secs(60);
        match tokio::time::timeout(limit, (check.run)(&fixture)).await {
            Ok(Ok(())) => report.passed.push(check.name),
            Ok(Err(e)) => report.failed.push((check.name, format!("{e:#}"))),
            Err(_) => report.failed.push((check.name, "timed out".into())),
        }
    }
    report
}

/// Emits one `#[tokio::test]` per conformance check into a module named `$suite`.
///
/// `$setup` is an expression evaluating to a future of `Option<Fixture>`; it runs once
/// per test. `None` means the backend's server is not available: the test prints why and
/// passes vacuously, which the harness only allows when `PERSISTENCE_TEST_REQUIRE` does
/// not name that server (CI names them all).
#[macro_export]
macro_rules! conformance_suite {
    ($suite:ident, $setup:expr) => {
        $crate::__for_each_check!(__conformance_tests, $suite, $setup);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (($suite:ident, $setup:expr) $($module:ident :: $check:ident [$($req:ident),*]),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$crate::__tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let Some(fixture) = ($setup).await else {
                        eprintln!("{}: backend unavailable, not run", stringify!($check));
                        return;
                    };
                    if let Some(reason) =
                        $crate::skip_reason(&fixture, &[$($crate::Requirement::$req),*])
                    {
                        eprintln!("{}: skipped: {reason}", stringify!($check));
                        return;
                    }
                    if let Err(e) = $crate::checks::$module::$check(&fixture).await {
                        panic!("{} on {}: {e:#}", stringify!($check), fixture.name);
                    }
                }
            )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_registry {
    (() $($module:ident :: $check:ident [$($req:ident),*]),* $(,)?) => {
        mod wrappers {
            use $crate::{CheckFuture, Fixture};
            $(
                pub(super) fn $check(fixture: &Fixture) -> CheckFuture<'_> {
                    Box::pin(super::$module::$check(fixture))
                }
            )*
        }
        /// Every check of the suite, in order.
        pub fn all() -> Vec<$crate::CheckEntry> {
            vec![$($crate::CheckEntry {
                name: stringify!($check),
                requires: &[$($crate::Requirement::$req),*],
                run: wrappers::$check,
            }),*]
        }
    };
}
