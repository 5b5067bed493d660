//! Signing keys and the payload cosign signs.
//!
//! Keys are ECDSA P-256, the only kind `cosign generate-key-pair` makes: PEM from openssl
//! (SEC1 `EC PRIVATE KEY`, possibly after an `EC PARAMETERS` block, or PKCS#8 `PRIVATE KEY`)
//! or cosign's own encrypted key (`ENCRYPTED SIGSTORE PRIVATE KEY`, formerly `ENCRYPTED
//! COSIGN PRIVATE KEY`): JSON naming scrypt parameters and a NaCl secretbox whose plaintext is
//! the PKCS#8 DER of the key. Errors never carry key material or the password.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey as EcdsaKey};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::SignKeyPassword;
use crate::image::json::canonical;
use crate::{Error, Result};

/// cosign's `type` for image signatures.
const SIGNATURE_TYPE: &str = "cosign container image signature";

/// scrypt parameters beyond these would take minutes or gigabytes: not a key cosign made.
const MAX_SCRYPT_LOG_N: u8 = 20;
const MAX_SCRYPT_R: u32 = 32;
const MAX_SCRYPT_P: u32 = 16;

/// An ECDSA P-256 private key that signs with SHA-256.
pub struct SigningKey(EcdsaKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(P-256, redacted)")
    }
}

impl SigningKey {
    /// The key in a PEM file; `password` opens a cosign encrypted key.
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>) -> Result<SigningKey> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| Error::SignKey("not a PEM file (not text)".into()))?;
        let (label, body) = key_block(text)?;
        let key = match label.as_str() {
            "EC PRIVATE KEY" => {
                let der = pem_body(&body)?;
                p256::SecretKey::from_sec1_der(&der)
                    .map(|k| EcdsaKey::from(&k))
                    .map_err(|_| Error::SignKey("not an ECDSA P-256 key (SEC1)".into()))?
            }
            "PRIVATE KEY" => pkcs8_key(&pem_body(&body)?)?,
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                let password = password.ok_or(Error::SignKeyPassword(SignKeyPassword::Missing))?;
                pkcs8_key(&decrypt_cosign(&pem_body(&body)?, password)?)?
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(Error::SignKey(
                    "a password-protected PKCS#8 key: decrypt it with `openssl pkey`, or use a cosign key"
                        .into(),
                ))
            }
            other => {
                return Err(Error::SignKey(format!(
                    "a PEM {other} block, not an ECDSA P-256 private key"
                )))
            }
        };
        Ok(SigningKey(key))
    }

    /// The ASN.1 DER ECDSA signature of SHA-256(`payload`).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let signature: Signature = self.0.sign(payload);
        signature.to_der().as_bytes().to_vec()
    }

    /// The public key as SPKI PEM, what `cosign verify --key` and `openssl dgst -verify` take.
    pub fn public_key_pem(&self) -> String {
        self.0
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }
}

/// The simple-signing payload for `manifest_digest` in repository `docker_reference`.
pub fn simple_signing_payload(docker_reference: &str, manifest_digest: &Digest) -> Vec<u8> {
    canonical(&json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest.as_str()},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    }))
}

/// The first private-key block of a PEM file (openssl may write `EC PARAMETERS` first).
fn key_block(text: &str) -> Result<(String, String)> {
    let mut rest = text;
    let mut labels = Vec::new();
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(end_label) = after.find("-----") else {
            break;
        };
        let label = after[..end_label].to_string();
        let body_start = &after[end_label + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_end) = body_start.find(&end_marker) else {
            return Err(Error::SignKey(format!("PEM block {label} has no END line")));
        };
        if label.contains("PRIVATE KEY") {
            return Ok((label, body_start[..body_end].to_string()));
        }
        labels.push(label);
        rest = &body_start[body_end + end_marker.len()..];
    }
    Err(Error::SignKey(if labels.is_empty() {
        "not a PEM file (no BEGIN line)".into()
    } else {
        format!(
            "no private key in the PEM file (found {})",
            labels.join(", ")
        )
    }))
}

/// A PEM body's bytes: base64 lines; header lines (`Key: value`) are skipped.
fn pem_body(body: &str) -> Result<Vec<u8>> {
    let b64: String = body
        .lines()
        .filter(|l| !l.contains(':'))
        .flat_map(|l| l.trim().chars())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|_| Error::SignKey("the PEM block is not valid base64".into()))
}

fn pkcs8_key(der: &[u8]) -> Result<EcdsaKey> {
    EcdsaKey::from_pkcs8_der(der).map_err(|_| {
        Error::SignKey("not an ECDSA P-256 key (PKCS#8 of another algorithm or curve)".into())
    })
}

