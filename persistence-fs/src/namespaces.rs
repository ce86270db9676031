//! Listing namespaces through a catalog of the tenant's namespaces (module `catalog`):
//! a page costs O(page), as for threads, sessions and items.
//!
//! A namespace's catalog id is its labels joined by NUL. Labels hold no control
//! characters, so NUL sorts below every label byte and the ids sort exactly as the
//! namespaces do (label by label). A namespace is noted when its first item is created
//! (before it is), and never removed: a namespace whose items are all gone or expired
//! stays in the catalog and is skipped by the liveness check of each page.

use std::path::{Path, PathBuf};

use persistence_core::{ListNamespaces, Namespace, Result, TenantId, Timestamp};

use crate::Inner;
use crate::catalog::{Catalog, Range};
use crate::checkpointer::entry_id;
use crate::error::IoContext;
use crate::files;
use crate::layout::ITEMS_DIR;

/// Separator of labels in a catalog id: below every byte a label may hold.
const SEP: char = '\0';
/// Sorts after every id that continues an id with [`SEP`], and before any id that
/// continues it with a label byte: the first id past a namespace's whole subtree.
const PAST_SUBTREE: char = '\u{1}';

fn catalog_id(ns: &Namespace) -> String {
    ns.labels().join(&SEP.to_string())
}

fn from_catalog_id(id: &str) -> Option<Namespace> {
    Namespace::new(id.split(SEP)).ok()
}

impl Inner {
    /// The catalog of a tenant's namespaces.
    fn namespace_catalog(&self, t: &TenantId) -> Result<Catalog> {
        let dir = self.inside(self.layout.namespace_catalog(t))?;
        Ok(Catalog::new(dir, self.layout.store(t), self.durability))
    }

    /// Notes `ns` in the tenant's namespace catalog if it holds no item yet. Called
    /// before an item is created in it.
    ///
    /// # Errors
    /// I/O errors noting it (the item must not be created then).
    pub(crate) fn note_namespace(&self, t: &TenantId, ns: &Namespace, ns_dir: &Path) -> Result<()> {
        if ns_dir.join(ITEMS_DIR).is_dir() {
            return Ok(());
        }
        self.namespace_catalog(t)?.add(&catalog_id(ns))
    }

    /// Rebuilds the tenant's namespace catalog and every item catalog from scans (see
    /// `Catalog::rebuild`).
    ///
    /// # Errors
    /// I/O errors.
    pub(crate) fn rebuild_store_catalogs(&self, t: &TenantId) -> Result<()> {
        self.namespace_catalog(t)?
            .rebuild(&|| self.all_namespaces(t))?;
        for id in self.all_namespaces(t)? {
            let Some(ns) = from_catalog_id(&id) else {
                continue;
            };
            let ns_dir = self.inside(self.layout.namespace(t, &ns))?;
            self.item_catalog(t, &ns)?
                .rebuild(&|| self.item_ids(&ns_dir))?;
        }
        Ok(())
    }

    /// Every namespace of the tenant that has an items directory (live items or not):
    /// what a missing catalog is built from.
    fn all_namespaces(&self, t: &TenantId) -> Result<Vec<String>> {
        let root = self.inside(self.layout.store(t))?;
        let mut out = Vec::new();
        let mut labels = Vec::new();
        if root.is_dir() {
            walk(&root, &mut labels, &mut out)?;
        }
        Ok(out)
    }

    /// Whether `ns` holds at least one live item (its item catalog, one entry at most).
    fn has_live_item(&self, t: &TenantId, ns: &Namespace, now: Timestamp) -> Result<bool> {
        let ns_dir = self.inside(self.layout.namespace(t, ns))?;
        let items = self.inside_below(&ns_dir, ns_dir.join(ITEMS_DIR))?;
        let scan = || self.item_ids(&ns_dir);
        let everything = Range {
            after: None,
            prefix: "",
        };
        let found = self
            .item_catalog(t, ns)?
            .collect(everything, 0, &scan, |id| {
                let path = self.inside_below(&items, items.join(crate::layout::encode(id)))?;
                Ok(self.live_item_at(&path, id, now)?.then_some(()))
            })?;
        Ok(!found.is_empty())
    }

    /// One page (and one more) of `list_namespaces`, in order, truncated to
    /// `query.max_depth` and without duplicates.
    ///
    /// # Errors
    /// I/O errors; a corrupt item met while checking liveness.
    pub(crate) fn namespace_page(
        &self,
        t: &TenantId,
        query: &ListNamespaces,
        after: Option<&Namespace>,
        limit: usize,
    ) -> Result<Vec<Namespace>> {
        let prefix = query.prefix.as_ref().map(catalog_id).unwrap_or_default();
        // With a depth limit, a cursor at that depth stands for its whole subtree.
        let after_id = after.map(|a| {
            let mut id = catalog_id(a);
            if query.max_depth.is_some_and(|d| a.depth() >= d) {
                id.push(PAST_SUBTREE);
            }
            id
        });
        let range = Range {
            after: after_id.as_deref(),
            prefix: &prefix,
        };
        let now = Timestamp::now();
        let scan = || self.all_namespaces(t);
        let mut last: Option<Namespace> = None;
        self.namespace_catalog(t)?
            .collect(range, limit, &scan, |id| {
                let Some(ns) = from_catalog_id(id) else {
                    return Ok(None);
                };
                if query.prefix.as_ref().is_some_and(|p| !ns.starts_with(p)) {
                    return Ok(None);
                }
                let shown = query
                    .max_depth
                    .map_or_else(|| ns.clone(), |d| ns.truncated(d));
                if last.as_ref() == Some(&shown) || after.is_some_and(|a| &shown <= a) {
                    return Ok(None);
                }
                if !self.has_live_item(t, &ns, now)? {
                    return Ok(None);
                }
                last = Some(shown.clone());
                Ok(Some(shown))
            })
    }
}

/// Collects the catalog ids of every namespace directory below `dir` that holds items.
fn walk(dir: &Path, labels: &mut Vec<String>, out: &mut Vec<String>) -> Result<()> {
    if !labels.is_empty()
        && dir.join(ITEMS_DIR).is_dir()
        && let Ok(ns) = Namespace::new(labels.clone())
    {
        out.push(catalog_id(&ns));
    }
    if labels.len() >= persistence_core::MAX_NAMESPACE_DEPTH {
        return Ok(());
    }
    for name in files::list_names(dir).at(dir)? {
        if name.starts_with('~') {
            continue;
        }
        let child: PathBuf = dir.join(&name);
        if !child.is_dir() {
            continue;
        }
        let Some(label) = entry_id(dir, &name)? else {
            continue;
        };
        labels.push(label);
        walk(&child, labels, out)?;
        labels.pop();
    }
    Ok(())
}
