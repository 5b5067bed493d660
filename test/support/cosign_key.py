#!/usr/bin/env python3
"""Write an EC private key as cosign's encrypted key, without cosign.

    COSIGN_PASSWORD=... /usr/bin/python3 test/support/cosign_key.py IN.pem OUT.key

IN.pem is any PEM private key openssl reads (SEC1 or PKCS#8, ECDSA P-256). OUT.key is what
`cosign generate-key-pair` writes: a PEM block "ENCRYPTED SIGSTORE PRIVATE KEY" holding JSON
with the scrypt parameters (N=32768, r=8, p=1, 32-byte salt), the NaCl secretbox nonce and
the ciphertext of the key's PKCS#8 DER, keyed by scrypt(COSIGN_PASSWORD, salt).
Needs openssl and PyNaCl (Debian: python3-nacl).
"""
import base64
import hashlib
import json
import os
import subprocess
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: COSIGN_PASSWORD=... cosign_key.py IN.pem OUT.key")
    src, dst = sys.argv[1], sys.argv[2]
    password = os.environ.get("COSIGN_PASSWORD")
    if password is None:
        sys.exit("cosign_key.py: set COSIGN_PASSWORD (it may be empty)")
    try:
        import nacl.secret
    except ImportError:
        sys.exit("cosign_key.py: PyNaCl is missing (apt-get install python3-nacl)")
    der = subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", src, "-outform", "DER"],
        check=False, capture_output=True)
    if der.returncode != 0:
        sys.exit("cosign_key.py: openssl cannot read %s: %s" % (src, der.stderr.decode().strip()))
    salt = os.urandom(32)
    key = hashlib.scrypt(password.encode(), salt=salt, n=32768, r=8, p=1, dklen=32,
                         maxmem=64 * 1024 * 1024)
    box = nacl.secret.SecretBox(key)
    nonce = os.urandom(24)
    sealed = box.encrypt(der.stdout, nonce)
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }
    body = base64.b64encode(json.dumps(doc).encode()).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    with open(dst, "w") as out:
        out.write("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
        out.write("\n".join(lines) + "\n")
        out.write("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")


if __name__ == "__main__":
    main()
