#!/usr/bin/env python3
"""Runs `<binary> --config=<copy> --check_config` on every shipped service config.

  check_configs.py QSIGND [CONFIG...]   default: deploy/config/*.textproto, k8s/base/config/*.textproto

--check_config opens every file a config names, and the shipped configs name files that exist
only in production (/run/credentials/qsign-<svc>.service/..., /run/secrets/qsign/..., /etc/qsign/
tls/..., the vendor's /opt/hsm module). So each config is copied with those prefixes rewritten into
a temporary directory holding placeholders: a real internal CA and EC P-256 certificates (openssl),
random 64-byte secrets (mode 0600), and hsm.module pointing at SoftHSM2's module. Everything else
(allow-list groups, peers, URLs, ranges, sections) is checked as shipped. Exit 1 naming every
config that fails, with the binary's message.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
SOFTHSM = [p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                       "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so") if os.path.exists(p)]
# Production path prefixes -> a directory under the placeholder root.
PREFIXES = [(re.compile(r"/run/credentials/(qsign-[\w-]+)\.service/"), r"run-credentials/\1/"),
            (re.compile(r"/run/secrets/qsign/"), "run-secrets/"),
            (re.compile(r"/etc/qsign/"), "etc-qsign/")]
CERT_NAMES = ("tls.crt", "https.crt", "ca.crt", "internal-ca.crt", "db-ca.crt")
KEY_NAMES = ("tls.key", "https.key")


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(tmp):
    """An internal CA and one leaf (SAN placeholder.qsign.internal) with its key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=placeholder CA", cwd=tmp)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=placeholder", cwd=tmp)
    with open(os.path.join(tmp, "leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:placeholder.qsign.internal\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.pem", cwd=tmp)


def placeholder(path, pki):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        return
    name = os.path.basename(path)
    if name in ("ca.crt", "internal-ca.crt", "db-ca.crt"):
        shutil.copy(os.path.join(pki, "ca.pem"), path)
    elif name in CERT_NAMES:
        shutil.copy(os.path.join(pki, "leaf.pem"), path)
    elif name in KEY_NAMES:
        shutil.copy(os.path.join(pki, "leaf.key"), path)
    elif name in ("services", "operators", "relying-parties"):
        with open(path, "w") as f:
            f.write("placeholder %s placeholder\n" % ("0" * 64) if name == "relying-parties"
                    else "placeholder %s\n" % ("0" * 64))
    else:  # PINs, peppers, client secrets, token keys, pgpass.
        with open(path, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)


def localize(text, root, pki):
    def repl_path(m):
        path = m.group(0)
        for rx, sub in PREFIXES:
            if rx.match(path):
                local = os.path.join(root, rx.sub(sub, path, count=1))
                placeholder(local, pki)
                return local
        return path
    text = re.sub(r"(?<![\w.])/(?:run|etc)/[^\s\"']+", repl_path, text)
    if SOFTHSM:
        text = re.sub(r'(\bmodule:\s*)"[^"]*"', r'\1"%s"' % SOFTHSM[0], text)
    return text


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    binary = argv[1]
    configs = argv[2:] or sorted(glob.glob(os.path.join(ROOT, "deploy", "config", "*.textproto")) +
                                 glob.glob(os.path.join(ROOT, "k8s", "base", "config", "*.textproto")))
    if not configs:
        print("FAIL: no configs found")
        return 1
    tmp = tempfile.mkdtemp(prefix="qsign-check-configs-")
    failed = 0
    try:
        pki = os.path.join(tmp, "pki")
        os.makedirs(pki)
        make_pki(pki)
        for i, config in enumerate(configs):
            root = os.path.join(tmp, "c%d" % i)
            copy = os.path.join(root, os.path.basename(config))
            os.makedirs(root)
            with open(config) as f:
                text = localize(f.read(), root, pki)
            with open(copy, "w") as f:
                f.write(text)
            proc = subprocess.run([binary, "--config=" + copy, "--check_config"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True)
            label = os.path.relpath(config, ROOT)
            if proc.returncode == 0:
                print("ok   %s: %s" % (label, proc.stdout.strip().replace(copy, "<copy>")))
            else:
                failed += 1
                print("FAIL %s (exit %d):\n  %s" % (label, proc.returncode,
                                                  proc.stdout.strip().replace(tmp, "<tmp>").replace("\n", "\n  ")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("service configs: %s" % ("%d FAILED" % failed if failed else "all pass --check_config"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
