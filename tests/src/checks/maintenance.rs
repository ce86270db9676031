//! `Maintenance`: the backend names itself, declares what the fixture was told, answers a
//! health check, and lists the tenants that hold data.

use anyhow::{Result, ensure};
use persistence_core::serde_json::json;
use persistence_core::{AppendOptions, PutItemOptions};

use super::{env, item_key, ns, session, tenant};
use crate::Fixture;

/// Name, capabilities, schema, health and tenants of the backend under test.
pub async fn maintenance_reports_the_backend(fx: &Fixture) -> Result<()> {
    let m = &fx.maintenance;
    ensure!(!m.backend_name().is_empty(), "empty backend name");
    ensure!(
        m.capabilities() == fx.capabilities,
        "Maintenance::capabilities {:?} differ from the fixture's {:?}",
        m.capabilities(),
        fx.capabilities
    );
    ensure!(!m.schema().is_empty(), "empty schema description");
    m.health().await?;
    let (a, b) = (tenant("maint-a"), tenant("maint-b"));
    fx.store
        .put(
            &a,
            &ns(&["n"]),
            &item_key("k"),
            env(json!(1)),
            PutItemOptions::default(),
        )
        .await?;
    fx.sessions
        .append(
            &b,
            &session("s"),
            vec![env(json!(1))],
            AppendOptions::default(),
        )
        .await?;
    let tenants = m.tenants().await?;
    ensure!(
        tenants.contains(&a) && tenants.contains(&b),
        "tenants {tenants:?} miss one holding an item or a session"
    );
    ensure!(
        tenants.windows(2).all(|w| w[0] < w[1]),
        "tenants not ascending: {tenants:?}"
    );
    Ok(())
}
