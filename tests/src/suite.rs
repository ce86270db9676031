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
    /// `Capabilities::lifecycle`.
    Lifecycle,
    /// `Capabilities::replace`.
    Replace,
}

/// Why `fixture` cannot run a check needing `requires`, or `None` if it can.
pub fn skip_reason(fixture: &Fixture, requires: &[Requirement]) -> Option<String> {
    let caps = fixture.capabilities;
    requires.iter().find_map(|r| {
        let missing = match r {
            Requirement::Ttl => !caps.ttl,
            Requirement::Search => !caps.search,
            Requirement::Lifecycle => !caps.lifecycle,
            Requirement::Replace => !caps.replace,
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
///
/// A backend that does not declare a capability says so here, with `lacks [...]`
/// ([`Requirement`] names: `Ttl`, `Search`, `Lifecycle`,
/// `Replace`): the checks that need it are emitted
/// `#[ignore]`d, so the test runner lists them as ignored, not as passes. The suite holds
/// the declaration to the backend's [`Capabilities`](persistence_core::Capabilities):
/// a check that needs a capability the fixture lacks but the invocation does not declare
/// fails, and so does the emitted `capabilities_match_declaration` test when the two
/// disagree either way.
///
/// ```ignore
/// conformance_suite!(my_backend, async { Some(my_fixture().await) });
/// conformance_suite!(my_backend_without_search, async { Some(fixture().await) }, lacks [Search]);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($suite:ident, $setup:expr $(,)?) => {
        $crate::__for_each_check!(__conformance_tests, $suite, $setup, { ttl: no, search: no, lifecycle: no, replace: no });
    };
    ($suite:ident, $setup:expr, lacks [$($lack:ident),* $(,)?] $(,)?) => {
        $crate::__lacks!({ ttl: no, search: no, lifecycle: no, replace: no } [$($lack),*] $suite, $setup);
    };
}

/// Turns `lacks [...]` into one flag per [`Requirement`].
#[doc(hidden)]
#[macro_export]
macro_rules! __lacks {
    ({ ttl: $t:tt, search: $s:tt, lifecycle: $l:tt, replace: $r:tt } [] $suite:ident, $setup:expr) => {
        $crate::__for_each_check!(
            __conformance_tests, $suite, $setup, { ttl: $t, search: $s, lifecycle: $l, replace: $r }
        );
    };
    ({ ttl: $t:tt, search: $s:tt, lifecycle: $l:tt, replace: $r:tt } [Ttl $(, $rest:ident)*] $($tail:tt)*) => {
        $crate::__lacks!({ ttl: yes, search: $s, lifecycle: $l, replace: $r } [$($rest),*] $($tail)*);
    };
    ({ ttl: $t:tt, search: $s:tt, lifecycle: $l:tt, replace: $r:tt } [Search $(, $rest:ident)*] $($tail:tt)*) => {
        $crate::__lacks!({ ttl: $t, search: yes, lifecycle: $l, replace: $r } [$($rest),*] $($tail)*);
    };
    ({ ttl: $t:tt, search: $s:tt, lifecycle: $l:tt, replace: $r:tt } [Lifecycle $(, $rest:ident)*] $($tail:tt)*) => {
        $crate::__lacks!({ ttl: $t, search: $s, lifecycle: yes, replace: $r } [$($rest),*] $($tail)*);
    };
    ({ ttl: $t:tt, search: $s:tt, lifecycle: $l:tt, replace: $r:tt } [Replace $(, $rest:ident)*] $($tail:tt)*) => {
        $crate::__lacks!({ ttl: $t, search: $s, lifecycle: $l, replace: yes } [$($rest),*] $($tail)*);
    };
    ({ $($flags:tt)* } [$other:ident $(, $rest:ident)*] $($tail:tt)*) => {
        compile_error!(concat!(
            "conformance_suite!: `",
            stringify!($other),
            "` is not a capability the suite gates on (Ttl, Search, Lifecycle, Replace)"
        ));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (($suite:ident, $setup:expr, $flags:tt) $($module:ident :: $check:ident [$($req:ident),*]),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $crate::__conformance_test!($flags [$($req),*] [$($req),*] $module $check $setup);
            )*

            /// The capabilities declared to the suite (`lacks [...]`) are the fixture's.
            #[$crate::__tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn capabilities_match_declaration() {
                let Some(fixture) = ($setup).await else {
                    eprintln!("capabilities_match_declaration: backend unavailable, not run");
                    return;
                };
                $crate::__check_declaration!(fixture, $flags);
            }
        }
    };
}

