//! Key derivation, string to sign and the final HMAC (spec §3.2, §3.3).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::Algorithm;
use crate::canonical::sha256_hex;

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// V11 derived key: HKDF-SHA256 with salt = AK, ikm = SK, `info`, one 32-byte block,
/// as 64 lowercase hex digits on the stack. The *hex text* is what the SDK then uses
/// as the HMAC key, not the 32 raw bytes.
pub(crate) fn derive_key_hex(access_key: &str, secret_key: &str, info: &str) -> [u8; 64] {
    let mut extract = hmac_sha256(access_key.as_bytes());
    extract.update(secret_key.as_bytes());
    let prk = extract.finalize().into_bytes();

    let mut expand = hmac_sha256(&prk);
    expand.update(info.as_bytes());
    expand.update(&[0x01]);
    let okm = expand.finalize().into_bytes();

    let mut hex = [0u8; 64];
    hex::encode_to_slice(okm, &mut hex).expect("64 = 2 * 32");
    hex
}

/// The V11 derived signing key for a credential scope `info` (`yyyymmdd/region/service`),
/// as the 64-char lowercase hex string the SDK uses as HMAC key.
pub fn derive_key(access_key: &str, secret_key: &str, info: &str) -> String {
    String::from_utf8(derive_key_hex(access_key, secret_key, info).to_vec()).expect("hex is ASCII")
}

/// The pieces of the string to sign, in order, joined by `\n`:
/// `ALG`, `X-Sdk-Date`, [V11 only: scope `info`], hex SHA-256 of the canonical request.
/// Fed piecewise into the HMAC so the verifier never materialises the string.
fn string_to_sign_parts<'a>(
    algorithm: Algorithm,
    sdk_date: &'a str,
    scope_info: Option<&'a str>,
    canonical_request_sha256_hex: &'a [u8; 64],
) -> impl Iterator<Item = &'a [u8]> {
    let head = [
        algorithm.as_str().as_bytes(),
        b"\n",
        sdk_date.as_bytes(),
        b"\n",
    ];
    let scope = scope_info
        .map(|info| [info.as_bytes(), b"\n"])
        .into_iter()
        .flatten();
    head.into_iter()
        .chain(scope)
        .chain(std::iter::once(&canonical_request_sha256_hex[..]))
}

/// The string to sign for a canonical request (§3.2/§3.3). `scope_info` is the V11
/// credential scope and is ignored for `SDK-HMAC-SHA256`. Useful for tests and for
/// explaining a mismatch; the verifier itself never builds this string.
pub fn string_to_sign(
    algorithm: Algorithm,
    sdk_date: &str,
    scope_info: Option<&str>,
    canonical_request: &str,
) -> String {
    let hash = sha256_hex(canonical_request.as_bytes());
    let scope_info = scope_info.filter(|_| algorithm == Algorithm::V11HmacSha256);
    let bytes: Vec<u8> = string_to_sign_parts(algorithm, sdk_date, scope_info, &hash)
        .flatten()
        .copied()
        .collect();
    String::from_utf8(bytes).expect("string to sign is UTF-8")
}

/// Computes the signature from a finished canonical-request hash.
///
/// `scope` must be `Some((access_key, info))` for V11 and `None` for plain signing.
pub(crate) fn compute_signature(
    algorithm: Algorithm,
    secret_key: &str,
    scope: Option<(&str, &str)>,
    sdk_date: &str,
    canonical_request_sha256_hex: &[u8; 64],
) -> [u8; 32] {
    let derived;
    let (key, info) = match (algorithm, scope) {
        (Algorithm::V11HmacSha256, Some((access_key, info))) => {
            derived = derive_key_hex(access_key, secret_key, info);
            (&derived[..], Some(info))
        }
        // Plain; callers never pass a V11 algorithm without a scope (verify rejects it).
        _ => (secret_key.as_bytes(), None),
    };
    let mut mac = hmac_sha256(key);
    for part in string_to_sign_parts(algorithm, sdk_date, info, canonical_request_sha256_hex) {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn derive_key_matches_vector_v3() {
        let ak = "HWTESTAK0123456789AB";
        let sk = "hwTestSecretKey0123456789abcdefghijklmnop";
        // PRK from sign-vectors.json
        let mut extract = hmac_sha256(ak.as_bytes());
        extract.update(sk.as_bytes());
        assert_eq!(
            hex::encode(extract.finalize().into_bytes()),
            "ae6a0c707f67d4b33f8fe0fff1470cbd66ea8bc12c7dbea5a7ddd92f7da475ef"
        );
        assert_eq!(
            derive_key(ak, sk, "20240315/cn-north-4/iotdm"),
            "9d29be0f4f8fb2ca2350aa2a7bac6e8aae2280619e5fb19dba48cd98c0c9ca3f"
        );
    }

    #[test]
    fn string_to_sign_shapes() {
        let cr = "x";
        let h = hex::encode(Sha256::digest(cr));
        assert_eq!(
            string_to_sign(Algorithm::SdkHmacSha256, "D", Some("ignored"), cr),
            format!("SDK-HMAC-SHA256\nD\n{h}")
        );
        assert_eq!(
            string_to_sign(Algorithm::V11HmacSha256, "D", Some("d/r/s"), cr),
            format!("V11-HMAC-SHA256\nD\nd/r/s\n{h}")
        );
    }
}
