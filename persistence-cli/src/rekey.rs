//! `persistence rekey`: re-encrypt stored payloads under the writer's key after a key
//! rotation, so the old key can leave the keyring.

use persistence::codec::{RekeyOptions, RekeyReport};
use persistence::{Result, TenantId};
use serde_json::json;

use crate::output::{Format, print_json, print_table, say};

/// `persistence rekey`'s options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RekeyArgs {
    #[command(flatten)]
    pub(crate) url: crate::UrlArg,
    /// Only this tenant (default: every tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// Payloads listed and rewritten per batch (1 to 10000).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Stop after rewriting this many payloads in all; run again to go on.
    #[arg(long)]
    limit: Option<u64>,
}

/// Rekeys every tenant (or the one asked for) of a store that exists, with a progress
/// bar of payloads read on a terminal, and prints what each tenant's run did.
pub async fn run(args: RekeyArgs, format: Format) -> Result<()> {
    let p = persistence::open_existing(&args.url.url).await?;
    let tenants = match &args.tenant {
        Some(t) => vec![TenantId::new(t.as_str())?],
        None => p.tenants().await?,
    };
    let on_terminal =
        format == Format::Table && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if on_terminal {
        // The length is every payload held: counted first, so the bar tells how far.
        let mut total = 0;
        for t in &tenants {
            let usage = p.key_usage(t).await?;
            total += usage.by_key.values().sum::<u64>() + usage.unencrypted;
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} payloads read ({per_sec}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let tenant_count = tenants.len();
    let mut reports: Vec<(TenantId, RekeyReport)> = Vec::new();
    let mut left = args.limit;
    for t in tenants {
        if left == Some(0) {
            break;
        }
        let options = RekeyOptions::default()
            .with_batch(args.batch)
            .with_limit(left);
        let (start, tenant_name) = (bar.position(), t.to_string());
        let result = p
            .rekey(&t, options, &mut |r| {
                bar.set_position(start + r.examined);
                bar.set_message(format!("{} rewritten, tenant {tenant_name}", r.rewritten));
            })
            .await;
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                bar.abandon();
                p.close().await;
                return Err(e);
            }
        };
        left = left.map(|l| l.saturating_sub(report.rewritten));
        reports.push((t, report));
    }
    bar.finish_and_clear();
    p.close().await;
    let complete = reports.len() == tenant_count && reports.iter().all(|(_, r)| r.complete);
    match format {
        Format::Json => print_json(&json!({
            "tenants": reports.iter().map(|(t, r)| json!({
                "tenant": t.as_str(),
                "key": r.key,
                "examined": r.examined,
                "rewritten": r.rewritten,
                "changed_meanwhile": r.changed_meanwhile,
                "complete": r.complete,
            })).collect::<Vec<_>>(),
            "complete": complete,
        })),
        Format::Table => {
            let rows: Vec<Vec<String>> = reports
                .iter()
                .map(|(t, r)| {
                    vec![
                        t.to_string(),
                        r.key.clone(),
                        r.examined.to_string(),
                        r.rewritten.to_string(),
                        r.changed_meanwhile.to_string(),
                        if r.complete { "yes" } else { "no" }.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "tenant",
                    "key",
                    "read",
                    "rewritten",
                    "changed meanwhile",
                    "complete",
                ],
                &rows,
            );
            if !complete {
                say!();
                say!("stopped at --limit: run `persistence rekey` again to go on");
            }
        }
    }
    Ok(())
}
