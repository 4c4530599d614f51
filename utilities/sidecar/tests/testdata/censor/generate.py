#!/usr/bin/env python3
"""Writes the censoring fixtures: secrets/, input/ and the expected output/.

output/ is computed here, independently of the Rust code, with a direct transcription of
upstream's rules: secrets are every file under secrets/ in byte order (skipping `..` entries),
plus docker and INI extras after their file; each secret adds its trimmed form and base64 of the
raw and trimmed forms unless it is blank or true/false; at each position the first-added pattern
that matches is replaced by X's and the scan resumes after it. The fixture texts keep secrets
apart, so the sliding window cannot change the result.

Run from this directory: python3 generate.py
"""
import base64
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

SERVICE_ACCOUNT = json.dumps({
    "type": "service_account",
    "project_id": "tetrapod-fixture",
    "private_key_id": "0123456789abcdef0123456789abcdef01234567",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEfixturefixturefixture\n-----END PRIVATE KEY-----\n",
    "client_email": "fixture@tetrapod-fixture.iam.gserviceaccount.com",
}, indent=2) + "\n"

DOCKERCFG = '{"registry.example.com":{"username":"ci","password":"dockerpass","auth":"Y2k6ZG9ja2VycGFzcw==","email":"ci@example.com"}}'
DOCKERCONFIGJSON = '{"auths":{"quay.example.com":{"username":"robot","password":"quaypass","auth":"cm9ib3Q6cXVheXBhc3M="}}}'
AWSCRED = "[default]\naws_access_key_id = AKIAEXAMPLEKEY42\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLE\n"

SECRETS = {
    "api-token": "tok-3141592653\n",
    "db/password": "correct horse battery staple",
    "service-account.json": SERVICE_ACCOUNT,
    ".dockercfg": DOCKERCFG,
    ".dockerconfigjson": DOCKERCONFIGJSON,
    ".awscred": AWSCRED,
    "feature-flag": "true\n",
    "blank": "   \n",
    "..data/ignored-secret": "visible-in-output",
    "..2026_11_27_00_00_00.000000001/also-ignored": "still-visible",
}
# The test adds this one at run time as the symlink secrets/zz-link to a file outside secrets/.
LINKED_SECRET = "symlinked-secret-value"


def b64(s):
    return base64.b64encode(s.encode()).decode()


def load_secrets():
    out = []
    for name in sorted(SECRETS, key=lambda n: n.encode()):
        if any(part.startswith("..") for part in name.split("/")):
            continue
        raw = SECRETS[name]
        out.append(raw)
        base = name.rsplit("/", 1)[-1]
        if base == ".awscred":
            for line in raw.splitlines():
                if "=" in line:
                    out.append(line.split("=", 1)[1].strip())
        elif base == ".dockercfg":
            for entry in json.loads(raw).values():
                out += [entry[k] for k in ("auth", "password") if entry.get(k)]
        elif base == ".dockerconfigjson":
            for entry in json.loads(raw)["auths"].values():
                out += [entry[k] for k in ("auth", "password") if entry.get(k)]
    out.append(LINKED_SECRET)
    return out


def patterns(secrets):
    pats = []
    for s in secrets:
        t = s.strip()
        if not t or t.lower() in ("true", "false"):
            continue
        pats.append(t)
        pats.append(b64(s))
        if t != s:
            pats.append(b64(t))
    return [p.encode() for p in pats]


def censor(data, pats):
    out = bytearray(data)
    i = 0
    while i < len(data):
        for p in pats:
            if data.startswith(p, i):
                out[i:i + len(p)] = b"X" * len(p)
                i += len(p)
                break
        else:
            i += 1
    return bytes(out)


def long_log():
    lines = []
    for n in range(300):
        pad = "." * (n % 37)
        lines.append(f"line {n:03d}{pad} connecting with correct horse battery staple then quaypass")
        if n % 50 == 7:
            lines.append("service account: " + b64(SERVICE_ACCOUNT))
        if n % 60 == 11:
            lines.append("aws " + "AKIAEXAMPLEKEY42" + " / " + "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLE")
    lines.append("full service account follows")
    lines.append(SERVICE_ACCOUNT)
    return "\n".join(lines) + "\n"


INPUT = {
    "logs/one.log": (
        "starting job\n"
        "using token tok-3141592653 for the api\n"
        f"trimmed base64 {b64('tok-3141592653')} and raw base64 {b64('tok-3141592653' + chr(10))}\n"
        "feature flag stays true and TRUE\n"
        "kubernetes bookkeeping stays: visible-in-output still-visible\n"
        "blank secrets censor nothing:    \n"
    ),
    "logs/two.log": long_log(),
    "logs/three.log": "",
    "artifacts/build.log": (
        "docker login with dockerpass (auth Y2k6ZG9ja2VycGFzcw==) as ci@example.com\n"
        f"whole config: {DOCKERCONFIGJSON}\n"
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLE\n"
        f"linked: {LINKED_SECRET} {b64(LINKED_SECRET)}\n"
        f"db password base64: {b64('correct horse battery staple')}\n"
    ),
    "artifacts/exclude": "excluded: tok-3141592653 quaypass\n",
    "artifacts/nested/deeper/exclude": "also excluded: correct horse battery staple\n",
    "artifacts/nested/deeper/kept.txt": "not excluded: correct horse battery staple\n",
    "artifacts/empty.txt": "",
    "artifacts/metadata.json": '{"token":"tok-3141592653","flag":true}\n',
    "artifacts/archive/a.txt": "in the archive: tok-3141592653 and dockerpass\n",
    "artifacts/archive/sub/b.txt": "nested in the archive: AKIAEXAMPLEKEY42\n",
    "artifacts/archive/sub/empty": "",
}

EXCLUDED = {"artifacts/exclude", "artifacts/nested/deeper/exclude"}


def write(root, files, transform=lambda name, data: data):
    shutil.rmtree(root, ignore_errors=True)
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(transform(name, text.encode()))


def main():
    write(os.path.join(HERE, "secrets"), SECRETS)
    write(os.path.join(HERE, "input"), INPUT)
    pats = patterns(load_secrets())
    write(os.path.join(HERE, "output"), INPUT,
          lambda name, data: data if name in EXCLUDED else censor(data, pats))


if __name__ == "__main__":
    main()
