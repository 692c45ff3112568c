"""A throwaway CA and a site certificate signed by it, made with openssl:
for the tests and the demo that serve Odoo over https on a rig host."""

import os
import subprocess

SERVER = "odoo.example.com"


def openssl(*args, stdin=None):
    proc = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=False, timeout=30
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def make_ca_and_certificate(folder, cert, key, server=SERVER):
    """A throwaway CA in FOLDER (its key never leaves it) and a certificate for
    SERVER (the site SERVER) signed by it, written to CERT and KEY (mode 0600). Returns the CA
    file and the base64 SHA-256 of the certificate's public key (Chromium's
    --ignore-certificate-errors-spki-list)."""
    ca, ca_key = os.path.join(folder, "ca.pem"), os.path.join(folder, "ca.key")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=odoo_websocket test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    os.makedirs(os.path.dirname(key), exist_ok=True)
    old = os.umask(0o077)  # the key is never readable by others, not even briefly
    try:
        request = openssl("req", *ec, "-keyout", key, "-subj", f"/CN={server}")
    finally:
        os.umask(old)
    extensions = os.path.join(folder, "server.ext")
    with open(extensions, "w", encoding="ascii") as handle:
        handle.write(
            f"subjectAltName=DNS:{server}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
    openssl("x509", "-req", "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-extfile", extensions, "-out", cert, stdin=request)  # fmt: skip
    public = openssl("x509", "-in", cert, "-noout", "-pubkey")
    der = openssl("pkey", "-pubin", "-outform", "DER", stdin=public)
    spki = openssl("dgst", "-sha256", "-binary", stdin=der)
    return ca, openssl("base64", "-A", stdin=spki).decode().strip()
