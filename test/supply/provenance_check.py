"""Checks of ocibuild's SLSA provenance with the in-toto projects' own Python packages.

    provenance_check.py statement FILE NAME DIGEST
        FILE is an in-toto Statement v1 whose one subject is NAME at DIGEST (sha256:<hex>)
        and whose predicate is SLSA Provenance v1. Parsed strictly by in-toto-attestation's
        protos (an unknown or mistyped field fails), then checked with its validate().
    provenance_check.py envelope FILE PUB OUT_DIR
        FILE is a DSSE envelope of an in-toto statement. The in-toto package parses it and
        verifies its signature with the P-256 public key PUB (PEM); the payload, the first
        signature (DER) and the PAE bytes are written to OUT_DIR (payload.json, sig.der,
        pae.bin) for `openssl dgst -verify`.

Exit status 0 when every check holds; otherwise one line on stderr and status 1.
"""

import base64
import json
import sys

import google.protobuf.json_format as pb_json
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


def check_statement(path, name, digest):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    proto = statement_pb2.Statement()
    pb_json.Parse(text, proto)  # strict: unknown fields raise
    statement = Statement.copy_from_pb(proto)
    statement.validate()
    if proto.predicate_type != "https://slsa.dev/provenance/v1":
        fail(f"predicateType {proto.predicate_type}")
    subjects = [(s.name, dict(s.digest)) for s in proto.subject]
    want = [(name, {"sha256": digest.removeprefix("sha256:")})]
    if subjects != want:
        fail(f"subject {subjects}, expected {want}")
    provenance = provenance_pb2.Provenance()
    pb_json.ParseDict(json.loads(text)["predicate"], provenance)  # strict too
    definition = provenance.build_definition
    if not definition.build_type.startswith("https://"):
        fail(f"buildType {definition.build_type!r}")
    if not definition.external_parameters:
        fail("no externalParameters")
    if not provenance.run_details.builder.id:
        fail("no builder id")
    for rd in definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(rd).validate()
    metadata = provenance.run_details.metadata
    if not metadata.HasField("started_on") or not metadata.HasField("finished_on"):
        fail("no startedOn/finishedOn")
    if metadata.finished_on.ToSeconds() < metadata.started_on.ToSeconds():
        fail("finishedOn before startedOn")


def check_envelope(path, pub, out):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from in_toto.models.metadata import Envelope
    from securesystemslib.signer import SSlibKey

    with open(path, "rb") as f:
        raw = json.loads(f.read())
    sig = base64.b64decode(raw["signatures"][0]["sig"])
    envelope = Envelope.from_dict(raw)
    if envelope.payload_type != PAYLOAD_TYPE:
        fail(f"payloadType {envelope.payload_type}")
    with open(pub, "rb") as f:
        crypto_key = load_pem_public_key(f.read())
    derived = SSlibKey.from_crypto(crypto_key)
    # cosign's envelopes carry an empty keyid: the key is named the same way.
    key = SSlibKey("", derived.keytype, derived.scheme, derived.keyval)
    envelope.verify([key], 1)  # raises VerificationError on a bad signature
    payload = envelope.payload
    pae = b"DSSEv1 %d %s %d %s" % (
        len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload
    )
    for name, data in (("payload.json", payload), ("sig.der", sig), ("pae.bin", pae)):
        with open(f"{out}/{name}", "wb") as f:
            f.write(data)


def main(argv):
    try:
        if len(argv) == 5 and argv[1] == "statement":
            check_statement(argv[2], argv[3], argv[4])
        elif len(argv) == 5 and argv[1] == "envelope":
            check_envelope(argv[2], argv[3], argv[4])
        else:
            fail(__doc__.strip().splitlines()[2])
    except SystemExit:
        raise
    except Exception as e:  # any parse or verification error is a failed check
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main(sys.argv)
