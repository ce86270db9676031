//! Unit tests of the catalog against a sorted-set model.

use std::fs::OpenOptions;
use std::io::Write;

use super::*;

fn writes() -> Writes {
    Writes {
        durability: Durability::Fsync,
        file_mode: 0o600,
        dir_mode: 0o700,
    }
}

fn all(c: &Catalog, range: Range<'_>) -> Vec<String> {
    c.collect(range, usize::MAX - 1, &|| Ok(Vec::new()), |id| {
        Ok(Some(id.to_owned()))
    })
    .unwrap()
}

/// Pages through a folded and an unfolded catalog agree with a sorted set, for every
/// cursor and prefix, and a torn journal line is ignored without losing the next.
#[test]
fn pages_match_a_sorted_set() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Catalog::new(tmp.path().join("cat"), tmp.path().join("entries"), writes());
    // The first note of a catalog whose directory does not exist yet starts it empty
    // (and foldable); then the directory appears.
    c.remove("nothing");
    assert!(c.dir.join(SORTED).exists());
    std::fs::create_dir(tmp.path().join("entries")).unwrap();
    let mut model = std::collections::BTreeSet::new();
    let ids: Vec<String> = (0..300)
        .map(|i| format!("k{:03}", (i * 7919) % 1000))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        c.add(id).unwrap();
        model.insert(id.clone());
        if n % 3 == 0 {
            c.remove(&ids[n / 2]);
            model.remove(&ids[n / 2]);
        }
        if n == 150 {
            let _x = FileLock::exclusive(&c.dir.join(LOCK), writes()).unwrap();
            c.fold(None).unwrap();
        }
    }
    // A torn line (no checksum, no newline) followed by a whole one.
    let mut j = OpenOptions::new()
        .append(true)
        .open(c.dir.join(JOURNAL))
        .unwrap();
    j.write_all(b"\n-k1").unwrap();
    c.add("k999x").unwrap();
    model.insert("k999x".into());
    let want: Vec<String> = model.iter().cloned().collect();
    assert_eq!(
        all(
            &c,
            Range {
                after: None,
                prefix: ""
            }
        ),
        want
    );
    for after in ["", "k0", "k5", "k500", "k999", "z"] {
        for prefix in ["", "k", "k1", "k99", "x"] {
            let got = all(
                &c,
                Range {
                    after: Some(after),
                    prefix,
                },
            );
            let expect: Vec<String> = want
                .iter()
                .filter(|id| id.as_str() > after && id.starts_with(prefix))
                .cloned()
                .collect();
            assert_eq!(got, expect, "after {after:?} prefix {prefix:?}");
        }
    }
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut page = c
            .collect(
                Range {
                    after: after.as_deref(),
                    prefix: "",
                },
                7,
                &|| Ok(Vec::new()),
                |id| Ok(Some(id.to_owned())),
            )
            .unwrap();
        page.truncate(7);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged, want);
}

/// A missing catalog is built from the scan, with the journal applied on top.
#[test]
fn a_missing_catalog_is_built_from_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("entries")).unwrap();
    let c = Catalog::new(tmp.path().join("cat"), tmp.path().join("entries"), writes());
    c.add("new").unwrap();
    assert!(
        !c.dir.join(SORTED).exists(),
        "entries exist: only a scan can build it"
    );
    c.remove("gone");
    let got = c
        .collect(
            Range {
                after: None,
                prefix: "",
            },
            10,
            &|| Ok(vec!["b".into(), "gone".into(), "a".into()]),
            |id| Ok(Some(id.to_owned())),
        )
        .unwrap();
    assert_eq!(got, ["a", "b", "new"]);
    assert!(c.dir.join(SORTED).exists());
}

/// A damaged line of `sorted` is noticed by the page that reads it, which rebuilds
/// the catalog from the directory: the listing stays complete. A fold that meets
/// damage drops `sorted`, so the next listing rebuilds it.
#[test]
fn a_damaged_catalog_is_rebuilt_from_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("entries")).unwrap();
    let c = Catalog::new(tmp.path().join("cat"), tmp.path().join("entries"), writes());
    let ids: Vec<String> = (0..50).map(|i| format!("id{i:02}")).collect();
    let scan = || Ok(ids.clone());
    let everything = Range {
        after: None,
        prefix: "",
    };
    let list = |c: &Catalog| {
        c.collect(everything, 1000, &scan, |id| Ok(Some(id.to_owned())))
            .unwrap()
    };
    assert_eq!(list(&c), ids);
    let sorted = c.dir.join(SORTED);
    let mut bytes = std::fs::read(&sorted).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&sorted, &bytes).unwrap();
    assert_eq!(list(&c), ids);
    assert_ne!(std::fs::read(&sorted).unwrap(), bytes, "not rebuilt");
    std::fs::write(&sorted, &bytes).unwrap();
    {
        let _x = FileLock::exclusive(&c.dir.join(LOCK), writes()).unwrap();
        c.fold(None).unwrap();
    }
    assert!(!sorted.exists());
    assert_eq!(list(&c), ids);
}

/// The journal parsed once per process stays right between pages: lines appended since
/// are added, a fold (a new `sorted`, the journal emptied and written again) starts it
/// over, and a line read while half written is taken whole the next time.
#[test]
fn the_parsed_journal_follows_appends_folds_and_half_written_lines() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("entries")).unwrap();
    let c = Catalog::new(tmp.path().join("cat"), tmp.path().join("entries"), writes());
    let everything = Range {
        after: None,
        prefix: "",
    };
    let mut model = std::collections::BTreeSet::new();
    c.remove("start");
    for round in 0..4 {
        for i in 0..20 {
            let id = format!("r{round}-{i:02}");
            c.add(&id).unwrap();
            model.insert(id);
        }
        c.remove(&format!("r{round}-05"));
        model.remove(&format!("r{round}-05"));
        // Pages read between every change see them all.
        assert_eq!(
            all(&c, everything),
            model.iter().cloned().collect::<Vec<_>>()
        );
        if round == 1 {
            let _x = FileLock::exclusive(&c.dir.join(LOCK), writes()).unwrap();
            c.fold(None).unwrap();
            assert_eq!(std::fs::metadata(c.dir.join(JOURNAL)).unwrap().len(), 0);
        }
    }
    // Half of a line, as a reader can meet it while it is appended, then the rest.
    let line = journal_line('+', "half");
    let (first, rest) = line.as_bytes().split_at(line.len() / 2);
    let mut j = OpenOptions::new()
        .append(true)
        .open(c.dir.join(JOURNAL))
        .unwrap();
    j.write_all(first).unwrap();
    assert_eq!(
        all(&c, everything),
        model.iter().cloned().collect::<Vec<_>>()
    );
    j.write_all(rest).unwrap();
    model.insert("half".into());
    assert_eq!(
        all(&c, everything),
        model.iter().cloned().collect::<Vec<_>>()
    );
}
