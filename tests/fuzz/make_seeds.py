#!/usr/bin/env python3
"""Writes the seed corpora corpus/<target>/ (valid and near-valid inputs of each parser).
Run from anywhere; it needs openssl on PATH. Crash reproducers are added by hand as
corpus/<target>/regress-<what> and are never overwritten."""
import base64, json, os, struct, subprocess, tempfile, pathlib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def put(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def field(tag, value):
    if isinstance(value, str):
        value = value.encode()
    return bytes([tag]) + struct.pack(">I", len(value)) + value


def micros(t):
    return struct.pack(">q", t * 1_000_000)


def statements():
    login = (b"QSIGN-CONSENT-STATEMENT-V1\n" + field(1, b"\x01") + field(2, "req-1") +
             field(3, "alice") + field(4, micros(1_800_000_000)) + field(5, micros(1_800_000_300)) +
             field(6, "Log in to eID portal, code 4721") + field(0x10, "4721") +
             field(0x11, "Firefox on Linux"))
    put("statement_fuzz", "login", login)
    doc = field(1, "contract.pdf") + field(2, "contract.pdf") + field(3, b"\x11" * 32)
    sign = (b"QSIGN-CONSENT-STATEMENT-V1\n" + field(1, b"\x02") + field(2, "req-2") +
            field(3, "alice") + field(4, micros(1_800_000_000)) + field(5, micros(1_800_000_300)) +
            field(6, "Sign \"contract.pdf\"") + field(0x20, "cred-1") + field(0x21, "e-Uprava") +
            field(0x22, "2.16.840.1.101.3.4.2.1") + field(0x23, b"\xaa" * 32) +
            field(0x24, doc))
    put("statement_fuzz", "sign", sign)
    put("statement_fuzz", "challenge",
        b"QSIGN-CONSENT-CHALLENGE-V1\n" + field(1, "dev-1") + field(2, micros(1_800_000_000)) +
        field(3, b"\x00" * 16))


def pb_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_bytes(num, value):
    if isinstance(value, str):
        value = value.encode()
    return pb_varint(num << 3 | 2) + pb_varint(len(value)) + value


def pb_uint(num, value):
    return pb_varint(num << 3) + pb_varint(value)


def sads():
    ts = lambda s: pb_uint(1, s)
    claims = (pb_bytes(1, b"\x01" * 16) + pb_bytes(2, "account") + pb_bytes(3, "cred-1") +
              pb_bytes(4, "2.16.840.1.101.3.4.2.1") + pb_bytes(5, b"a" * 32) + pb_uint(6, 1) +
              pb_bytes(7, ts(1_799_999_990)) + pb_bytes(8, ts(1_800_000_100)) +
              pb_bytes(9, "req-1"))
    put("sad_fuzz", "claims-signed", b"\x01" + claims)
    signed = pb_bytes(1, claims) + pb_bytes(2, "qsign-sad-1") + pb_bytes(3, b"\x30\x06\x02\x01\x01\x02\x01\x01")
    put("sad_fuzz", "sad-bad-signature", b"\x00" + base64.urlsafe_b64encode(signed).rstrip(b"="))
    put("sad_fuzz", "sad-garbage", b"\x00not-a-sad")


def tokens():
    def f(v):
        v = v.encode() if isinstance(v, str) else v
        return bytes([len(v)]) + v
    rest = (f("0123456789abcdef0123456789abcdef") + f("alice") + micros(1_799_999_000) +
            micros(1_799_999_000) + micros(1_800_000_900) + b"\x02")
    put("session_token_fuzz", "payload-signed", b"\x01" + rest)
    revoked = (f("a" * 32) + f("alice") + micros(1_799_999_000) + micros(1_799_999_000) +
               micros(1_800_000_900) + b"\x02")
    put("session_token_fuzz", "payload-logged-out", b"\x01" + revoked)
    payload = b"qst1" + f("qsign-session-1") + rest
    tok = base64.urlsafe_b64encode(payload).rstrip(b"=") + b"." + base64.urlsafe_b64encode(b"\x30\x00").rstrip(b"=")
    put("session_token_fuzz", "token-bad-signature", b"\x00" + tok)


def identity():
    for i, v in enumerate(["ana.petrovic@example.rs", "A.B+tag@sub.example.co.rs",
                           "x@xn--80ak6aa92e.xn--90a3ac", "bad..dot@example.rs"]):
        put("identity_input_fuzz", f"email-{i}", b"\x00" + v.encode())
    for i, v in enumerate(["0101990710008", "0101990719498", "3102990710008", "0101000710002"]):
        put("identity_input_fuzz", f"jmbg-{i}", b"\x01" + v.encode())
    for i, v in enumerate(["Ana", "Петровић", "Jean-Luc O'Neil Jr.", "Đorđe Šćepanović"]):
        put("identity_input_fuzz", f"name-{i}", b"\x02" + v.encode())
    put("identity_input_fuzz", "text-0", b"\x03" + "ID card seen in person\tok".encode())
    for i, v in enumerate(["ZN0Y-N9FJ-X8RQ-9ENQ", "zn0y n9fj x8rq 9enq", "ILO0-0000-0000-0000"]):
        put("identity_input_fuzz", f"code-{i}", b"\x04" + v.encode())


def configs():
    for p in sorted((ROOT / "deploy" / "config").glob("*.textproto")):
        put("config_fuzz", p.stem, p.read_bytes())
    put("config_fuzz", "laptop", """listen: "127.0.0.1:7443"
insecure_dev: true
create_missing_keys: true
database { conninfo: "host=/tmp dbname=qsign" pool_size: 4 }
hsm { token_label: "qsign" pin_file: "/tmp/pin" }
observability { metrics_listen: "127.0.0.1:9464" health_listen: "127.0.0.1:8081" }
signer {}
consent { pin_pepper_file: "/tmp/pepper" }
identity {}
lifecycle { http_listen: "127.0.0.1:8080" }
gateway { client_secret_file: "/tmp/s" relying_parties_file: "/tmp/rp" }
""")


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, input=input).stdout


