//! Build facts for `--version`: the commit and the target triple. No crate: the commit comes
//! from ECR_CREDS_REFRESHER_COMMIT (the Dockerfile's GIT_COMMIT, set by the release
//! workflow), else, in a release build, from `git` when the source is a checkout, else
//! `unknown`. Debug builds do not ask git: a new commit would re-run this script and so
//! recompile the crate and every test binary on each commit, for a line nobody reads there.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ECR_CREDS_REFRESHER_COMMIT");
    let commit = std::env::var("ECR_CREDS_REFRESHER_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .or_else(|| {
            (std::env::var("PROFILE").as_deref() == Ok("release"))
                .then(git_commit)
                .flatten()
        })
        .unwrap_or_else(|| "unknown".to_string());
    let short: String = commit.chars().take(12).collect();
    println!("cargo:rustc-env=ECR_CREDS_REFRESHER_COMMIT={short}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=ECR_CREDS_REFRESHER_TARGET={target}");
}

/// HEAD's commit, and a rerun whenever HEAD or the branch it names moves.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    Some(commit)
}