/// Open cosign's encrypted key: scrypt(password, salt) keys a NaCl secretbox.
fn decrypt_cosign(json: &[u8], password: &[u8]) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::SignKey(format!("corrupt cosign key: {why}"));
    let v: Value = serde_json::from_slice(json).map_err(|_| bad("not JSON"))?;
    let kdf = &v["kdf"];
    if kdf["name"] != "scrypt" {
        return Err(bad("key derivation is not scrypt"));
    }
    if v["cipher"]["name"] != "nacl/secretbox" {
        return Err(bad("cipher is not nacl/secretbox"));
    }
    let b64 = |field: &Value, what: &str| -> Result<Vec<u8>> {
        field
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| bad(what))
    };
    let salt = b64(&kdf["salt"], "salt")?;
    let nonce = b64(&v["cipher"]["nonce"], "nonce")?;
    let ciphertext = b64(&v["ciphertext"], "ciphertext")?;
    let n = kdf["params"]["N"].as_u64().ok_or_else(|| bad("scrypt N"))?;
    let r = kdf["params"]["r"].as_u64().ok_or_else(|| bad("scrypt r"))?;
    let p = kdf["params"]["p"].as_u64().ok_or_else(|| bad("scrypt p"))?;
    if !n.is_power_of_two() || n < 2 {
        return Err(bad("scrypt N is not a power of two"));
    }
    let log_n = n.trailing_zeros() as u8;
    let (r, p) = (r as u32, p as u32);
    if log_n > MAX_SCRYPT_LOG_N || r == 0 || r > MAX_SCRYPT_R || p == 0 || p > MAX_SCRYPT_P {
        return Err(bad("scrypt parameters out of range"));
    }
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|_| bad("scrypt parameters"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|_| bad("scrypt"))?;
    if nonce.len() != 24 {
        return Err(bad("nonce is not 24 bytes"));
    }
    let cipher = XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| Error::SignKeyPassword(SignKeyPassword::Wrong))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;
    use p256::pkcs8::DecodePublicKey;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/signing");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// The signature verifies with the public key openssl derived from the same file.
    fn verifies(key: &SigningKey, pub_pem: &str) {
        let payload = b"payload";
        let der = key.sign(payload);
        let signature = Signature::from_der(&der).unwrap();
        let public = VerifyingKey::from_public_key_pem(pub_pem).unwrap();
        public.verify(payload, &signature).unwrap();
        assert_eq!(key.public_key_pem(), pub_pem);
    }

    #[test]
    fn openssl_sec1_key_after_ec_parameters() {
        let key = SigningKey::from_pem(&fixture("sec1.pem"), None).unwrap();
        verifies(&key, &String::from_utf8(fixture("sec1.pub")).unwrap());
    }

    #[test]
    fn openssl_pkcs8_key_ignores_a_password() {
        let key = SigningKey::from_pem(&fixture("pkcs8.pem"), Some(b"unused")).unwrap();
        verifies(&key, &String::from_utf8(fixture("pkcs8.pub")).unwrap());
    }

    #[test]
    fn cosign_encrypted_key_right_wrong_and_no_password() {
        // cosign.key holds pkcs8.pem, encrypted by test/support/cosign_key.py.
        let pem = fixture("cosign.key");
        let key = SigningKey::from_pem(&pem, Some(b"test-password")).unwrap();
        verifies(&key, &String::from_utf8(fixture("pkcs8.pub")).unwrap());
        assert!(matches!(
            SigningKey::from_pem(&pem, Some(b"wrong")),
            Err(Error::SignKeyPassword(SignKeyPassword::Wrong))
        ));
        assert!(matches!(
            SigningKey::from_pem(&pem, None),
            Err(Error::SignKeyPassword(SignKeyPassword::Missing))
        ));
    }

    #[test]
    fn other_keys_and_garbage_are_refused_with_a_reason() {
        for (name, words) in [("p384.pem", "P-256"), ("rsa.pem", "P-256")] {
            match SigningKey::from_pem(&fixture(name), None) {
                Err(Error::SignKey(why)) => assert!(why.contains(words), "{name}: {why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        for (pem, words) in [
            (&b"not a key"[..], "no BEGIN"),
            (
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "PUBLIC KEY",
            ),
            (
                b"-----BEGIN EC PRIVATE KEY-----\n!!!\n-----END EC PRIVATE KEY-----\n",
                "base64",
            ),
            (b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n", "END"),
            (b"\xff\xfe", "not text"),
        ] {
            match SigningKey::from_pem(pem, None) {
                Err(Error::SignKey(why)) => assert!(why.contains(words), "{why}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn corrupt_cosign_keys_are_refused_without_running_scrypt_wild() {
        let wrap = |json: &str| {
            format!(
                "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                STANDARD.encode(json)
            )
        };
        let salt = STANDARD.encode([0u8; 32]);
        let nonce = STANDARD.encode([0u8; 24]);
        for (json, words) in [
            ("[]".to_string(), "scrypt"),
            ("not json".to_string(), "JSON"),
            (
                format!(
                    r#"{{"kdf":{{"name":"scrypt","params":{{"N":1073741824,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{nonce}"}},"ciphertext":"AAAA"}}"#
                ),
                "out of range",
            ),
            (
                format!(
                    r#"{{"kdf":{{"name":"scrypt","params":{{"N":1000,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{nonce}"}},"ciphertext":"AAAA"}}"#
                ),
                "power of two",
            ),
            (
                format!(
                    r#"{{"kdf":{{"name":"scrypt","params":{{"N":1024,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{{"name":"aes"}},"ciphertext":"AAAA"}}"#
                ),
                "secretbox",
            ),
        ] {
            match SigningKey::from_pem(wrap(&json).as_bytes(), Some(b"pw")) {
                Err(Error::SignKey(why)) => assert!(why.contains(words), "{why}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn simple_signing_payload_is_what_cosign_signs() {
        let digest = Digest::of(b"image");
        let payload = simple_signing_payload("localhost:5000/hello", &digest);
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"localhost:5000/hello"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
    }

    #[test]
    fn debug_output_shows_no_key() {
        let key = SigningKey::from_pem(&fixture("sec1.pem"), None).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(P-256, redacted)");
    }
}
