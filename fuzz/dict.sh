#!/bin/sh
# Regenerates the libFuzzer dictionaries: fuzz/json.dict (targets json and
# manifest) and fuzz/rhai.dict (target lower). Fixed tokens are below; the
# stage and assembler names, their option names and enum values come from the
# built-in registry (`osbuild stages --json`), the function names from the
# stdlib and src/script/api.rs. Needs jq.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --locked --bin osbuild
osbuild=target/debug/osbuild
names=$($osbuild stages --json | jq -r '.stages[].name, .assemblers[].name' | sort -u)
schemas=$(for n in $names; do $osbuild stages --json "$n"; done)
props=$(printf '%s\n' "$schemas" | jq -r '.. | objects | .properties? // empty | keys[]' | sort -u)
enums=$(printf '%s\n' "$schemas" | jq -r '.. | objects | .enum? // empty | .[] | strings' | sort -u)
functions=$( (grep -ho '^\(private \)\?fn [a-z_0-9]*' stdlib/*.rhai | awk '{print $NF}'
    grep -hoz 'register_\(fn\|get\|set\)(\s*"[a-z_]*"' src/script/api.rs | tr '\0' '\n' | grep -o '"[a-z_]*"' | tr -d '"') |
    sort -u)

quoted() { for w in "$@"; do printf '"\\"%s\\""\n' "$w"; done; }
plain() { for w in "$@"; do printf '"%s"\n' "$w"; done; }

{
    cat <<'EOF'
# libFuzzer dictionary for the `json` and `manifest` targets: JSON syntax, the
# parser's edges (escapes, surrogates, numbers, a BOM), the manifest keys, and
# the registry's stage names, option names and enum values. fuzz/dict.sh
# regenerates it.
"{"
"}"
"["
"]"
":"
","
"\""
"null"
"true"
"false"
"-"
"-0"
"1e"
"E+"
"e-"
".5"
"1.0"
"18446744073709551616"
"-9223372036854775809"
"1e400"
"5e-324"
"\\u"
"\\u0000"
"\\uD83D\\uDE00"
"\\uD800"
"\\uDC00"
"\\\\"
"\\\""
"\\/"
"\\n"
"\\t"
"\xef\xbb\xbf"
"\xc3\xa9"
"\xf0\x9f\x98\x80"
"\xe2\x80\x8b"
"\x0a"
"\x09"
"\x0d"
"//"
"'"
"NaN"
"Infinity"
"True"
"None"
EOF
    # shellcheck disable=SC2086
    quoted name build runner base stages assembler assembly_base pipeline sources options $names $props $enums
} >fuzz/json.dict

{
    cat <<'EOF'
# libFuzzer dictionary for the `lower` target: Rhai syntax, the script API,
# the stdlib modules and functions, and the registry's stage names and option
# names. `//-D k=v` lines at the top are -D parameters. fuzz/dict.sh
# regenerates it.
"//-D "
"let "
"const "
"fn "
"private "
"import "
" as "
"if "
"else "
"while "
"loop "
"for "
" in "
"break"
"continue"
"return "
"throw "
"try "
"catch "
"switch "
"this"
"=>"
"::"
"#{"
"}"
"["
"]"
"("
")"
";"
","
":"
"."
"?."
"??"
"|"
"|x| "
"`"
"${"
"\""
"'"
"=="
"!="
"+="
"*"
".."
"..="
"0x"
"1.5"
"9223372036854775807"
"-9223372036854775808"
"true"
"false"
"()"
"type_of"
"keys"
"values"
"len"
"push"
"to_string"
"to_json"
"parse_int"
"sub_string"
"pad"
"split"
"debug"
"print"
"\"debian\""
"\"fedora\""
"\"disk\""
"\"fleet\""
"\"users\""
"\"./fleet\""
"\"./seed\""
"\"keys/ops.pub\""
"\"../secret\""
"\"bookworm\""
EOF
    # shellcheck disable=SC2086
    plain $functions $props
    # shellcheck disable=SC2086
    quoted $names
} >fuzz/rhai.dict
wc -l fuzz/json.dict fuzz/rhai.dict