def pki(tmp):
    t = pathlib.Path(tmp)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(t / "ca.key"), "-out", str(t / "ca.pem"), "-subj", "/CN=fuzz CA",
            "-days", "30")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(t / "ee.key"), "-out", str(t / "ee.csr"), "-subj", "/CN=fuzz EE")
    openssl("x509", "-req", "-in", str(t / "ee.csr"), "-CA", str(t / "ca.pem"), "-CAkey",
            str(t / "ca.key"), "-out", str(t / "ee.pem"), "-days", "30", "-set_serial", "0x1234")
    return t


def der_and_ocsp():
    with tempfile.TemporaryDirectory() as tmp:
        t = pki(tmp)
        cert = openssl("x509", "-in", str(t / "ee.pem"), "-outform", "DER")
        put("der_fuzz", "certificate", b"\x00" + cert)
        spki = openssl("pkey", "-in", str(t / "ee.key"), "-pubout", "-outform", "DER")
        put("der_fuzz", "spki", b"\x00" + spki)
        put("der_fuzz", "ecparams-p256", b"\x01" + bytes.fromhex("06082a8648ce3d030107"))
        put("der_fuzz", "ecparams-p384", b"\x01" + bytes.fromhex("06052b81040022"))
        point = spki[-65:]
        put("der_fuzz", "ecpoint-wrapped", b"\x02" + b"\x04\x41" + point)
        put("der_fuzz", "ecpoint-raw", b"\x02" + point)
        put("der_fuzz", "rsa-parts", b"\x03" + b"\xc1" * 256 + b"\x01\x00\x01" + b"\x00" * 253)
        for nonce in (False, True):
            args = ["ocsp", "-issuer", str(t / "ca.pem"), "-cert", str(t / "ee.pem"),
                    "-reqout", str(t / "req.der"), "-no_nonce" if not nonce else "-nonce"]
            openssl(*args)
            req = (t / "req.der").read_bytes()
            put("ocsp_fuzz", f"post{'-nonce' if nonce else ''}", b"\x00" + req)
            put("ocsp_fuzz", f"get{'-nonce' if nonce else ''}", b"\x01" + req)
            put("der_fuzz", f"ocsp-request{'-nonce' if nonce else ''}", b"\x00" + req)
        openssl("ocsp", "-sha256", "-issuer", str(t / "ca.pem"), "-cert", str(t / "ee.pem"),
                "-cert", str(t / "ca.pem"), "-reqout", str(t / "req2.der"))
        put("ocsp_fuzz", "post-two-sha256", b"\x00" + (t / "req2.der").read_bytes())
        serial = bytes.fromhex("1234567890abcdef1234567890abcdef12345672")
        put("ocsp_fuzz", "ours-good-post", b"\x04" + serial)
        put("ocsp_fuzz", "ours-revoked-nonce-post", b"\x04" + serial[:-1] + b"\x70" + b"\x04\x10" + b"n" * 16)
        put("ocsp_fuzz", "ours-unknown-get", b"\x05" + serial[:-1] + b"\x71")
        put("ocsp_fuzz", "get-path", b"\x03" + base64.b64encode((t / "req.der").read_bytes()))


