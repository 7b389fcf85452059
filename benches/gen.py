#!/usr/bin/env python3
"""Deterministic inputs for the benches (build.sh, publish.sh, deploy.sh; seeded;
same bytes on every machine).

  gen.py small DIR N     N small packages under DIR/{bin,etc,share}/pNNN
  gen.py big DIR MIB     MIB MiB of log-like text in DIR/share/big/logs/part-K.log
  gen.py toml FILE N     a pipeline.toml declaring the N packages of `small`
                         (p000 ... in order, so the first N of N+1 are the
                         same packages), formats ["deb", "rpm"]; environment
                         `dev`; $GEN_VERSION (default 1.2.0) and
                         $GEN_EPOCH (default 1700000000) set [project]
  gen.py files DIR MIB N [words|pool]
                          N text files holding MIB MiB together, spread over
                          4 packages: DIR/share/pK/dDD/fNNNNN.txt (deploy bench);
                          `words`: random words (xz about 1:3.5), `pool`:
                          lines from a pool of 8192 (xz about 1:20)
"""

import os
import random
import sys

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
    "mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    "xray yankee zulu request response cache store blob digest signature key "
    "package payload archive header build deploy promote publish verify index "
    "timeout retry backoff worker queue thread socket buffer stream chunk"
).split()


def text(rng, size):
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        line = line.capitalize() + ".\n"
        out.append(line)
        n += len(line)
    return "".join(out)[:size]


def small(root, count):
    rng = random.Random(1234)
    for i in range(count):
        name = f"p{i:03d}"
        os.makedirs(f"{root}/bin", exist_ok=True)
        os.makedirs(f"{root}/etc", exist_ok=True)
        os.makedirs(f"{root}/share/{name}", exist_ok=True)
        with open(f"{root}/bin/{name}", "w") as f:
            f.write(f"#!/bin/sh\n# {name}: generated benchmark program.\nset -eu\n")
            for j in range(rng.randint(40, 80)):
                f.write(f'echo "{name} step {j}: {rng.choice(WORDS)} {rng.randint(0, 99999)}"\n')
        os.chmod(f"{root}/bin/{name}", 0o755)
        with open(f"{root}/etc/{name}.conf", "w") as f:
            f.write(f"# {name} configuration\n")
            for j in range(rng.randint(20, 40)):
                f.write(f"{rng.choice(WORDS)}_{j} = {rng.randint(0, 1 << 20)}\n")
        for k in range(3):
            with open(f"{root}/share/{name}/data{k}.txt", "w") as f:
                f.write(text(rng, rng.randint(2048, 6144)))


def big(root, mib):
    rng = random.Random(5678)
    d = f"{root}/share/big/logs"
    os.makedirs(d, exist_ok=True)
    parts = 8
    per = mib * 1024 * 1024 // parts
    levels = ["INFO"] * 12 + ["DEBUG"] * 6 + ["WARN"] * 2 + ["ERROR"]
    methods = ["GET"] * 8 + ["POST"] * 3 + ["PUT", "DELETE"]
    paths = ["/api/v1/users", "/api/v1/orders", "/api/v2/items", "/static/js", "/health", "/api/v1/search"]
    hosts = [f"web-{i:02d}" for i in range(24)]
    statuses = [200] * 30 + [201, 204, 301, 304, 400, 401, 403, 404, 404, 500, 502]
    agents = ["curl/8.4.0", "Mozilla/5.0 (X11; Linux x86_64)", "Go-http-client/2.0", "python-requests/2.31", "kube-probe/1.28"]
    t = 1700000000000
    for k in range(parts):
        with open(f"{d}/part-{k}.log", "w") as f:
            n = 0
            buf = []
            while n < per:
                t += rng.randint(0, 40)
                s, ms = divmod(t, 1000)
                line = (
                    f"{s}.{ms:03d} {rng.choice(levels):5} {rng.choice(hosts)} "
                    f"req={rng.getrandbits(32):08x} {rng.choice(methods)} {rng.choice(paths)}/{rng.randint(1, 99999)}"
                    f"?page={rng.randint(1, 20)} status={rng.choice(statuses)} "
                    f"dur={rng.randint(1, 5000) / 10}ms bytes={rng.randint(0, 200000)} "
                    f'ua="{rng.choice(agents)}" msg="{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(WORDS)}"\n'
                )
                buf.append(line)
                n += len(line)
                if len(buf) >= 4096:
                    f.write("".join(buf))
                    buf = []
            f.write("".join(buf))
            f.truncate(per)


def toml(path, count):
    """The pipeline.toml of `small`'s first `count` packages."""
    out = [
        "[project]",
        'name = "many"',
        f'version = "{os.environ.get("GEN_VERSION", "1.2.0")}"',
        f"source_date_epoch = {os.environ.get('GEN_EPOCH', '1700000000')}",
        "",
        "[environments.dev]",
        "",
    ]
    for i in range(count):
        name = f"p{i:03d}"
        out += [
            f"[packages.{name}]",
            f'summary = "{name} benchmark package"',
            'arch = "all"',
            'license = "MIT"',
            'maintainer = "Ops <ops@example.com>"',
            'formats = ["deb", "rpm"]',
            "files = [",
            f'  {{ src = "bin/{name}", dst = "/usr/bin/{name}", mode = "0755" }},',
            f'  {{ src = "etc/{name}.conf", dst = "/etc/{name}/{name}.conf", config = true }},',
            f'  {{ src = "share/{name}/", dst = "/usr/share/{name}/" }},',
            "]",
            "",
        ]
    with open(path, "w") as f:
        f.write("\n".join(out))


def files(root, mib, count, kind="words", packages=4):
    rng = random.Random(9012)
    # `pool`: lines picked from a fixed pool (quick to make, very compressible).
    pool = [text(rng, rng.randint(40, 160)).rstrip("\n") + "\n" for _ in range(8192)]
    per = mib * 1024 * 1024 // count
    for i in range(count):
        d = f"{root}/share/p{i % packages}/d{(i // packages) // 100:02d}"
        os.makedirs(d, exist_ok=True)
        if kind == "words":
            body = text(rng, per)
        else:
            buf, n = [], 0
            while n < per:
                line = rng.choice(pool)
                buf.append(line)
                n += len(line)
            body = "".join(buf)[:per]
        with open(f"{d}/f{i:05d}.txt", "w") as f:
            f.write(body)


if __name__ == "__main__":
    what, root, arg = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if what == "files":
        files(root, arg, int(sys.argv[4]), *sys.argv[5:6])
    else:
        {"small": small, "big": big, "toml": toml}[what](root, arg)
