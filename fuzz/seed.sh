#!/bin/sh
# Regenerates the committed seed corpus, fuzz/corpus/<target>/seed-*, from the
# repository: examples/*.json and *.rhai, the stdlib, and the JSON and Rhai
# string literals of the tests (src/manifest, src/script, tests/). Seeds are
# named seed-<origin>-<hash of the content>, so regenerating is stable; files
# libFuzzer adds while it runs (sha1 names) are left alone and not committed.
#
#     fuzz/seed.sh          # then commit fuzz/corpus/*/seed-*
set -eu
cd "$(dirname "$0")/.."
for t in manifest json lower; do
    mkdir -p "fuzz/corpus/$t"
    rm -f "fuzz/corpus/$t"/seed-*
done
exec python3 - <<'EOF'
import hashlib, json, os, re, sys
from pathlib import Path

MAX = 64 << 10  # no seed is bigger: libFuzzer's -max_len is about this too

def literals(path):
    """The string literals of a Rust file, unescaped (raw strings as they are)."""
    src = path.read_text()
    i, n, out = 0, len(src), []
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "'":
            m = re.compile(r"'(?:[^'\\\n]|\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.)'").match(src, i)
            i = m.end() if m else i + 1  # a char literal, else a lifetime
        elif c == "r" and re.compile(r'r#*"').match(src, i) and not (src[i - 1].isalnum() or src[i - 1] == "_"):
            m = re.compile(r'r(#*)"').match(src, i)
            end = '"' + m.group(1)
            j = src.find(end, m.end())
            out.append(src[m.end():j])
            i = j + len(end)
        elif c == '"':
            j, buf = i + 1, []
            while src[j] != '"':
                if src[j] == "\\":
                    e = src[j + 1]
                    if e == "\n":  # line continuation: skip the newline and indentation
                        j += 2
                        while src[j] in " \t\n\r":
                            j += 1
                        continue
                    if e == "u":
                        k = src.index("}", j)
                        buf.append(chr(int(src[j + 3:k], 16)))
                        j = k + 1
                        continue
                    if e == "x":
                        buf.append(chr(int(src[j + 2:j + 4], 16)))
                        j += 4
                        continue
                    buf.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(e, e))
                    j += 2
                else:
                    buf.append(src[j])
                    j += 1
            out.append("".join(buf))
            i = j + 1
        else:
            i += 1
    return out

def looks_like_json(s):
    t = s.lstrip(" \t\r\n\ufeff")
    if not t:
        return s != ""
    return t[0] in '{["-0123456789.+\'/' or t.startswith(("null", "true", "false", "nul", "True", "NaN", "Infinity"))

def looks_like_rhai(s):
    t = s.lstrip()
    return len(t) >= 8 and not t.startswith(("{", "[")) and bool(
        re.search(r"\bemit\(|\bpipeline\(|\bfn \w+\(|\bimport \"|\blet \w+ =|\bloop\b|;\s*$", s)
    )

seeds = {"manifest": {}, "json": {}, "lower": {}}

def add(target, origin, text):
    data = text.encode() if isinstance(text, str) else text
    if len(data) > MAX:
        return
    name = "seed-%s-%s" % (origin, hashlib.sha1(data).hexdigest()[:8])
    if data not in seeds[target].values():
        seeds[target][name] = data

for f in sorted(Path("examples").glob("*.json")):
    add("manifest", f.stem, f.read_text())
    add("json", f.stem, f.read_text())
for f in sorted(Path("examples").glob("*.rhai")) + sorted(Path("stdlib").glob("*.rhai")):
    add("lower", f.parent.name + "-" + f.stem, f.read_text())

json_files = ["src/manifest/json.rs", "src/manifest/parse.rs", "src/manifest/mod.rs", "tests/manifest_errors.rs"]
rhai_files = sorted(str(p) for p in Path("src/script").glob("*.rs")) + ["tests/script.rs", "tests/repl.rs"]
for f in json_files:
    for s in literals(Path(f)):
        if looks_like_json(s):
            add("json", Path(f).stem, s)
            if s.lstrip(" \t\r\n\ufeff").startswith("{"):
                add("manifest", Path(f).stem, s)
for f in rhai_files:
    for s in literals(Path(f)):
        if looks_like_rhai(s):
            add("lower", Path(f).stem, s)

# The edges the tests build with format!: the depth limit, the hash-set
# duplicate check of big objects, a byte order mark, -D parameters.
add("json", "depth-128", "[" * 128 + "]" * 128)
add("json", "depth-129", "[" * 129 + "]" * 129)
add("json", "depth-127-object", '{"a":' * 127 + "1" + "}" * 127)
add("json", "bom", '\ufeff{"a": [1, 2.5e-3, "\\u00e9\\ud83d\\ude00"]}')
big = "{" + ",".join('"k%d": %d' % (i, i) for i in range(20))
add("json", "big-object", big + "}")
add("json", "big-object-dup", big + ', "k17": 0}')
add("manifest", "v1-sources", json.dumps({
    "pipeline": {"build": {"pipeline": {"stages": [{"name": "org.osbuild.noop"}]}, "runner": "org.osbuild.linux"},
                 "stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "h"}}],
                 "assembler": {"name": "org.osbuild.tar", "options": {"filename": "a.tar"}}},
    "sources": {"org.osbuild.files": {"urls": {}}}}, indent=2))
add("manifest", "base", '{"base": "no-such-tree", "stages": [{"name": "org.osbuild.noop"}]}')
add("lower", "params", '//-D suite=trixie\n//-D n=3\nimport "debian" as debian;\n'
    'let n = param("n", 1);\nfor i in 0..n { emit(debian::image(`vm${i}`, #{ suite: param("suite", "bookworm") })); }\n')

total = 0
for target, files in seeds.items():
    for name, data in sorted(files.items()):
        Path("fuzz/corpus", target, name).write_bytes(data)
        total += len(data)
    print("%-8s %4d seeds" % (target, len(files)))
print("%d bytes in all" % total)
EOF
