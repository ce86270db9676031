//! adk-rust sessions on the filesystem backend: created with app, user and session
//! state, events appended (with a state delta), read back by a second "process".
//!
//! `cargo run -p persistence-adk --example sessions`

use std::collections::HashMap;

use adk_session::{CreateRequest, Event, GetRequest, SessionService};
use persistence::TenantId;
use persistence_adk::LogSessionService;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("file://{}", dir.path().display());
    let tenant = TenantId::new("acme")?;

    {
        let p = persistence::open(&url).await?;
        let service = LogSessionService::new(p.sessions.clone(), p.store.clone(), tenant.clone());
        let state = HashMap::from([
            ("app:units".to_string(), json!("metric")),
            ("user:city".to_string(), json!("Lisbon")),
        ]);
        let request = CreateRequest {
            app_name: "weather".into(),
            user_id: "ada".into(),
            session_id: Some("morning".into()),
            state,
        };
        service.create(request).await?;
        let mut event = Event::new("inv-1");
        event.author = "forecaster".into();
        event
            .actions
            .state_delta
            .insert("last_forecast".into(), json!("sunny, 24°C"));
        service.append_event("morning", event).await?;
    } // the first process ends here

    let p = persistence::open(&url).await?;
    let service = LogSessionService::new(p.sessions.clone(), p.store.clone(), tenant);
    let session = service
        .get(GetRequest {
            app_name: "weather".into(),
            user_id: "ada".into(),
            session_id: "morning".into(),
            num_recent_events: None,
            after: None,
        })
        .await?;
    println!(
        "{} events; state {:?}",
        session.events().len(),
        session.state().all()
    );
    Ok(())
}
