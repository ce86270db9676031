//! A rig conversation kept on the filesystem backend across a restart: built, saved,
//! opened again by "another process", continued and saved again.
//!
//! `cargo +1.99.1 run --example chat` (in `persistence-rig/`)

use persistence::TenantId;
use persistence_rig::ConversationStore;
use rig_core::conversation::Conversation;
use rig_core::message::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("file://{}", dir.path().display());
    let tenant = TenantId::new("acme")?;

    let live = {
        let p = persistence::open(&url).await?;
        let store =
            ConversationStore::new(p.sessions.clone(), p.checkpointer.clone(), tenant.clone());
        let mut conversation = Conversation::new();
        conversation.push(Message::user("Plan a trip to Lisbon"));
        conversation.push(Message::assistant("Three days: Alfama, Belém, Sintra."));
        let changes = store.save("trip", &mut conversation).await?;
        println!("first process saved {changes} changes");
        conversation
    }; // the first process ends here

    let p = persistence::open(&url).await?;
    let store = ConversationStore::new(p.sessions.clone(), p.checkpointer.clone(), tenant);
    let mut conversation = store.load("trip").await?.ok_or("not saved")?;
    assert_eq!(conversation, live);
    conversation.push(Message::user("Add a day trip to Cascais"));
    let changes = store.save("trip", &mut conversation).await?;
    println!(
        "second process continued it: {changes} changes, {} messages",
        conversation.messages().len()
    );
    Ok(())
}
