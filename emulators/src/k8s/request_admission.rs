//! The admission gate of one API request: the policies in force, checked as the request's
//! user, every denial kept for the tests (and optionally appended to a file).

use super::admission::{Admit, Attributes, Denial, PolicySet, Refusal};
use super::server_state::Shared;
use super::status::ApiError;

/// With `K8S_EMULATOR_DENIALS_LOG=<path>` set, every denial of every emulator in the process
/// is appended there as a JSON line: how a whole test suite is checked for denials it did
/// not expect. Best effort: a test tool must not fail a request over its own log.
fn log_denial(d: &Denial) {
    append_json_line("K8S_EMULATOR_DENIALS_LOG", d);
}

/// With `K8S_EMULATOR_ADMISSION_CASES=<path>` set, every write admission evaluated is
/// appended there as a JSON line: the cases a second CEL evaluator replays to check this
/// one (tests/cel/second_evaluator.py).
fn log_case(set: &PolicySet, a: &Attributes<'_>, user: &str, verdict: &Result<(), Box<Refusal>>) {
    if std::env::var_os("K8S_EMULATOR_ADMISSION_CASES").is_some() {
        append_json_line("K8S_EMULATOR_ADMISSION_CASES", &set.case(a, user, verdict));
    }
}

/// Appends `value` as one JSON line to the file the environment variable `var` names.
fn append_json_line(var: &str, value: &impl serde::Serialize) {
    use std::io::Write;
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    let Ok(mut line) = serde_json::to_vec(value) else {
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
        let verdict = set.check(a, &self.user);
        log_case(&set, a, &self.user, &verdict);
        verdict.map_err(|refusal| {
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