/// Compares the declared flags with the fixture's capabilities.
#[doc(hidden)]
#[macro_export]
macro_rules! __check_declaration {
    ($fixture:ident, { ttl: $t:tt, search: $s:tt, lifecycle: $l:tt, replace: $r:tt }) => {
        let declared = [
            ("Ttl", $crate::__flag!($t), !$fixture.capabilities.ttl),
            ("Search", $crate::__flag!($s), !$fixture.capabilities.search),
            (
                "Lifecycle",
                $crate::__flag!($l),
                !$fixture.capabilities.lifecycle,
            ),
            (
                "Replace",
                $crate::__flag!($r),
                !$fixture.capabilities.replace,
            ),
        ];
        for (name, declared_lacking, lacking) in declared {
            assert_eq!(
                declared_lacking,
                lacking,
                "{}: conformance_suite! {} {name} but the backend's capabilities {}",
                $fixture.name,
                if declared_lacking {
                    "declares it lacks"
                } else {
                    "does not declare it lacks"
                },
                if lacking { "lack it" } else { "have it" },
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flag {
    (yes) => {
        true
    };
    (no) => {
        false
    };
}

/// One test: `#[ignore]`d when a requirement is declared lacking.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    // Every requirement is met: a plain test.
    ($flags:tt [] $reqs:tt $module:ident $check:ident $setup:expr) => {
        $crate::__conformance_test_fn!(false [] $reqs $module $check $setup);
    };
    ({ ttl: yes, search: $s:tt, lifecycle: $l:tt, replace: $r:tt } [Ttl $(, $rest:ident)*] $reqs:tt $($tail:tt)*) => {
        $crate::__conformance_test_fn!(
            true
            [#[ignore = "the backend lacks Ttl (declared: conformance_suite!(.., lacks [Ttl]))"]]
            $reqs $($tail)*
        );
    };
    ({ ttl: $t:tt, search: yes, lifecycle: $l:tt, replace: $r:tt } [Search $(, $rest:ident)*] $reqs:tt $($tail:tt)*) => {
        $crate::__conformance_test_fn!(
            true
            [#[ignore = "the backend lacks Search (declared: conformance_suite!(.., lacks [Search]))"]]
            $reqs $($tail)*
        );
    };
    ({ ttl: $t:tt, search: $s:tt, lifecycle: yes, replace: $r:tt } [Lifecycle $(, $rest:ident)*] $reqs:tt $($tail:tt)*) => {
        $crate::__conformance_test_fn!(
            true
            [#[ignore = "the backend lacks Lifecycle (declared: conformance_suite!(.., lacks [Lifecycle]))"]]
            $reqs $($tail)*
        );
    };
    ({ ttl: $t:tt, search: $s:tt, lifecycle: $l:tt, replace: yes } [Replace $(, $rest:ident)*] $reqs:tt $($tail:tt)*) => {
        $crate::__conformance_test_fn!(
            true
            [#[ignore = "the backend lacks Replace (declared: conformance_suite!(.., lacks [Replace]))"]]
            $reqs $($tail)*
        );
    };
    ($flags:tt [$first:ident $(, $rest:ident)*] $($tail:tt)*) => {
        $crate::__conformance_test!($flags [$($rest),*] $($tail)*);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fn {
    ($ignored:literal [$($ignore:tt)*] [$($req:ident),*] $module:ident $check:ident $setup:expr) => {
        #[$crate::__tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($ignore)*
        async fn $check() {
            let Some(fixture) = ($setup).await else {
                eprintln!("{}: backend unavailable, not run", stringify!($check));
                return;
            };
            if let Some(reason) =
                $crate::skip_reason(&fixture, &[$($crate::Requirement::$req),*])
            {
                // Run by `--ignored` on a backend that declared the lack: nothing to check.
                assert!(
                    $ignored,
                    "{}: {reason}, but conformance_suite! does not declare it: add `lacks [..]`",
                    stringify!($check)
                );
                eprintln!("{}: not run: {reason}", stringify!($check));
                return;
            }
            if let Err(e) = $crate::checks::$module::$check(&fixture).await {
                panic!("{} on {}: {e:#}", stringify!($check), fixture.name);
            }
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
