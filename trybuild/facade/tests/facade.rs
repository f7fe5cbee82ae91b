//! A user's crate sees one dependency, `chimera-log`: derive, `emit!`, loggers, the bot's
//! standard events in `chimera_log::chimera`, and the audit chain in `chimera_log::audit`.

use chimera_log::chimera::log_state_transition;
use chimera_log::{emit, Level, LogConfig, LogEvent};
use chimera_log_facade_user::{Heartbeat, Submitted};

#[test]
fn a_crate_depending_on_the_facade_alone_derives_emits_and_reaches_every_file() {
    let dir = std::env::temp_dir().join(format!("chimera-facade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let guard = LogConfig::new(&dir).console(false).build().unwrap();
    let logger = guard.logger("executor");
    let event =
        Submitted { block_number: 7, tx_hash: "0xabc", signer_key: "secret", endpoint: std::net::Ipv4Addr::LOCALHOST };
    emit!(logger, event);
    emit!(logger, Heartbeat);
    log_state_transition(&logger, "a", "b", "r", &std::collections::BTreeMap::from([("hf", "0.98")]));
    drop(guard);
    assert_eq!(<Submitted<'_> as LogEvent>::LEVEL, Level::Warning);
    let general = std::fs::read_to_string(dir.join("chimera.log")).unwrap();
    let events: Vec<serde_json::Value> = general.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["submitted", "heartbeat", "state_transition"]);
    assert_eq!(
        events[0]["context"],
        serde_json::json!({"block_number": 7, "tx": "0xabc", "signer_key": "[REDACTED]", "endpoint": "127.0.0.1"})
    );
    // The audit file: its anchor, then the record, sealed by the chain `chimera_log::audit` defines.
    let audit = std::fs::read_to_string(dir.join("executions.log")).unwrap();
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(lines.len(), 2, "{audit}");
    let anchor = chimera_log::audit::parse_anchor(lines[0].as_bytes()).unwrap();
    let record = chimera_log::audit::parse_sealed(lines[1].as_bytes()).unwrap();
    let key = chimera_log::audit::ChainKey::unkeyed();
    assert!(anchor.is_sealed_by(&key));
    assert_eq!((record.seq, record.chain), (1, key.link(&anchor.previous.chain, record.body)));
    std::fs::remove_dir_all(&dir).unwrap();
}
