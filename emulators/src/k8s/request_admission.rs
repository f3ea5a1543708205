//! The admission gate of one API request: the policies in force, checked as the request's
//! user, every denial kept for the tests (and optionally appended to a file).

use super::admission::{Admit, Attributes, Denial, Refusal};
use super::server_state::Shared;
use super::status::ApiError;

/// With `K8S_EMULATOR_DENIALS_LOG=<path>` set, every denial of every emulator in the process
/// is appended there as a JSON line: how a whole test suite is checked for denials it did
/// not expect. Best effort: a test tool must not fail a request over its own log.
fn log_denial(d: &Denial) {
    use std::io::Write;
    let Some(path) = std::env::var_os("K8S_EMULATOR_DENIALS_LOG") else {
        return;
    };
    let Ok(mut line) = serde_json::to_vec(d) else {
        return;
    };
    line.push(b'\n');
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(&line);
    }
}

/// Admission for the writes of one API request.
pub(super) struct RequestAdmission<'a> {
    pub(super) shared: &'a Shared,
    pub(super) user: String,
    pub(super) verb: &'a str,
}

// === impl RequestAdmission ===

impl Admit for RequestAdmission<'_> {
    fn admit(&self, a: &Attributes<'_>) -> Result<(), ApiError> {
        let set = self
            .shared
            .admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(set) = set else { return Ok(()) };
        set.check(a, &self.user).map_err(|refusal| {
            let Refusal {
                policy,
                binding,
                error: e,
            } = *refusal;
            let denial = Denial {
                policy,
                binding,
                user: self.user.clone(),
                verb: self.verb.to_string(),
                resource: a.kind.qualified(),
                namespace: a.namespace.to_string(),
                name: a.name.to_string(),
                message: e.message.clone(),
            };
            log_denial(&denial);
            self.shared
                .denials
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(denial);
            e
        })
    }
}
