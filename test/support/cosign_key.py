#!/usr/bin/env python3
"""Write an EC private key as cosign's encrypted key, without cosign.

    COSIGN_PASSWORD=... /usr/bin/python3 test/support/cosign_key.py IN.pem OUT.key

IN.pem is an unencrypted ECDSA P-256 private key that openssl reads (SEC1 "EC PRIVATE KEY",
with or without an "EC PARAMETERS" block, or PKCS#8 "PRIVATE KEY"). OUT.key (mode 0600) is
what `cosign generate-key-pair` writes: a PEM block "ENCRYPTED SIGSTORE PRIVATE KEY" holding
JSON with the scrypt parameters (N=32768, r=8, p=1, 32-byte salt), the NaCl secretbox nonce
and the ciphertext of the key's PKCS#8 DER, keyed by scrypt(COSIGN_PASSWORD, salt).
COSIGN_PASSWORD may be empty, as with cosign. Needs openssl and PyNaCl (Debian: python3-nacl).
Exits 1 with a one-line reason on any error.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys

USAGE = "usage: COSIGN_PASSWORD=... cosign_key.py IN.pem OUT.key"

# PKCS#8 AlgorithmIdentifier of an EC key on P-256: id-ecPublicKey, prime256v1.
P256_ALGORITHM = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")

# cosign's parameters (go-securesystemslib's "legacy" strength).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


def fail(why):
    sys.exit("cosign_key.py: " + why)


def pkcs8_der(src):
    """The key as PKCS#8 DER, what cosign encrypts.

    `openssl pkcs8 -topk8`, not `openssl pkey -outform DER`: OpenSSL 3.0's pkey writes an EC
    key's DER as SEC1, which cosign cannot parse. An empty -passin makes an encrypted input
    key fail instead of prompting for its passphrase.
    """
    try:
        out = subprocess.run(
            ["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", src, "-outform", "DER",
             "-passin", "pass:"],
            stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except FileNotFoundError:
        fail("openssl is not installed")
    if out.returncode != 0:
        lines = out.stderr.decode(errors="replace").strip().splitlines()
        fail("openssl cannot read %s as an unencrypted private key: %s"
             % (src, lines[0] if lines else "exit %d" % out.returncode))
    # The identifier sits right after the version, within the first few bytes.
    if P256_ALGORITHM not in out.stdout[:32]:
        fail("%s is not an ECDSA P-256 key (cosign keys are P-256)" % src)
    return out.stdout


def main():
    if len(sys.argv) != 3:
        sys.exit(USAGE)
    src, dst = sys.argv[1], sys.argv[2]
    password = os.environ.get("COSIGN_PASSWORD")
    if password is None:
        fail("set COSIGN_PASSWORD (it may be empty)\n" + USAGE)
    try:
        import nacl.secret
    except ImportError:
        fail("PyNaCl is missing (apt-get install python3-nacl)")

    der = pkcs8_der(src)
    salt = os.urandom(32)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         dklen=32, maxmem=64 * 1024 * 1024)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    # PyNaCl's ciphertext is tag + encrypted bytes, as Go's secretbox.Seal writes them.
    sealed = nacl.secret.SecretBox(key).encrypt(der, nonce)
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }
    body = base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()
    pem = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    pem += "".join(body[i:i + 64] + "\n" for i in range(0, len(body), 64))
    pem += "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when OUT.key already existed
        with os.fdopen(fd, "w") as out:
            out.write(pem)
    except OSError as e:
        fail("cannot write %s: %s" % (dst, e.strerror))


if __name__ == "__main__":
    main()
