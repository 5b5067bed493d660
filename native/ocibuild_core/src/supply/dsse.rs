//! DSSE (Dead Simple Signing Envelope, v1): how in-toto attestations are signed.
//!
//! The signature covers PAE(payloadType, payload), never the payload alone, so a signature over
//! one payload type cannot be replayed as another. cosign stores an envelope as one layer of the
//! `sha256-<hex>.att` image (media type [`ENVELOPE_MEDIA_TYPE`]); an OCI 1.1 referrer carries the
//! same envelope as its one layer, with artifactType [`IN_TOTO_PAYLOAD_TYPE`].
//!
//! Envelope JSON: `{"payloadType": "...", "payload": "<base64>", "signatures": [{"keyid": "",
//! "sig": "<base64 of the ASN.1 DER ECDSA signature>"}]}`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::{json, Value};

use crate::image::json::canonical;
use crate::supply::signing::SigningKey;
use crate::{Error, Result};

/// The payload type of an in-toto Statement, and the artifactType of its referrer.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The media type of a layer holding a DSSE envelope (cosign's `.att` layers).
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Envelopes larger than this are refused unread: a provenance statement is a few KiB, and an
/// attacker-controlled registry must not make the verifier hold gigabytes.
pub const MAX_ENVELOPE_BYTES: usize = 4 << 20;

/// The Pre-Authentication Encoding: `"DSSEv1" SP len(type) SP type SP len(body) SP body`, with
/// lengths in ASCII decimal. This is what is signed and what `openssl dgst -verify` checks.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature in an envelope: the key id (empty for cosign's keys) and the DER signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

