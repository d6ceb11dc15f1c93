//! The RealWorld API's own conformance collection (`shared/realworld/`, beside the
//! repository), run by newman against a running Crescendo.

use std::path::PathBuf;
use std::process::Command;

/// Where the collection is; panics when it is missing.
#[must_use]
pub fn collection() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/realworld/Conduit.postman_collection.json");
    assert!(
        path.is_file(),
        "the conformance collection is missing at {}",
        path.display()
    );
    path
}

/// Runs the collection against the server at `url` (its API under `/api`) with newman given
/// `extra` arguments too; the users it registers are named after `tag` and this process, so
/// runs against one database stay apart. Asserts that every request and assertion passed;
/// returns newman's report.
///
/// # Panics
/// When newman is missing, reports a failure, or prints no summary.
pub fn run_collection(url: &str, tag: &str, extra: &[&str]) -> String {
    run_collection_with(Command::new("newman"), url, tag, extra)
}

/// As [`run_collection`], with newman run inside the network namespace `netns` (`ip netns
/// exec`), where it resolves names through the namespace's own `resolv.conf`.
///
/// # Panics
/// As [`run_collection`].
pub fn run_collection_in(netns: &str, url: &str, tag: &str, extra: &[&str]) -> String {
    let mut newman = Command::new("ip");
    newman.args(["netns", "exec", netns, "newman"]);
    run_collection_with(newman, url, tag, extra)
}

fn run_collection_with(mut newman: Command, url: &str, tag: &str, extra: &[&str]) -> String {
    let user = format!("{tag}{}", std::process::id());
    let out = newman
        .arg("run")
        .arg(collection())
        .args(["--global-var", &format!("APIURL={url}/api")])
        .args(["--global-var", &format!("USERNAME={user}")])
        .args(["--global-var", &format!("EMAIL={user}@example.com")])
        .args(["--global-var", "PASSWORD=password123"])
        .args(["--reporters", "cli", "--color", "off", "--disable-unicode"])
        .args(extra)
        .output()
        .expect("newman is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "newman reported failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("assertions"), "newman printed no summary");
    text
}
