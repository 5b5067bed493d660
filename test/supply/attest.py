#!/usr/bin/env python3
"""Attach a signed in-toto attestation to an image, the way the agreed formats say a push does
(what test/supply/verify.sh uses when the push itself attached none):

    attest.py att|referrer ADDR REPO DIGEST KEY.pem

`att`: a DSSE envelope layer appended to the `sha256-<hex>.att` image (cosign's tag).
`referrer`: an OCI 1.1 referrer (artifactType application/vnd.in-toto+json) whose subject is
DIGEST; when the registry does not answer with OCI-Subject, the `sha256-<hex>` fallback index
is extended too. The statement is signed over the DSSE PAE by `openssl dgst -sha256 -sign`,
so nothing of ocibuild's own signing code is involved. Plain HTTP, loopback registries only.
"""
import base64
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request

IN_TOTO = "application/vnd.in-toto+json"
ENVELOPE = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ZERO_TIME = "0001-01-01T00:00:00Z"


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        # The headers as they came: lookups ignore case (ferro-oci-server's are lowercase).
        return resp.status, resp.headers, resp.read()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(base, repo, data):
    _, headers, _ = request("POST", f"{base}/v2/{repo}/blobs/uploads/")
    location = headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    request("PUT", f"{location}{sep}digest={digest(data)}", data,
            {"Content-Type": "application/octet-stream"})
    return {"digest": digest(data), "size": len(data)}


def get_manifest(base, repo, ref):
    try:
        _, _, body = request("GET", f"{base}/v2/{repo}/manifests/{ref}", None,
                             {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
        return json.loads(body)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def put_manifest(base, repo, ref, manifest, media_type):
    body = json.dumps(manifest, separators=(",", ":")).encode()
    _, headers, _ = request("PUT", f"{base}/v2/{repo}/manifests/{ref}", body,
                            {"Content-Type": media_type})
    return body, headers


def envelope(addr, repo, subject, key):
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{addr}/{repo}", "digest": {"sha256": subject.split(":", 1)[1]}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {"buildType": "https://ocibuild.invalid/test-attestation/v1",
                                "externalParameters": {}},
            "runDetails": {"builder": {"id": "test/supply/attest.py"}},
        },
    }
    payload = json.dumps(statement, separators=(",", ":")).encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(IN_TOTO), IN_TOTO.encode(), len(payload), payload)
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=pae,
                         capture_output=True, check=True).stdout
    return json.dumps({"payloadType": IN_TOTO, "payload": base64.b64encode(payload).decode(),
                       "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]},
                      separators=(",", ":")).encode()


def main():
    mode, addr, repo, subject, key = sys.argv[1:6]
    base = f"http://{addr}"
    env = envelope(addr, repo, subject, key)
    blob = put_blob(base, repo, env)
    tag = subject.replace(":", "-", 1)
    if mode == "att":
        existing = get_manifest(base, repo, f"{tag}.att")
        layers = existing["layers"] if existing else []
        layers.append({"mediaType": ENVELOPE, **blob,
                       "annotations": {"dev.cosignproject.cosign/signature": "",
                                       "predicateType": "https://slsa.dev/provenance/v1"}})
        config = json.dumps({"architecture": "", "config": {}, "created": ZERO_TIME,
                             "history": [{"created": ZERO_TIME} for _ in layers], "os": "",
                             "rootfs": {"diff_ids": [l["digest"] for l in layers], "type": "layers"}},
                            separators=(",", ":")).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               **put_blob(base, repo, config)},
                    "layers": layers}
        put_manifest(base, repo, f"{tag}.att", manifest, OCI_MANIFEST)
    elif mode == "referrer":
        _, _, image = request("GET", f"{base}/v2/{repo}/manifests/{subject}", None,
                              {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
        size = len(image)
        empty = put_blob(base, repo, b"{}")
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": IN_TOTO,
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
                    "layers": [{"mediaType": ENVELOPE, **blob}],
                    "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size},
                    "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"}}
        body = json.dumps(manifest, separators=(",", ":")).encode()
        _, headers = put_manifest(base, repo, digest(body), manifest, OCI_MANIFEST)
        if headers.get("OCI-Subject") is None:
            index = get_manifest(base, repo, tag) or {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                       "manifests": []}
            index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": digest(body),
                                       "size": len(body), "artifactType": IN_TOTO})
            put_manifest(base, repo, tag, index, OCI_INDEX)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
