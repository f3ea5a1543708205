//! ECR-sized passwords. A real ECR password is the base64 of an encrypted JSON envelope,
//! 2,000 to 2,700 characters long (users report 2,714), so a managed Secret is about
//! 9 KB on the wire. Every figure the tests and the bench take is only worth something
//! with passwords of that size, so the emulator issues them by default.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Length of an issued password: the top of what ECR is reported to issue.
pub const ECR_PASSWORD_LEN: usize = 2_700;

/// The standard base64 alphabet: real passwords are base64 text.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A fresh random password of [`ECR_PASSWORD_LEN`] base64 characters, different on every
/// call (never cryptographic: it only has to be unique and of the right size).
pub fn ecr_password() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // std's RandomState draws its keys from the OS once per process and perturbs them per
    // instance; the counter separates calls within one instance's lifetime.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    let mut state = hasher.finish();
    let mut out = String::with_capacity(ECR_PASSWORD_LEN);
    while out.len() < ECR_PASSWORD_LEN {
        let mut word = splitmix64(&mut state);
        for _ in 0..10 {
            if out.len() == ECR_PASSWORD_LEN {
                break;
            }
            out.push(ALPHABET[(word & 63) as usize] as char);
            word >>= 6;
        }
    }
    out
}

/// SplitMix64: a full-period 64-bit generator, enough to fill a password.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_ecr_sized_base64_and_never_repeat() {
        let a = ecr_password();
        let b = ecr_password();
        assert_eq!(a.len(), ECR_PASSWORD_LEN);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "base64 text only");
        assert_ne!(a, b, "a new password per token");
        assert_ne!(a[..64], b[..64], "different from the first characters on");
    }
}