METHODS = ["info", "oauth2/token", "credentials/list", "credentials/info",
           "credentials/authorize", "credentials/authorizeCheck", "signatures/signHash",
           "signatures/signDoc", "oauth2/authorize", "nope"]


def csc():
    h = base64.b64encode(b"\xaa" * 32).decode()
    bodies = {
        "info": {"lang": "en-US"},
        "oauth2/token": "grant_type=client_credentials&client_id=eservice&client_secret=eservice-secret",
        "credentials/list": {"userID": "alice", "credentialInfo": True, "certificates": "chain",
                             "certInfo": True, "maxResults": 10},
        "credentials/info": {"credentialID": "cred-1", "certificates": "single", "certInfo": True,
                             "authInfo": True},
        "credentials/authorize": {"credentialID": "cred-1", "numSignatures": 1, "hashes": [h],
                                  "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                                  "description": "contract.pdf", "clientData": "x"},
        "credentials/authorizeCheck": {"credentialID": "cred-1", "authorizationHandle": "ah1.x.y"},
        "signatures/signHash": {"credentialID": "cred-1", "SAD": "sad", "hashes": [h],
                                "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
                                "signAlgo": "1.2.840.10045.4.3.2"},
        "signatures/signDoc": {"credentialID": "cred-1"},
        "oauth2/authorize": {},
        "nope": {},
    }
    for i, m in enumerate(METHODS):
        body = bodies[m]
        safe = m.replace("/", "-")
        if isinstance(body, str):
            put("csc_fuzz", f"{safe}-form", bytes([i, 1 | 4]) + body.encode())
            put("csc_fuzz", f"{safe}-json", bytes([i, 1]) + json.dumps(
                dict(kv.split("=") for kv in body.split("&"))).encode())
        else:
            put("csc_fuzz", f"{safe}", bytes([i, 0]) + json.dumps(body).encode())
    put("csc_fuzz", "header-in-body", bytes([2, 3]) + b"Bearer at1.AAAA.BBBB\n{}")


def simple_pdf(pages):
    objs = ["<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(f"{3 + i} 0 R" for i in range(pages)), pages)]
    for i in range(pages):
        objs.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>")
    out = b"%PDF-1.7\n"
    offsets = []
    for n, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{o}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def pdfs():
    put("pdf_fuzz", "one-page", simple_pdf(1))
    put("pdf_fuzz", "three-pages", simple_pdf(3))
    sig = simple_pdf(1) + (b"4 0 obj\n<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached "
                           b"/ByteRange [0 10 20 30] /Contents <3000> >>\nendobj\n%%EOF\n")
    put("pdf_fuzz", "signature-dict", sig)


if __name__ == "__main__":
    statements()
    sads()
    tokens()
    identity()
    configs()
    der_and_ocsp()
    csc()
    pdfs()