/// A DSSE envelope, decoded (payload and signatures as bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// Sign `payload` of `payload_type` with `key` (ECDSA P-256, SHA-256 over the PAE).
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &SigningKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, &payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload,
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig,
            }],
        }
    }

    /// The envelope as canonical JSON bytes (sorted keys, no spaces): the blob that is pushed.
    pub fn to_json(&self) -> Vec<u8> {
        let signatures: Vec<Value> = self
            .signatures
            .iter()
            .map(|s| json!({"keyid": s.keyid, "sig": STANDARD.encode(&s.sig)}))
            .collect();
        canonical(&json!({
            "payloadType": self.payload_type,
            "payload": STANDARD.encode(&self.payload),
            "signatures": signatures,
        }))
    }

    /// Read an envelope from untrusted bytes. Fails with `Error::Envelope` on anything that is
    /// not a well-formed envelope; says nothing yet about whether a signature is good.
    pub fn parse(bytes: &[u8]) -> Result<Envelope> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(envelope_error(format!(
                "{} bytes, more than the {} an envelope may have",
                bytes.len(),
                MAX_ENVELOPE_BYTES
            )));
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| envelope_error(format!("not JSON: {e}")))?;
        let payload_type = value["payloadType"]
            .as_str()
            .ok_or_else(|| envelope_error("no payloadType".into()))?
            .to_string();
        let payload = base64_field(&value["payload"], "payload")?;
        let signatures = value["signatures"]
            .as_array()
            .ok_or_else(|| envelope_error("no signatures array".into()))?
            .iter()
            .map(|s| {
                Ok(EnvelopeSignature {
                    keyid: s["keyid"].as_str().unwrap_or("").to_string(),
                    sig: base64_field(&s["sig"], "sig")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Envelope {
            payload_type,
            payload,
            signatures,
        })
    }

    /// Whether any signature verifies under `key`. An envelope with no signatures is not
    /// verified.
    pub fn verified_by(&self, key: &PublicKey) -> bool {
        let message = pae(&self.payload_type, &self.payload);
        self.signatures
            .iter()
            .any(|s| key.verifies(&message, &s.sig))
    }
}

fn base64_field(value: &Value, name: &str) -> Result<Vec<u8>> {
    let text = value
        .as_str()
        .ok_or_else(|| envelope_error(format!("no {name}")))?;
    STANDARD
        .decode(text)
        .map_err(|_| envelope_error(format!("{name} is not base64")))
}

fn envelope_error(why: String) -> Error {
    Error::Envelope(why)
}

/// An ECDSA P-256 public key: what `cosign verify --key` takes (`cosign.pub` is SPKI PEM, as is
/// `openssl ec -pubout`).
#[derive(Clone, Debug)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key in a PEM `PUBLIC KEY` block (text before or after the block is ignored).
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| Error::PublicKey("not a PEM file (not text)".into()))?;
        let begin = "-----BEGIN PUBLIC KEY-----";
        let end = "-----END PUBLIC KEY-----";
        let start = text.find(begin).ok_or_else(|| {
            Error::PublicKey("no PUBLIC KEY block (cosign.pub or `openssl ec -pubout`)".into())
        })?;
        let stop = text[start..]
            .find(end)
            .map(|i| start + i + end.len())
            .ok_or_else(|| Error::PublicKey("the PUBLIC KEY block has no END line".into()))?;
        VerifyingKey::from_public_key_pem(&text[start..stop])
            .map(PublicKey)
            .map_err(|_| Error::PublicKey("not an ECDSA P-256 public key".into()))
    }

    /// Whether `sig_der` (ASN.1 DER, as cosign and openssl write) signs SHA-256(`message`).
    pub fn verifies(&self, message: &[u8], sig_der: &[u8]) -> bool {
        match Signature::from_der(sig_der) {
            Ok(sig) => self.0.verify(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

impl SigningKey {
    /// The public half, for checking what this key signed.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_pem(self.public_key_pem().as_bytes())
            .expect("a P-256 signing key's own SPKI PEM parses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::supply::signing::test_keys::{key as key_from, pem as secret_pem};

    fn generated() -> SigningKey {
        key_from(7)
    }

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn a_signed_envelope_round_trips_and_verifies() {
        let key = generated();
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}".to_vec(), &key);
        let parsed = Envelope::parse(&env.to_json()).unwrap();
        assert_eq!(parsed, env);
        assert!(parsed.verified_by(&key.public_key()));
    }

    #[test]
    fn tampering_or_another_key_fails_verification() {
        let key = generated();
        let mut env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}".to_vec(), &key);
        let other = key_from(9);
        assert!(!env.verified_by(&other.public_key()));
        env.payload = b"{\"a\":2}".to_vec();
        assert!(!env.verified_by(&key.public_key()));
        env.payload = b"{\"a\":1}".to_vec();
        env.payload_type = "text/plain".into();
        assert!(!env.verified_by(&key.public_key()), "PAE binds the type");
        env.payload_type = IN_TOTO_PAYLOAD_TYPE.into();
        env.signatures.clear();
        assert!(
            !env.verified_by(&key.public_key()),
            "no signature, not verified"
        );
    }

    #[test]
    fn public_keys_are_read_from_pem_and_junk_is_refused() {
        let key = generated();
        let pem = key.public_key_pem();
        let wrapped = format!("comment\n{pem}trailer\n");
        assert!(PublicKey::from_pem(wrapped.as_bytes()).is_ok());
        for bad in [
            &b"\xff\xfe"[..],
            b"",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n",
            secret_pem(7).as_bytes(),
        ] {
            assert!(matches!(PublicKey::from_pem(bad), Err(Error::PublicKey(_))));
        }
        let junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(junk.as_bytes()),
            Err(Error::PublicKey(_))
        ));
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        for bad in [
            &b"not json"[..],
            b"{}",
            b"{\"payloadType\":\"t\",\"payload\":\"!!\",\"signatures\":[]}",
            b"{\"payloadType\":\"t\",\"payload\":\"\",\"signatures\":{}}",
            b"{\"payloadType\":\"t\",\"payload\":\"\",\"signatures\":[{\"sig\":1}]}",
        ] {
            assert!(matches!(Envelope::parse(bad), Err(Error::Envelope(_))));
        }
        let huge = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(Envelope::parse(&huge), Err(Error::Envelope(_))));
    }

    proptest::proptest! {
        #[test]
        fn prop_parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Envelope::parse(&bytes);
        }

        #[test]
        fn prop_pae_is_injective_in_type_and_payload(
            t1 in "[ -~]{0,12}", p1 in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            t2 in "[ -~]{0,12}", p2 in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
        ) {
            if (t1.as_str(), &p1) != (t2.as_str(), &p2) {
                proptest::prop_assert_ne!(pae(&t1, &p1), pae(&t2, &p2));
            }
        }
    }
}
