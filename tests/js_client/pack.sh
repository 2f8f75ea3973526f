#!/usr/bin/env bash
# `npm pack` of @parley/client, installed by a fresh project that imports it from JavaScript
# and type-checks against it from TypeScript. Needs no registry: the package has no runtime
# dependencies.
# usage: pack.sh WORK_DIR (prepared by setup.sh)
set -euo pipefail
work=$(cd "${1:?usage: pack.sh WORK_DIR}" && pwd)
pkg="$work/pkg"
rm -rf "$work/packed" "$work/app"
mkdir -p "$work/packed" "$work/app"
tarball=$(cd "$pkg" && npm pack --silent --pack-destination "$work/packed")
echo "js_client: packed $tarball"
tar -tzf "$work/packed/$tarball" | sort
cd "$work/app"
cat >package.json <<'JSON'
{ "name": "fresh-app", "version": "1.0.0", "private": true, "type": "module" }
JSON
npm install --offline --no-audit --no-fund --loglevel=error "$work/packed/$tarball"
node --input-type=module -e '
import assert from "node:assert/strict";
import { ParleyClient, ParleyError, backoffDelay, sha256Hex } from "@parley/client";
assert.equal(typeof ParleyClient, "function");
assert.equal(new ParleyError("not_found", "gone").code, "not_found");
assert.equal(backoffDelay(4, { jitter: 0 }), 16000);
assert.equal(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
const client = new ParleyClient({ url: "ws://127.0.0.1:1/ws/chat", autoConnect: false });
assert.equal(client.state.status, "idle");
console.log("js_client: a fresh project imports @parley/client");
'
cat >check.ts <<'TS'
import { ParleyClient, type ConnectionState, type Reply } from "@parley/client";
import type { UseParleyChat } from "@parley/client/react";
const client: ParleyClient = new ParleyClient({ url: "ws://127.0.0.1/ws/chat", autoConnect: false });
client.on("state", (state: ConnectionState) => state.nextAttemptAt);
client.on("replyEnd", (reply: Reply) => reply.verified);
export type Hook = UseParleyChat["send"];
TS
node "$pkg/node_modules/typescript/bin/tsc" --noEmit --strict --module nodenext --moduleResolution nodenext \
  --skipLibCheck check.ts
echo "js_client: its types check in a TypeScript project"
