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

/// Bounds on the scrypt parameters a key file may ask for. cosign writes N=32768, r=8, p=1
/// (32 MiB, about 0.1 s); go-securesystemslib reads at most N=131072, r=8, p=1 (128 MiB).
/// Twice that memory and four times that work is plenty; a tampered file asking for more must
/// not make us allocate gigabytes or spin for minutes.
const MAX_SCRYPT_MEMORY: u64 = 256 << 20; // scrypt's table: 128 * N * r bytes
const MAX_SCRYPT_WORK: u64 = 1 << 22; // N * r * p

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
            "EC PRIVATE KEY" if body.contains("Proc-Type: 4,ENCRYPTED") => {
                return Err(Error::SignKey(
                    "a password-protected (legacy openssl) EC key: decrypt it with `openssl ec`, or use a cosign key"
                        .into(),
                ))
            }
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

/// Keys for tests: a fixed P-256 key per seed, as PKCS#8 PEM and parsed, so tests need no
/// fixture files and two seeds are two different keys.
#[cfg(test)]
pub(crate) mod test_keys {
    use super::SigningKey;

    pub fn pem(seed: u8) -> String {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        p256::SecretKey::from_slice(&[seed; 32])
            .expect("a non-zero seed is a valid P-256 scalar")
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a P-256 key encodes as PKCS#8")
            .to_string()
    }

    pub fn key(seed: u8) -> SigningKey {
        SigningKey::from_pem(pem(seed).as_bytes(), None).expect("our own PEM parses")
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
    if nonce.len() != 24 {
        return Err(bad("nonce is not 24 bytes"));
    }
    let params = scrypt_params(&kdf["params"])?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|_| bad("scrypt"))?;
    let cipher = XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| Error::SignKeyPassword(SignKeyPassword::Wrong))
}

/// The scrypt parameters a key file names, refused when outside what any cosign key uses.
fn scrypt_params(params: &Value) -> Result<scrypt::Params> {
    let bad = |why: &str| Error::SignKey(format!("corrupt cosign key: {why}"));
    let field = |name: &str| {
        params[name]
            .as_u64()
            .filter(|v| *v >= 1)
            .ok_or_else(|| bad(&format!("scrypt {name} is not a positive integer")))
    };
    let (n, r, p) = (field("N")?, field("r")?, field("p")?);
    if n < 2 || !n.is_power_of_two() {
        return Err(bad("scrypt N is not a power of two"));
    }
    let memory = n.checked_mul(r).and_then(|nr| nr.checked_mul(128));
    let work = n.checked_mul(r).and_then(|nr| nr.checked_mul(p));
    let within = |v: Option<u64>, max: u64| v.is_some_and(|v| v <= max);
    if !within(memory, MAX_SCRYPT_MEMORY) || !within(work, MAX_SCRYPT_WORK) {
        return Err(bad("scrypt parameters out of range"));
    }
    // Both fit in u32 now: r <= work and p <= work, and work fits.
    let (r, p) = (
        u32::try_from(r).map_err(|_| bad("scrypt r"))?,
        u32::try_from(p).map_err(|_| bad("scrypt p"))?,
    );
    scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32)
        .map_err(|_| bad("scrypt parameters out of range"))
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
        for (name, words) in [
            ("p384.pem", "P-256"),
            ("p384-sec1.pem", "P-256"),
            ("rsa.pem", "P-256"),
            ("ed25519.pem", "P-256"),
        ] {
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
            (
                b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "not an ECDSA P-256",
            ),
            (
                b"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n",
                "password-protected",
            ),
            (
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "password-protected",
            ),
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
        let with_params = |params: &str| {
            format!(
                r#"{{"kdf":{{"name":"scrypt","params":{params},"salt":"{salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{nonce}"}},"ciphertext":"AAAA"}}"#
            )
        };
        for (json, words) in [
            // 4 GiB of scrypt table.
            (with_params(r#"{"N":1048576,"r":32,"p":1}"#), "out of range"),
            // Little memory, but minutes of work.
            (with_params(r#"{"N":32768,"r":8,"p":64}"#), "out of range"),
            // r does not fit in 32 bits: refused, not truncated to 8.
            (
                with_params(r#"{"N":32768,"r":4294967304,"p":1}"#),
                "out of range",
            ),
            (
                with_params(r#"{"N":32768,"r":8,"p":0}"#),
                "positive integer",
            ),
            (
                with_params(r#"{"N":32768,"r":"8","p":1}"#),
                "positive integer",
            ),
            (
                format!(
                    r#"{{"kdf":{{"name":"scrypt","params":{{"N":1024,"r":8,"p":1}},"salt":"{salt}"}},"cipher":{{"name":"nacl/secretbox","nonce":"AAAA"}},"ciphertext":"AAAA"}}"#
                ),
                "nonce",
            ),
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
    fn decrypts_what_go_securesystemslib_encrypts() {
        // The `Legacy` (cosign's N=32768, r=8, p=1) vector of go-securesystemslib's
        // encrypted_test.go: the same scheme in Go's golang.org/x/crypto, not our own script.
        // It was made by `Marshal`, which JSON-encodes the bytes first: the plaintext is the
        // JSON string of base64("reallyimportant").
        let json = br#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}"#;
        assert_eq!(
            decrypt_cosign(json, b"supersecret").unwrap(),
            format!("\"{}\"", STANDARD.encode("reallyimportant")).as_bytes()
        );
    }

    #[test]
    fn signatures_are_deterministic() {
        // RFC 6979 nonces: signing the same payload again gives the same layer, which
        // add_signature then does not repeat.
        let key = SigningKey::from_pem(&fixture("pkcs8.pem"), None).unwrap();
        assert_eq!(key.sign(b"payload"), key.sign(b"payload"));
        assert_ne!(key.sign(b"payload"), key.sign(b"other payload"));
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
