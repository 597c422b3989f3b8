//! `herd node`: waits for herd::cluster and herd::replica to land on main.

use std::process::ExitCode;

/// Runs `herd node <args>`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    if let Err(e) = crate::args::parse_node_args(args) {
        eprintln!("herd node: {e}\n\n{}", crate::args::NODE_USAGE);
        return ExitCode::from(2);
    }
    let _ = crate::protocol::parse(crate::protocol::HELP);
    let _ = (crate::protocol::ok(serde_json::json!({})), crate::protocol::error("", serde_json::json!({})));
    let _ = crate::protocol::Expect::Any.holds(None);
    eprintln!("herd node: not built yet (needs herd::cluster and herd::replica)");
    ExitCode::FAILURE
}
